"""The protocol as plain Python: Solidity enums mirrored as IntEnum, default parameters,
the commitment hash, and the settlement rule (used by the unit tests and the state machine)."""
from dataclasses import dataclass
from enum import IntEnum

from eth_abi import encode
from eth_utils import keccak

TOKEN = 10**18
INITIAL_MODEL = b"\x01" * 32


class RoundState(IntEnum):
    NONE = 0
    PROPOSING = 1
    COMMITTING = 2
    REVEALING = 3
    SETTLEABLE = 4
    SETTLED = 5

    # CamelCase aliases read like the Solidity names
    None_ = 0
    Proposing = 1
    Committing = 2
    Revealing = 3
    Settleable = 4
    Settled = 5


class Role(IntEnum):
    NONE = 0
    PROPOSER = 1
    VOTER = 2
    Proposer = 1
    Voter = 2


class Vote(IntEnum):
    NONE = 0
    ACCEPT = 1
    REJECT = 2
    Accept = 1
    Reject = 2


class Decision(IntEnum):
    NONE = 0
    ACCEPTED = 1
    REJECTED = 2
    Accepted = 1
    Rejected = 2


DEFAULT_PARAMS = dict(
    proposerFractionBps=2000,
    maxProposers=50,
    maxVoters=150,
    proposerStake=8 * TOKEN,
    voterStake=4 * TOKEN,
    proposerReward=2 * TOKEN,
    proposalPeriod=120,
    commitPeriod=120,
    revealPeriod=120,
)


def commitment_of(round_id, voter, vote, aggregate_hash, salt):
    """keccak256(abi.encode(roundId, voter, vote, aggregateHash, salt)), as VotingRound.commitmentFor."""
    return keccak(
        encode(
            ["uint256", "address", "uint8", "bytes32", "bytes32"],
            [round_id, voter, int(vote), aggregate_hash, salt],
        )
    )


def selection_sizes(n, p=DEFAULT_PARAMS):
    """(proposers, voters) drawn from n >= 2 active clients."""
    k = max(1, n * p["proposerFractionBps"] // 10_000)
    k = min(k, p["maxProposers"], n - 1)
    return k, min(n - k, p["maxVoters"])


@dataclass
class Outcome:
    """What settlement does to every participant, in token units."""

    decision: Decision
    model: bytes
    slashed: dict  # address -> amount
    rewarded: dict  # address -> amount
    pool_release: int
    swept: int


def settle_outcome(p, proposers, voters, proposed, reveals, pool_balance, global_model):
    """Settlement rule of SPEC.md.

    proposers: addresses drawn; proposed: set of addresses that proposed;
    reveals: dict voter -> (Vote, aggregate hash) in reveal order; pool_balance: before settling.
    """
    accepts, leading, leading_hash = {}, 0, b"\x00" * 32
    for vote, agg in reveals.values():
        if vote == Vote.ACCEPT:
            accepts[agg] = accepts.get(agg, 0) + 1
            if accepts[agg] > leading:
                leading, leading_hash = accepts[agg], agg
    accepted = 2 * leading > len(reveals)
    decision = Decision.ACCEPTED if accepted else Decision.REJECTED
    slashed, rewarded = {}, {}
    for a in proposers:
        if not (accepted and a in proposed):
            slashed[a] = p["proposerStake"]
    release = 0
    if accepted and proposed:
        n = len(proposed)
        per = min(p["proposerReward"] * n, pool_balance) // n
        release = per * n
        for a in proposers:
            if a in proposed:
                rewarded[a] = per

    def won(v):
        if v not in reveals:
            return False
        vote, agg = reveals[v]
        return (vote == Vote.ACCEPT and agg == leading_hash) if accepted else vote == Vote.REJECT

    winners = [v for v in voters if won(v)]
    losers = [v for v in voters if not won(v)]
    for v in losers:
        slashed[v] = p["voterStake"]
    share = len(losers) * p["voterStake"] // len(winners) if winners else 0
    for v in winners:
        rewarded[v] = share
    swept = sum(slashed.values()) + release - sum(rewarded.values())
    return Outcome(decision, leading_hash if accepted else global_model, slashed, rewarded, release, swept)
