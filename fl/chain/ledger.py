"""The one adapter between Python and the contracts (the only module in ``fl`` that imports Ape).

Every protocol action is a transaction sent from that client's own Ape account. Methods take
batches (all proposals of a round, all commits, ...) so that a faster transport can replace
the per-transaction loop without touching the round logic. The per-round token and decision
history is read back from the contracts' events.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Sequence

from ape import chain, project
from eth_account import Account
from eth_utils import keccak
from ape.api import AccountAPI
from ape.exceptions import TransactionNotFoundError

from fl.chain import txpath
from fl.chain.txpath import TransactionFailed  # noqa: F401 (re-exported)
from fl.protocol.votes import (  # noqa: F401 (re-exported)
    Decision,
    Proposal,
    Role,
    RoundOpening,
    RoundState,
    Settlement,
    Vote,
    commitment_for,
)

TOKEN = 10**18  # the test token has 18 decimals


@dataclass(frozen=True)
class ProtocolParams:
    """VotingRound's deployment parameters, in whole tokens and seconds."""

    proposer_fraction: float = 0.2
    max_proposers: int = 50
    max_voters: int = 150
    proposer_stake: float = 8
    voter_stake: float = 4
    proposer_reward: float = 2
    proposal_period: int = 600
    commit_period: int = 600
    reveal_period: int = 600

    def as_struct(self) -> tuple:
        return (
            round(self.proposer_fraction * 10_000),
            self.max_proposers,
            self.max_voters,
            to_units(self.proposer_stake),
            to_units(self.voter_stake),
            to_units(self.proposer_reward),
            self.proposal_period,
            self.commit_period,
            self.reveal_period,
        )


def to_units(tokens: float) -> int:
    return int(round(tokens * TOKEN))


def to_tokens(units: int) -> float:
    return units / TOKEN


def new_salt() -> bytes:
    return secrets.token_bytes(32)


# Transactions sent and wall seconds spent sending them (encode, sign, send, mine, receipts,
# events) per call name, for this process: `ape run bench` reads the adapter's throughput here.
ADAPTER_STATS: dict[str, list] = {}


class ProtocolChain:
    """Deployed StakeRegistry + ProposalPool + VotingRound (+ token) and the clients' accounts."""

    def __init__(self, token, registry, pool, voting, accounts: Iterable[AccountAPI], fast: bool = True):
        self.sender = fast_sender() if fast else None
        self.token = token
        self.registry = registry
        self.pool = pool
        self.voting = voting
        self.accounts: dict[str, AccountAPI] = {str(a.address): a for a in accounts}
        self.event_log: list[dict] = []
        self.gas_by_call: dict[str, list[int]] = {}
        self.total_gas = 0
        self._keys: dict[str, bytes] = {}  # fast path: each account's own signing key
        self._decoder: txpath.EventDecoder | None = None
        self._view_abis: dict[tuple, dict] = {}

    # ------------------------------------------------------------------ deployment
    @classmethod
    def deploy(
        cls,
        deployer: AccountAPI,
        params: ProtocolParams,
        initial_model_hash: bytes,
        token=None,
        fast: bool = True,
    ) -> "ProtocolChain":
        """Deploy the three contracts (and a TestToken unless `token` is given) and wire their roles."""
        token = token or deployer.deploy(project.TestToken)
        registry = deployer.deploy(project.StakeRegistry, token.address)
        pool = deployer.deploy(project.ProposalPool, token.address, registry.address)
        voting = deployer.deploy(
            project.VotingRound, registry.address, pool.address, params.as_struct(), initial_model_hash
        )
        registry.bind(voting.address, pool.address, sender=deployer)
        pool.bind(voting.address, sender=deployer)
        return cls(token, registry, pool, voting, [], fast=fast)

    def enroll(self, clients: Sequence[AccountAPI], stake_tokens: float, minter: AccountAPI) -> None:
        """Mint `stake_tokens` to each client (TestToken only) and stake them from the client's account."""
        amount = to_units(stake_tokens)
        for client in clients:
            self.accounts[str(client.address)] = client
        if self.sender is not None:  # three blocks: the deposits need the minted, approved tokens
            self._transact_many("mint", self.token, [(minter, (c.address, amount)) for c in clients])
            self._transact_many("approve", self.token, [(c, (self.registry.address, amount)) for c in clients])
            self._transact_many("deposit", self.registry, [(c, (amount,)) for c in clients])
            return
        for client in clients:
            self._send("mint", self.token.mint, client.address, amount, sender=minter)
            self._send("approve", self.token.approve, self.registry.address, amount, sender=client)
            self._send("deposit", self.registry.deposit, amount, sender=client)

    # ------------------------------------------------------------------ round actions
    def open_round(self, caller: AccountAPI) -> RoundOpening:
        events, _ = self._transact("openRound", self.voting, (), caller)
        (opened,) = [args for name, args in events if name == "RoundOpened"]
        selected = [args for name, args in events if name == "ParticipantSelected"]
        return RoundOpening(
            round_id=int(opened["roundId"]),
            proposers=[str(e["client"]) for e in selected if int(e["role"]) == Role.PROPOSER],
            voters=[str(e["client"]) for e in selected if int(e["role"]) == Role.VOTER],
            removed=[str(args["client"]) for name, args in events if name == "ParticipantRemoved"],
            proposal_deadline=int(opened["proposalDeadline"]),
            commit_deadline=int(opened["commitDeadline"]),
            reveal_deadline=int(opened["revealDeadline"]),
        )

    def propose(self, round_id: int, proposals: Iterable[tuple[str, bytes, int]]) -> None:
        self._call_batch("propose", [(a, (round_id, h, n)) for a, h, n in proposals])

    def commit(self, round_id: int, commits: Iterable[tuple[str, bytes]]) -> None:
        self._call_batch("commitVote", [(a, (round_id, c)) for a, c in commits])

    def reveal(self, round_id: int, reveals: Iterable[tuple[str, Vote, bytes, bytes]]) -> None:
        self._call_batch("revealVote", [(a, (round_id, int(v), h, salt)) for a, v, h, salt in reveals])

    def settle(self, round_id: int, caller: AccountAPI) -> Settlement:
        events, gas = self._transact("settle", self.voting, (round_id,), caller)
        (settled,) = [args for name, args in events if name == "RoundSettled"]
        outcomes = {
            str(e["client"]): (Role(int(e["role"])), bool(e["won"]), int(e["slashed"]), int(e["rewarded"]))
            for name, e in events
            if name == "ParticipantSettled"
        }
        return Settlement(
            round_id=round_id,
            decision=Decision(int(settled["decision"])),
            global_model_hash=bytes(settled["globalModelHash"]),
            accept_votes=int(settled["acceptVotes"]),
            reject_votes=int(settled["rejectVotes"]),
            revealed_votes=int(settled["revealedVotes"]),
            outcomes=outcomes,
            gas_used=gas,
        )

    # ------------------------------------------------------------------ clock (local chains)
    def advance_to(self, timestamp: int) -> None:
        """Make the next block's timestamp at least `timestamp` (development chains only)."""
        if self.sender is not None and hasattr(self.sender.transport, "advance_to"):
            self.sender.transport.advance_to(timestamp)  # one round trip instead of Ape's several
        elif chain.pending_timestamp < timestamp:
            chain.pending_timestamp = timestamp

    # ------------------------------------------------------------------ views
    def proposals_of(self, round_id: int) -> list[Proposal]:
        proposers, hashes, counts = self._view(self.voting, "proposalsOf", round_id)
        return [Proposal(str(p), bytes(h), int(c)) for p, h, c in zip(proposers, hashes, counts)]

    def global_model_hash(self) -> bytes:
        return bytes(self._view(self.voting, "globalModelHash"))

    def stake_of(self, address: str) -> int:
        return int(self._view(self.registry, "stakeOf", address))

    def is_active(self, address: str) -> bool:
        return bool(self._view(self.registry, "isActive", address))

    def pool_balance(self) -> int:
        # pool.balance() is shadowed by Ape's ether balance
        return int(self._view(self.token, "balanceOf", str(self.pool.address)))

    def pool_tokens(self) -> float:
        return to_tokens(self.pool_balance())

    def token_balance(self, address: str) -> int:
        return int(self._view(self.token, "balanceOf", address))

    def _view(self, contract, name: str, *args):
        """A view call: Ape's on its own path; on the fast path one raw eth_call decoded with the ABI."""
        if self.sender is None:
            return getattr(contract, name)(*args)
        item = self._abi_of(contract, name, len(args), view=True)
        data = self.sender.transport.call(str(contract.address), txpath.encode_call(item, [_abi_arg(v) for v in args]))
        return txpath.decode_output(item, data)

    def _abi_of(self, contract, name: str, arity: int, view: bool) -> dict:
        """The ABI entry of `contract.name` taking `arity` arguments (as a plain dict, cached)."""
        key = (str(contract.address), name, arity)
        item = self._view_abis.get(key)
        if item is None:
            methods = contract.contract_type.view_methods if view else contract.contract_type.mutable_methods
            (item,) = [f.model_dump(mode="json") for f in methods if f.name == name and len(f.inputs) == arity]
            self._view_abis[key] = item
        return item

    def state(self, round_id: int) -> RoundState:
        return RoundState(int(self.voting.state(round_id)))

    # ------------------------------------------------------------------ internals
    def _send(self, name: str, method, *args, sender: AccountAPI):
        if name in ("openRound", "settle"):  # Ape's path, single calls: count them as the fast path does
            started = time.perf_counter()
            try:
                receipt = method(*args, sender=sender)
            finally:
                stats = ADAPTER_STATS.setdefault(name, [0, 0.0])
                stats[0] += 1
                stats[1] += time.perf_counter() - started
        else:
            receipt = method(*args, sender=sender)
        gas = int(receipt.gas_used)
        self.gas_by_call.setdefault(name, []).append(gas)
        self.total_gas += gas
        self._record(receipt)
        return receipt

    def _call_batch(self, name: str, calls: Sequence[tuple[str, tuple]]) -> None:
        """Send one VotingRound call per client, each from that client's own account."""
        self._transact_many(name, self.voting, [(self.accounts[a], args) for a, args in calls])

    def _transact(self, name: str, contract, args: tuple, sender: AccountAPI) -> tuple[list[tuple[str, dict]], int]:
        """One call from `sender`; returns its decoded events [(name, args)] and its gas used."""
        if self.sender is None:
            receipt = self._send(name, getattr(contract, name), *args, sender=sender)
            return [(log.event_name, dict(log.event_arguments)) for log in receipt.events], int(receipt.gas_used)
        ((events, gas),) = self._transact_many(name, contract, [(sender, args)])
        return events, gas

    def _transact_many(self, name: str, contract, calls: Sequence[tuple[AccountAPI, tuple]]) -> list:
        """One call of `contract.name(*args)` per (sender, args), each signed by its sender's own key.

        Fast path: signed locally and sent in blocks (fl.chain.txpath); Ape's path otherwise. Returns
        [(events, gas used)] per call; every event also goes to the event log."""
        started = time.perf_counter()
        try:
            return self._transact_many_timed(name, contract, calls)
        finally:
            stats = ADAPTER_STATS.setdefault(name, [0, 0.0])
            stats[0] += len(calls)
            stats[1] += time.perf_counter() - started

    def _transact_many_timed(self, name: str, contract, calls: Sequence[tuple[AccountAPI, tuple]]) -> list:
        if self.sender is None:
            method = getattr(contract, name)
            out = []
            for account, args in calls:
                receipt = self._send(name, method, *args, sender=account)
                out.append(([(log.event_name, dict(log.event_arguments)) for log in receipt.events], int(receipt.gas_used)))
            return out
        if not calls:
            return []
        to = str(contract.address)
        gas = GAS_LIMITS.get(name, 0)  # 0: the block's gas budget (single calls that grow with the clients)
        item = self._abi_of(contract, name, len(calls[0][1]), view=False)
        batch = [
            txpath.Call(str(a.address), self._key(a), to, txpath.encode_call(item, [_abi_arg(v) for v in args]), gas, name=name)
            for a, args in calls
        ]
        out = []
        decoder = self._event_decoder()
        for receipt in self.sender.send(batch):
            self.gas_by_call.setdefault(name, []).append(receipt.gas_used)
            self.total_gas += receipt.gas_used
            events = txpath.decode_events(decoder, receipt)
            for event, args in events:
                self.event_log.append(
                    {"block": receipt.block, "tx": receipt.tx_hash, "event": event,
                     "args": {k: _jsonable(v) for k, v in args.items()}}
                )
            out.append((events, receipt.gas_used))
        return out

    def _key(self, account: AccountAPI) -> bytes:
        address = str(account.address)
        key = self._keys.get(address)
        if key is None:
            key = self._keys[address] = bytes.fromhex(str(account.private_key).removeprefix("0x"))
        return key

    def _event_decoder(self) -> "txpath.EventDecoder":
        if self._decoder is None:
            self._decoder = txpath.EventDecoder(
                (str(c.address), _abi_dicts(c.contract_type)) for c in (self.token, self.registry, self.pool, self.voting)
            )
        return self._decoder

    def drain_events(self) -> list[dict]:
        """The events recorded since the last call (and forget them)."""
        events, self.event_log = self.event_log, []
        return events

    def _record(self, receipt) -> None:
        for log in receipt.events:
            self.event_log.append(
                {
                    "block": int(receipt.block_number),
                    "tx": str(receipt.txn_hash),
                    "event": log.event_name,
                    "args": {k: _jsonable(v) for k, v in log.event_arguments.items()},
                }
            )


def _abi_arg(value):
    """An argument as eth_abi takes it: Ape accounts and contracts by their address."""
    if isinstance(value, (bytes, int, str)):
        return value
    return str(getattr(value, "address", value))


def _abi_dicts(contract_type) -> list[dict]:
    return [item.model_dump(mode="json") for item in contract_type.abi]


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, int):
        return int(value)
    return str(value)


# ---------------------------------------------------------------------- accounts and checks
def deployer_account() -> AccountAPI:
    """The development chain's first funded test account."""
    from ape import accounts

    return accounts.test_accounts[0]


CLIENT_ACCOUNT_OFFSET = 10_000  # Ape test-account indices of simulated clients (beyond the mnemonic's)


def development_accounts(count: int, funder: AccountAPI, ether_each: int = 10**20) -> list[AccountAPI]:
    """`count` simulated clients' Ape test accounts (keys derived from the index), each funded with ether."""
    from ape import accounts

    if not chain.provider.network.is_local:
        raise RuntimeError(
            "simulate needs a development network (the embedded test chain or a local anvil); "
            "for a public network use `ape run deploy` and `ape run client`"
        )
    created, unfunded = [], []
    for index in range(count):
        # keys derived from the client index: the same clients in every run and every process
        key = keccak(b"stakefl simulated client %d" % index)
        address = Account.from_key(key).address
        account = accounts.init_test_account(CLIENT_ACCOUNT_OFFSET + index, address, "0x" + key.hex())
        try:
            account.balance = ether_each
        except NotImplementedError:  # the embedded provider cannot set balances: send ether instead
            unfunded.append(account)
        created.append(account)
    _send_ether(funder, unfunded, ether_each)
    return created


def _send_ether(funder: AccountAPI, recipients: Sequence[AccountAPI], wei: int) -> None:
    """Transfer `wei` from `funder` to each recipient (signed by the funder; fast path where there is one)."""
    sender = fast_sender() if recipients else None
    if sender is None:
        for account in recipients:
            funder.transfer(account, wei)
        return
    key = bytes.fromhex(str(funder.private_key).removeprefix("0x"))
    sender.send([txpath.Call(str(funder.address), key, str(a.address), b"", 21_000, wei, "fund") for a in recipients])


def token_conservation(protocol: "ProtocolChain", holders: Iterable[str], minted: int) -> dict:
    """Token conservation on chain: wallets + registry + pool == minted; registry == stakes + unassigned."""
    holders = list(holders)
    stakes = sum(protocol.stake_of(a) for a in holders)
    wallets = sum(protocol.token_balance(a) for a in holders)
    registry_balance = protocol.token_balance(str(protocol.registry.address))
    pool_balance = protocol.pool_balance()
    unassigned = int(protocol.registry.unassigned())
    return {
        "minted": minted,
        "stakes": stakes,
        "wallets": wallets,
        "registry_balance": registry_balance,
        "pool_balance": pool_balance,
        "unassigned": unassigned,
        "conserved": wallets + registry_balance + pool_balance == minted
        and registry_balance == stakes + unassigned
        and int(protocol.registry.totalStaked()) == stakes,
    }


def network_name() -> str:
    return chain.provider.network_choice


def quiet_logging() -> None:
    """Ape logs every confirmed transaction at INFO; a simulation sends thousands."""
    from ape.logging import LogLevel, logger

    logger.set_level(LogLevel.WARNING)


REPRODUCIBLE_START = 4_000_000_000  # unix seconds (year 2096): later than any real clock


class _SeededEntropy:
    """Stands in for `os` inside eth-tester's py-evm backend: `urandom` (its per-block prevrandao)
    comes from a hash chain, so the embedded chain's block hashes repeat run to run."""

    def __init__(self, seed: int = 0):
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self._state = hashlib.sha256(b"stakefl prevrandao %d" % seed).digest()

    def urandom(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._state = hashlib.sha256(self._state).digest()
            out += self._state
        return out[:n]

    def __getattr__(self, name):
        return getattr(os, name)


_ENTROPY = _SeededEntropy()


def make_embedded_chain_reproducible() -> None:
    """Make the embedded (py-evm) chain deterministic; call before the provider connects.

    eth-tester takes the genesis time from the wall clock and each block's prevrandao from
    os.urandom; both feed `blockhash`, which the round seed uses. Here the genesis time is
    fixed and prevrandao comes from `_ENTROPY` (reseeded per run by `reseed_embedded_chain`).
    Other chains are untouched: their randomness is the real one.
    """
    from eth_tester.backends.pyevm import main as pyevm

    original = pyevm.get_default_genesis_params
    if getattr(original, "reproducible", False):
        return

    def fixed_genesis(overrides=None):
        return {**original(overrides), "timestamp": REPRODUCIBLE_START - 10_000}

    fixed_genesis.reproducible = True
    pyevm.get_default_genesis_params = fixed_genesis
    pyevm.os = _ENTROPY


def reseed_embedded_chain(seed: int) -> None:
    """Restart the embedded chain's prevrandao stream from `seed` (no effect elsewhere)."""
    _ENTROPY.reseed(seed)


@contextmanager
def isolated_embedded_run(seed: int):
    """On the embedded chain: reseed its randomness, run, then restore the chain as it was."""
    if chain.provider.name != "test":
        yield
        return
    make_embedded_chain_reproducible()  # idempotent; the genesis part only acts before connecting
    snapshot = chain.snapshot()
    reseed_embedded_chain(seed)
    try:
        yield
    finally:
        chain.restore(snapshot)


def pin_clock() -> bool:
    """On the embedded chain, start from a fixed timestamp, so block times and deadlines depend
    only on the transactions sent (with `make_embedded_chain_reproducible`, so do block hashes),
    and a seeded run repeats exactly. Returns False where the clock is not pinned (anvil, live nets)."""
    if chain.provider.name != "test" or chain.pending_timestamp >= REPRODUCIBLE_START:
        return False
    chain.pending_timestamp = REPRODUCIBLE_START
    return True


# ---------------------------------------------------------------------- fast transaction path
# Gas limits of per-client calls: generous bounds over the measured use (docs/PERFORMANCE.md),
# so no estimate round trip is needed; a call that needs more fails loudly (TransactionFailed).
# Calls not listed (openRound, settle: they grow with the number of clients) get the block's budget.
GAS_LIMITS = {
    "propose": 250_000,
    "commitVote": 200_000,
    "revealVote": 250_000,
    "mint": 150_000,
    "approve": 100_000,
    "deposit": 250_000,
}


def fast_sender() -> "txpath.SignedBatchSender | None":
    """The signed-batch sender (fl/chain/txpath.py) for the connected provider, or None for Ape's own path."""
    provider = chain.provider
    if provider.name == "test" and hasattr(provider, "tester"):
        transport = txpath.EthTesterTransport(provider.tester.ethereum_tester)
    elif provider.name == "foundry" and getattr(provider, "uri", None):
        transport = txpath.JsonRpcTransport(provider.uri)
    else:
        return None
    errors = txpath.ErrorDecoder(
        _abi_dicts(getattr(project, name).contract_type)
        for name in ("TestToken", "StakeRegistry", "ProposalPool", "VotingRound")
    )
    return txpath.SignedBatchSender(transport, int(provider.chain_id), errors)


# ---- attaching to deployed contracts
# `ape run deploy` records the addresses (fl/chain/deployments.py); `ape run client` attaches to them
# here, checks that each address holds this project's contract, and acts through one account.


class ContractCheckError(RuntimeError):
    """An address does not hold the protocol contract it should (wrong address, network or build)."""


# Ape contract types of the recorded names; the token is any ERC-20 (TestToken's ABI covers it).
_CONTRACT_TYPES = {"token": "TestToken", "registry": "StakeRegistry", "pool": "ProposalPool", "voting": "VotingRound"}


def _metadata_tail(code: bytes) -> bytes:
    """The CBOR metadata solc appends to runtime code (its last 2 bytes give its length).

    It holds the hash of the compiler's metadata (sources included) and no immutables, so equal
    tails mean "built from the same sources by the same compiler"."""
    if len(code) < 2:
        return b""
    length = int.from_bytes(code[-2:], "big")
    return code[-(length + 2):] if length + 2 <= len(code) else b""


def check_contract(name: str, address: str, *, exact: bool = True):
    """The Ape contract instance of recorded contract `name` at `address`, after checking that
    the chain holds code there and (if `exact`) that it is this project's build of it."""
    contract_type = getattr(project, _CONTRACT_TYPES[name]).contract_type
    code = bytes(chain.provider.get_code(address))
    if not code:
        raise ContractCheckError(
            f"no contract at {address} (the recorded {name}) on {chain.provider.network_choice}: wrong network, "
            "a local node that was restarted (its chain is gone: redeploy with `ape run deploy --force`), "
            "or a wrong address"
        )
    if exact:
        expected = bytes.fromhex((contract_type.runtime_bytecode.bytecode or "").removeprefix("0x"))
        if len(code) != len(expected) or _metadata_tail(code) != _metadata_tail(expected):
            raise ContractCheckError(
                f"the code at {address} is not this project's {_CONTRACT_TYPES[name]} "
                f"({len(code)} bytes, expected {len(expected)} with the same metadata hash); "
                "check the address, or rebuild and redeploy if the contracts changed"
            )
    return chain.contracts.instance_at(address, contract_type=contract_type)


def attach_protocol(token: str, registry: str, pool: str, voting: str, fast: bool = False) -> "ProtocolChain":
    """A ProtocolChain over recorded addresses, after checking the code and the wiring between them."""
    registry_c = check_contract("registry", registry)
    pool_c = check_contract("pool", pool)
    voting_c = check_contract("voting", voting)
    token_c = check_contract("token", token, exact=False)
    wiring = {
        "VotingRound.registry()": (str(voting_c.registry()), str(registry_c.address)),
        "VotingRound.proposalPool()": (str(voting_c.proposalPool()), str(pool_c.address)),
        "StakeRegistry.votingRound()": (str(registry_c.votingRound()), str(voting_c.address)),
        "StakeRegistry.token()": (str(registry_c.token()), str(token_c.address)),
        "ProposalPool.votingRound()": (str(pool_c.votingRound()), str(voting_c.address)),
    }
    wrong = [f"{k} is {got}, expected {want}" for k, (got, want) in wiring.items() if got.lower() != want.lower()]
    if wrong:
        raise ContractCheckError("the recorded contracts are not wired to each other: " + "; ".join(wrong))
    return ProtocolChain(token_c, registry_c, pool_c, voting_c, [], fast=fast)


def attach_by_voting_round(voting: str, fast: bool = False) -> "ProtocolChain":
    """Attach knowing only the VotingRound address (the others are read from it)."""
    voting_c = check_contract("voting", voting)
    registry = str(voting_c.registry())
    pool = str(voting_c.proposalPool())
    token = str(check_contract("registry", registry).token())
    return attach_protocol(token, registry, pool, voting, fast=fast)


def connected_chain_id() -> int:
    return int(chain.provider.chain_id)


def is_local_network() -> bool:
    return bool(chain.provider.network.is_local)


def provider_started_node() -> bool:
    """True if the provider started its own node (ape-foundry does when none was running): such a
    chain lives only as long as this process, so other participants cannot share it."""
    return getattr(chain.provider, "process", None) is not None or chain.provider.name == "test"


def head_block_number() -> int:
    return int(chain.blocks.head.number)


STUCK_RECEIPT_TIMEOUT = 120  # seconds to wait again for a sent transaction Ape gave up on


def await_unmined(exc: BaseException, timeout: int = STUCK_RECEIPT_TIMEOUT):
    """The receipt of a transaction that was sent but not mined within Ape's acceptance timeout.

    On a local node that is anvil's automine missing a ready transaction while many senders race
    (foundry-rs/foundry#10122): mine one block, which takes it. On any network, wait `timeout`
    seconds more for the same hash (never resend: that would act twice). Re-raises `exc` if the
    hash cannot be read from it or the transaction is still not mined."""
    found = re.search(r"0x[0-9a-fA-F]{64}", str(exc))
    if found is None:
        raise exc
    provider = chain.provider
    local = provider.network.is_local and hasattr(provider, "mine")
    logging.getLogger("stakefl.client").warning(
        "transaction %s sent but not mined in time; %s", found.group(0)[:12],
        "mining a block (local node)" if local else f"waiting up to {timeout} s more")
    if local:
        provider.mine()
    receipt = provider.get_receipt(found.group(0), timeout=timeout)
    receipt.raise_for_status()  # mined after its deadline, say: a revert like any other
    return receipt


def classify_error(exc: BaseException) -> str | None:
    """"revert" for a call the contract refused, "transient" for a node that is unreachable,
    slow or restarting (retry later), None for anything else (a bug: let it surface)."""
    from ape.exceptions import APINotImplementedError, ContractLogicError, ProviderError, ProviderNotConnectedError

    try:
        import requests

        network_errors: tuple = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover
        network_errors = ()
    # Ape may wrap a dropped connection in a VirtualMachineError: look down the whole cause chain
    link, seen = exc, set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, (ConnectionError, TimeoutError, ProviderNotConnectedError, *network_errors)):
            return "transient"
        link = link.__cause__ or link.__context__
    if isinstance(exc, ContractLogicError):
        return "revert"
    if isinstance(exc, TransactionNotFoundError):  # sent, not mined yet: re-read the chain later
        return "transient"
    if isinstance(exc, ProviderError) and not isinstance(exc, APINotImplementedError):
        text = str(exc).lower()
        if any(s in text for s in ("connection", "timed out", "timeout", "max retries", "missing latest block")):
            return "transient"
    return None


def revert_summary(exc: BaseException) -> str:
    """A one-line reason for a revert (the custom error's name and fields where Ape decoded them)."""
    name = type(exc).__name__
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{name}({message})" if name not in ("ContractLogicError", "VirtualMachineError") else message or name


@dataclass
class RoundView:
    """The on-chain record of one round, in plain Python types."""

    round_id: int
    proposal_deadline: int
    commit_deadline: int
    reveal_deadline: int
    proposer_count: int
    voter_count: int
    proposal_count: int
    commit_count: int
    reveal_count: int
    settled: bool
    decision: Decision
    global_model_hash: bytes


@dataclass
class ParticipantView:
    """One client's on-chain record in one round."""

    role: Role
    acted: bool
    revealed: bool


class ParticipantLedger:
    """What one participant (`ape run client`) reads and sends; every transaction from its own account."""

    def __init__(self, protocol: "ProtocolChain", account: AccountAPI):
        self.protocol = protocol
        self.account = account
        self.address = str(account.address)

    # ------------------------------------------------------------ reads
    def current_round_id(self) -> int:
        return int(self.protocol.voting.currentRoundId())

    def round(self, round_id: int) -> RoundView:
        r = self.protocol.voting.getRound(round_id)
        return RoundView(
            round_id=round_id,
            proposal_deadline=int(r.proposalDeadline),
            commit_deadline=int(r.commitDeadline),
            reveal_deadline=int(r.revealDeadline),
            proposer_count=int(r.proposerCount),
            voter_count=int(r.voterCount),
            proposal_count=int(r.proposalCount),
            commit_count=int(r.commitCount),
            reveal_count=int(r.revealCount),
            settled=bool(r.settled),
            decision=Decision(int(r.decision)),
            global_model_hash=bytes(r.globalModelHash),
        )

    def participant(self, round_id: int, address: str | None = None) -> ParticipantView:
        p = self.protocol.voting.getParticipant(round_id, address or self.address)
        return ParticipantView(role=Role(int(p.role)), acted=bool(p.acted), revealed=bool(p.revealed))

    def proposals(self, round_id: int) -> list[Proposal]:
        return self.protocol.proposals_of(round_id)

    def global_model_hash(self) -> bytes:
        return self.protocol.global_model_hash()

    def initial_model_hash(self) -> bytes:
        return bytes(self.protocol.voting.initialModelHash())

    def params(self) -> dict:
        p = self.protocol.voting.params()
        return {
            "proposer_stake": int(p.proposerStake), "voter_stake": int(p.voterStake),
            "proposal_period": int(p.proposalPeriod), "commit_period": int(p.commitPeriod),
            "reveal_period": int(p.revealPeriod),
        }

    def stake(self, address: str | None = None) -> dict:
        a = address or self.address
        registry = self.protocol.registry
        return {
            "stake": int(registry.stakeOf(a)), "locked": int(registry.lockedOf(a)),
            "active": bool(registry.isActive(a)), "removed": bool(registry.isRemoved(a)),
        }

    def active_clients(self) -> list[str]:
        return [str(a) for a in self.protocol.registry.activeClients()]

    def token_balance(self, address: str | None = None) -> int:
        return self.protocol.token_balance(address or self.address)

    def settlement_of(self, round_id: int, from_block: int = 0, address: str | None = None,
                      lookback: int = 5_000):
        """(won, slashed, rewarded) of `address` in settled round `round_id`, from its events (or None).
        Searches the last `lookback` blocks only (public RPCs cap log ranges; the client asks right
        after the settlement)."""
        a = (address or self.address).lower()
        head = head_block_number()
        event = self.protocol.voting.ParticipantSettled
        start = max(from_block, head - lookback)
        for log in event.range(start, head + 1, search_topics={"roundId": round_id}):
            if str(log.client).lower() == a:
                return bool(log.won), int(log.slashed), int(log.rewarded)
        return None

    # ------------------------------------------------------------ actions
    def _send(self, method, *args) -> str:
        try:
            receipt = method(*args, sender=self.account)
        except TransactionNotFoundError as exc:
            receipt = await_unmined(exc)
        return str(receipt.txn_hash)

    def mint(self, amount: int) -> str:
        return self._send(self.protocol.token.mint, self.address, amount)

    def approve(self, amount: int) -> str:
        return self._send(self.protocol.token.approve, self.protocol.registry.address, amount)

    def deposit(self, amount: int) -> str:
        return self._send(self.protocol.registry.deposit, amount)

    def withdraw(self, amount: int) -> str:
        return self._send(self.protocol.registry.withdraw, amount)

    def open_round(self) -> str:
        return self._send(self.protocol.voting.openRound)

    def propose(self, round_id: int, update_hash: bytes, sample_count: int) -> str:
        return self._send(self.protocol.voting.propose, round_id, update_hash, sample_count)

    def commit(self, round_id: int, commitment: bytes) -> str:
        return self._send(self.protocol.voting.commitVote, round_id, commitment)

    def reveal(self, round_id: int, vote: Vote, aggregate_hash: bytes, salt: bytes) -> str:
        return self._send(self.protocol.voting.revealVote, round_id, int(vote), aggregate_hash, salt)

    def settle(self, round_id: int) -> str:
        return self._send(self.protocol.voting.settle, round_id)


def unlock_for_signing(account: AccountAPI) -> None:
    """Let a long-running command sign without a prompt per transaction: a keyfile account
    (`ape accounts import`) is unlocked once, from $APE_ACCOUNTS_<alias>_PASSPHRASE or a prompt."""
    if hasattr(account, "set_autosign") and getattr(account, "locked", False):
        account.set_autosign(True)
