"""The simulation's ledger: `ProtocolChain`, the deployed contracts driven in batches.

Every protocol action is a transaction sent from that client's own Ape account. Methods take
batches (all proposals of a round, all commits, ...) so that a faster transport can replace
the per-transaction loop without touching the round logic. The per-round token and decision
history is read back from the contracts' events.
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

from ape import chain, project
from ape.api import AccountAPI

from fl.chain import txpath
from fl.protocol.params import ProtocolParams, to_tokens, to_units
from fl.protocol.votes import Ballot, Decision, Proposal, ProposalOutcome, Role, RoundOpening, RoundState, Settlement

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

    def reveal(self, round_id: int, ballots: Iterable[Ballot]) -> None:
        """Reveal each voter's ballot (accept mask, parent hash, salt), from the voter's account."""
        ballots = list(ballots)
        calls = [(self.accounts[b.voter], (round_id, int(b.accept_mask), b.parent_hash, b.salt)) for b in ballots]
        # each accepted proposal is one more tally slot written (up to ~22 k gas when it is new)
        gas = [GAS_LIMITS["revealVote"] + REVEAL_GAS_PER_ACCEPT * bin(b.accept_mask).count("1") for b in ballots]
        self._transact_many("revealVote", self.voting, calls, gas=gas)

    def settle(self, round_id: int, caller: AccountAPI) -> Settlement:
        events, gas = self._transact("settle", self.voting, (round_id,), caller)
        return settlement_from_events(round_id, events, gas)

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

    def proposal_accepts(self, round_id: int) -> list[int]:
        """Accept votes revealed so far for each proposal of the round, in proposal order."""
        return [int(a) for a in self._view(self.voting, "proposalAccepts", round_id)]

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

    def _transact_many(self, name: str, contract, calls: Sequence[tuple[AccountAPI, tuple]], gas=None) -> list:
        """One call of `contract.name(*args)` per (sender, args), each signed by its sender's own key.

        Fast path: signed locally and sent in blocks (fl.chain.txpath); Ape's path otherwise. Returns
        [(events, gas used)] per call; every event also goes to the event log."""
        started = time.perf_counter()
        try:
            return self._transact_many_timed(name, contract, calls, gas)
        finally:
            stats = ADAPTER_STATS.setdefault(name, [0, 0.0])
            stats[0] += len(calls)
            stats[1] += time.perf_counter() - started

    def _transact_many_timed(self, name: str, contract, calls: Sequence[tuple[AccountAPI, tuple]], gas_limits=None) -> list:
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
        gas_limits = gas_limits or [gas] * len(calls)
        item = self._abi_of(contract, name, len(calls[0][1]), view=False)
        batch = [
            txpath.Call(str(a.address), self._key(a), to, txpath.encode_call(item, [_abi_arg(v) for v in args]), limit, name=name)
            for (a, args), limit in zip(calls, gas_limits, strict=True)
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


def settlement_from_events(round_id: int, events: Sequence[tuple[str, dict]], gas: int = 0) -> Settlement:
    """The Settlement of `settle`'s events: RoundSettled, one ProposalSettled per submitted
    proposal (sorted by index), one ParticipantSettled per selected client."""
    (settled,) = [args for name, args in events if name == "RoundSettled"]
    outcomes = {
        str(e["client"]): (Role(int(e["role"])), bool(e["won"]), int(e["slashed"]), int(e["rewarded"]))
        for name, e in events
        if name == "ParticipantSettled"
    }
    proposals = sorted(
        (
            ProposalOutcome(int(e["index"]), str(e["proposer"]), bool(e["accepted"]), int(e["accepts"]), int(e["revealed"]))
            for name, e in events
            if name == "ProposalSettled"
        ),
        key=lambda p: p.index,
    )
    return Settlement(
        round_id=round_id,
        decision=Decision(int(settled["decision"])),
        global_model_hash=bytes(settled["globalModelHash"]),
        accepted_mask=int(settled["acceptedMask"]),
        accepted_count=int(settled["acceptedCount"]),
        revealed_votes=int(settled["revealedVotes"]),
        proposals=proposals,
        outcomes=outcomes,
        gas_used=gas,
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


# ---------------------------------------------------------------------- fast transaction path
# Gas limits of per-client calls: generous bounds over the measured use (docs/PERFORMANCE.md),
# so no estimate round trip is needed; a call that needs more fails loudly (TransactionFailed).
# Calls not listed (openRound, settle: they grow with the number of clients) get the block's budget.
GAS_LIMITS = {
    "propose": 250_000,
    "commitVote": 200_000,
    "revealVote": 250_000,  # plus REVEAL_GAS_PER_ACCEPT per accepted proposal
    "mint": 150_000,
    "approve": 100_000,
    "deposit": 250_000,
}


REVEAL_GAS_PER_ACCEPT = 30_000


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
