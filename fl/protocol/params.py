"""VotingRound's deployment parameters and the token's units (plain Python: scripts read them without Ape)."""

from __future__ import annotations

from dataclasses import dataclass

TOKEN = 10**18  # the test token has 18 decimals
MAX_SEED_BLOCK_DELAY = 128  # VotingRound rejects a larger seedBlockDelay
MAX_PROPOSALS = 256  # RoundMath.MAX_PROPOSALS: VotingRound rejects a larger maxProposers


@dataclass(frozen=True)
class ProtocolParams:
    """VotingRound's deployment parameters, in whole tokens, seconds and blocks.

    `seed_block_delay` 0 keeps every round's seed a function of the voters' salts alone (the same
    draws on every chain: simulations); d > 0 mixes in the hash of the block d blocks after each
    settlement (SPEC.md, "Randomness": recommended, 2-5, for any public deployment)."""

    proposer_fraction: float = 0.2
    max_proposers: int = 50
    max_voters: int = 150
    proposer_stake: float = 8
    voter_stake: float = 4
    proposer_reward: float = 2
    proposal_period: int = 600
    commit_period: int = 600
    reveal_period: int = 600
    seed_block_delay: int = 0

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
            self.seed_block_delay,
        )


def to_units(tokens: float) -> int:
    return int(round(tokens * TOKEN))


def to_tokens(units: int) -> float:
    return units / TOKEN
