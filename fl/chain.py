"""The one adapter between Python and the contracts (the only module in ``fl`` that imports Ape).

Every protocol action is a transaction sent from that client's own Ape account. Methods take
batches (all proposals of a round, all commits, ...) so that a faster transport can replace
the per-transaction loop without touching the round logic. The per-round token and decision
history is read back from the contracts' events.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ape import chain, project
from ape.api import AccountAPI

from fl.votes import Decision, Role, RoundState, Vote, commitment_for  # noqa: F401 (re-exported)

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


@dataclass
class RoundOpening:
    round_id: int
    proposers: list[str]
    voters: list[str]
    removed: list[str]
    proposal_deadline: int
    commit_deadline: int
    reveal_deadline: int


@dataclass
class Settlement:
    round_id: int
    decision: Decision
    global_model_hash: bytes
    accept_votes: int
    reject_votes: int
    revealed_votes: int
    # address -> (role, won, slashed units, rewarded units)
    outcomes: dict[str, tuple[Role, bool, int, int]] = field(default_factory=dict)
    gas_used: int = 0


@dataclass
class Proposal:
    proposer: str
    update_hash: bytes
    sample_count: int


class ProtocolChain:
    """Deployed StakeRegistry + ProposalPool + VotingRound (+ token) and the clients' accounts."""

    def __init__(self, token, registry, pool, voting, accounts: Iterable[AccountAPI]):
        self.token = token
        self.registry = registry
        self.pool = pool
        self.voting = voting
        self.accounts: dict[str, AccountAPI] = {str(a.address): a for a in accounts}
        self.event_log: list[dict] = []
        self.gas_by_call: dict[str, list[int]] = {}
        self.total_gas = 0

    # ------------------------------------------------------------------ deployment
    @classmethod
    def deploy(
        cls,
        deployer: AccountAPI,
        params: ProtocolParams,
        initial_model_hash: bytes,
        token=None,
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
        return cls(token, registry, pool, voting, [])

    def enroll(self, clients: Sequence[AccountAPI], stake_tokens: float, minter: AccountAPI) -> None:
        """Mint `stake_tokens` to each client (TestToken only) and stake them from the client's account."""
        amount = to_units(stake_tokens)
        for client in clients:
            self.accounts[str(client.address)] = client
            self._send("mint", self.token.mint, client.address, amount, sender=minter)
            self._send("approve", self.token.approve, self.registry.address, amount, sender=client)
            self._send("deposit", self.registry.deposit, amount, sender=client)

    # ------------------------------------------------------------------ round actions
    def open_round(self, caller: AccountAPI) -> RoundOpening:
        receipt = self._send("openRound", self.voting.openRound, sender=caller)
        opened = receipt.decode_logs(self.voting.RoundOpened)[0]
        round_id = int(opened.roundId)
        selected = receipt.decode_logs(self.voting.ParticipantSelected)
        removed = receipt.decode_logs(self.voting.ParticipantRemoved)
        return RoundOpening(
            round_id=round_id,
            proposers=[str(e.client) for e in selected if int(e.role) == Role.PROPOSER],
            voters=[str(e.client) for e in selected if int(e.role) == Role.VOTER],
            removed=[str(e.client) for e in removed],
            proposal_deadline=int(opened.proposalDeadline),
            commit_deadline=int(opened.commitDeadline),
            reveal_deadline=int(opened.revealDeadline),
        )

    def propose(self, round_id: int, proposals: Iterable[tuple[str, bytes, int]]) -> None:
        for address, update_hash, sample_count in proposals:
            self._send(
                "propose", self.voting.propose, round_id, update_hash, sample_count, sender=self.accounts[address]
            )

    def commit(self, round_id: int, commits: Iterable[tuple[str, bytes]]) -> None:
        for address, commitment in commits:
            self._send("commitVote", self.voting.commitVote, round_id, commitment, sender=self.accounts[address])

    def reveal(self, round_id: int, reveals: Iterable[tuple[str, Vote, bytes, bytes]]) -> None:
        for address, vote, aggregate_hash, salt in reveals:
            self._send(
                "revealVote",
                self.voting.revealVote,
                round_id,
                int(vote),
                aggregate_hash,
                salt,
                sender=self.accounts[address],
            )

    def settle(self, round_id: int, caller: AccountAPI) -> Settlement:
        receipt = self._send("settle", self.voting.settle, round_id, sender=caller)
        settled = receipt.decode_logs(self.voting.RoundSettled)[0]
        outcomes = {
            str(e.client): (Role(int(e.role)), bool(e.won), int(e.slashed), int(e.rewarded))
            for e in receipt.decode_logs(self.voting.ParticipantSettled)
        }
        return Settlement(
            round_id=round_id,
            decision=Decision(int(settled.decision)),
            global_model_hash=bytes(settled.globalModelHash),
            accept_votes=int(settled.acceptVotes),
            reject_votes=int(settled.rejectVotes),
            revealed_votes=int(settled.revealedVotes),
            outcomes=outcomes,
            gas_used=int(receipt.gas_used),
        )

    # ------------------------------------------------------------------ clock (local chains)
    def advance_to(self, timestamp: int) -> None:
        """Make the next block's timestamp at least `timestamp` (development chains only)."""
        if chain.pending_timestamp < timestamp:
            chain.pending_timestamp = timestamp

    # ------------------------------------------------------------------ views
    def proposals_of(self, round_id: int) -> list[Proposal]:
        proposers, hashes, counts = self.voting.proposalsOf(round_id)
        return [Proposal(str(p), bytes(h), int(c)) for p, h, c in zip(proposers, hashes, counts)]

    def global_model_hash(self) -> bytes:
        return bytes(self.voting.globalModelHash())

    def stake_of(self, address: str) -> int:
        return int(self.registry.stakeOf(address))

    def is_active(self, address: str) -> bool:
        return bool(self.registry.isActive(address))

    def pool_balance(self) -> int:
        return int(self.token.balanceOf(self.pool.address))  # pool.balance() is shadowed by Ape's ether balance

    def pool_tokens(self) -> float:
        return to_tokens(self.pool_balance())

    def token_balance(self, address: str) -> int:
        return int(self.token.balanceOf(address))

    def state(self, round_id: int) -> RoundState:
        return RoundState(int(self.voting.state(round_id)))

    # ------------------------------------------------------------------ internals
    def _send(self, name: str, method, *args, sender: AccountAPI):
        receipt = method(*args, sender=sender)
        gas = int(receipt.gas_used)
        self.gas_by_call.setdefault(name, []).append(gas)
        self.total_gas += gas
        self._record(receipt)
        return receipt

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


def development_accounts(count: int, funder: AccountAPI, ether_each: int = 10**20) -> list[AccountAPI]:
    """`count` new Ape test accounts (deterministic from the configured mnemonic), each funded with ether."""
    from ape import accounts

    if not chain.provider.network.is_local:
        raise RuntimeError(
            "simulate needs a development network (the embedded test chain or a local anvil); "
            "for a public network use `ape run deploy` and `ape run client`"
        )
    created = []
    for _ in range(count):
        account = accounts.test_accounts.generate_test_account()
        try:
            account.balance = ether_each
        except NotImplementedError:  # the embedded provider cannot set balances: send ether instead
            funder.transfer(account, ether_each)
        created.append(account)
    return created


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


def pin_clock() -> bool:
    """On the embedded chain, start from a fixed timestamp, so block times and deadlines depend
    only on the transactions sent (the round seed uses prevrandao, which is 0 there), and a
    seeded run repeats exactly. Returns False where the clock is not pinned (anvil, live nets)."""
    if chain.provider.name != "test" or chain.pending_timestamp >= REPRODUCIBLE_START:
        return False
    chain.pending_timestamp = REPRODUCIBLE_START
    return True
