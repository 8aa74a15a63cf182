"""Protocol enums, ballots and the vote commitment, mirrored from contracts/interfaces/IVotingRound.sol.

A ballot (protocol v2, issue 11) is a bit mask over the round's proposals in their on-chain order
(bit i set = the voter accepts proposal i) plus the parent hash the voter attests (the hash of the
model the round started from). Pure Python (eth_abi + eth_utils), so the round logic can use them
without Ape.
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


MAX_PROPOSALS = 256  # a ballot is one uint256 (VotingRound: maxProposers <= 256)


def mask_from_verdicts(verdicts) -> int:
    """The ballot's accept mask: bit i set iff verdicts[i] (True = accept proposal i)."""
    verdicts = list(verdicts)
    if len(verdicts) > MAX_PROPOSALS:
        raise ValueError(f"a ballot covers at most {MAX_PROPOSALS} proposals, got {len(verdicts)}")
    mask = 0
    for index, accept in enumerate(verdicts):
        if not isinstance(accept, (bool, int)) or accept not in (0, 1):
            raise ValueError(f"verdict {index} must be a bool, got {accept!r}")
        if accept:
            mask |= 1 << index
    return mask


def verdicts_from_mask(mask: int, proposal_count: int) -> list[bool]:
    """The verdicts of an accept mask over `proposal_count` proposals (bits >= P must be 0)."""
    if not 0 <= proposal_count <= MAX_PROPOSALS:
        raise ValueError(f"proposal count must be in [0, {MAX_PROPOSALS}], got {proposal_count}")
    if mask < 0 or mask >> proposal_count:
        raise ValueError(f"accept mask {mask:#x} has bits outside the {proposal_count} proposals")
    return [bool(mask >> index & 1) for index in range(proposal_count)]


def uniform_mask(accept: bool, proposal_count: int) -> int:
    """The paper's ballot: the same verdict on every proposal of the round."""
    return mask_from_verdicts([accept] * proposal_count)


def commitment_for(round_id: int, voter: str, accept_mask: int, parent_hash: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(roundId, voter, acceptMask, parentHash, salt)), as VotingRound.commitmentFor."""
    encoded = abi_encode(
        ["uint256", "address", "uint256", "bytes32", "bytes32"],
        [round_id, to_checksum_address(voter), int(accept_mask), parent_hash, salt],
    )
    return keccak(encoded)


@dataclass(frozen=True)
class Ballot:
    """One voter's ballot as committed and revealed: accept mask, parent hash, salt."""

    voter: str
    accept_mask: int
    parent_hash: bytes
    salt: bytes

    def commitment(self, round_id: int) -> bytes:
        return commitment_for(round_id, self.voter, self.accept_mask, self.parent_hash, self.salt)


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
class ProposalOutcome:
    """One settled proposal (event ProposalSettled)."""

    index: int
    proposer: str
    accepted: bool
    accepts: int
    revealed: int


@dataclass
class Settlement:
    """A settled round: per-proposal decisions, the recorded model hash, each stake's outcome.

    `global_model_hash` is the hash the chain recorded at this settlement: the parent hash a voter
    majority attested (the model this round STARTED from), or the previous record if none had a
    majority (PROTOCOL_V2: the record lags one round behind the clients' model).
    """

    round_id: int
    decision: Decision
    global_model_hash: bytes
    accepted_mask: int
    accepted_count: int
    revealed_votes: int
    proposals: list[ProposalOutcome] = field(default_factory=list)
    # address -> (role, won, slashed units, rewarded units)
    outcomes: dict[str, tuple[Role, bool, int, int]] = field(default_factory=dict)
    gas_used: int = 0

    def accepted(self, proposal_count: int) -> list[bool]:
        """Verdict of the chain on each of the round's proposals, in on-chain order."""
        return verdicts_from_mask(self.accepted_mask, proposal_count)


@dataclass
class Proposal:
    """One proposal as recorded on chain."""

    proposer: str
    update_hash: bytes
    sample_count: int

