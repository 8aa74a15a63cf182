"""Protocol enums and the vote commitment, mirrored from contracts/interfaces/IVotingRound.sol.

Pure Python (eth_abi + eth_utils), so the round logic can use them without Ape.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import IntEnum

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address


class Role(IntEnum):
    NONE = 0
    PROPOSER = 1
    VOTER = 2


class Vote(IntEnum):
    NONE = 0
    ACCEPT = 1
    REJECT = 2


class Decision(IntEnum):
    NONE = 0
    ACCEPTED = 1
    REJECTED = 2


class RoundState(IntEnum):
    NONE = 0
    PROPOSING = 1
    COMMITTING = 2
    REVEALING = 3
    SETTLEABLE = 4
    SETTLED = 5


def commitment_for(round_id: int, voter: str, vote: Vote, aggregate_hash: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(roundId, voter, vote, aggregateHash, salt)), as VotingRound.commitmentFor."""
    encoded = abi_encode(
        ["uint256", "address", "uint8", "bytes32", "bytes32"],
        [round_id, to_checksum_address(voter), int(vote), aggregate_hash, salt],
    )
    return keccak(encoded)


def new_salt() -> bytes:
    """A fresh random salt for a vote commitment."""
    return secrets.token_bytes(32)


# ---------------------------------------------------------------- what a ledger returns
@dataclass
class RoundOpening:
    """A round as opened: who was drawn (and removed), and its deadlines."""

    round_id: int
    proposers: list[str]
    voters: list[str]
    removed: list[str] = field(default_factory=list)
    proposal_deadline: int = 0
    commit_deadline: int = 0
    reveal_deadline: int = 0


@dataclass
class Settlement:
    """A settled round: the decision, the model now in force, the votes and each stake's outcome."""

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
    """One proposal as recorded on chain."""

    proposer: str
    update_hash: bytes
    sample_count: int

