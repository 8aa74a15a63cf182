"""VotingRound's deployment parameters and the token's units (plain Python: scripts read them without Ape)."""

from __future__ import annotations

from dataclasses import dataclass

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
