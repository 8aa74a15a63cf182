"""Ballots over a round's proposals (protocol v2, issue 11): verdicts <-> bit mask, and the commitment.

A ballot is a uint256 ``acceptMask``: bit i set = the voter accepts proposal i (proposals in
on-chain submission order). The voter also attests ``parentHash``, the hash of the model the
round started from. Pure Python (eth_abi + eth_utils), mirrored from VotingRound.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

MAX_PROPOSALS = 256  # a ballot is one uint256


def mask_from_verdicts(verdicts: Sequence[bool]) -> int:
    """The accept mask of one verdict per proposal (True = accept), proposal i at bit i."""
    if len(verdicts) > MAX_PROPOSALS:
        raise ValueError(f"a ballot covers at most {MAX_PROPOSALS} proposals, got {len(verdicts)}")
    return sum(1 << i for i, accept in enumerate(verdicts) if accept)


def verdicts_from_mask(mask: int, proposal_count: int) -> list[bool]:
    """One verdict per proposal from an accept mask; bits at or beyond `proposal_count` must be 0
    (the contract reverts RoundInvalidBallot otherwise)."""
    if not 0 <= proposal_count <= MAX_PROPOSALS:
        raise ValueError(f"proposal_count must be in 0..{MAX_PROPOSALS}, got {proposal_count}")
    if mask < 0 or mask >> proposal_count:
        raise ValueError(f"accept mask {mask:#x} sets bits beyond the {proposal_count} proposals")
    return [bool(mask >> i & 1) for i in range(proposal_count)]


def ballot_commitment(round_id: int, voter: str, accept_mask: int, parent_hash: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(roundId, voter, acceptMask, parentHash, salt)), as VotingRound.commitmentFor."""
    encoded = abi_encode(
        ["uint256", "address", "uint256", "bytes32", "bytes32"],
        [round_id, to_checksum_address(voter), accept_mask, parent_hash, salt],
    )
    return keccak(encoded)


__all__ = ["MAX_PROPOSALS", "ballot_commitment", "mask_from_verdicts", "verdicts_from_mask"]
