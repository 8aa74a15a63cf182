"""Ballots (fl/protocol/votes.py): mask <-> verdicts, and the commitment equals VotingRound's."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.chain.ledger import ProtocolChain
from fl.protocol.params import ProtocolParams
from fl.protocol.votes import (
    MAX_PROPOSALS, Ballot, commitment_for, mask_from_verdicts, uniform_mask, verdicts_from_mask,
)

verdict_lists = st.lists(st.booleans(), max_size=MAX_PROPOSALS)


@given(verdict_lists)
def test_mask__round_trips_verdicts(verdicts):
    mask = mask_from_verdicts(verdicts)
    assert verdicts_from_mask(mask, len(verdicts)) == verdicts
    assert mask >> len(verdicts) == 0  # bits >= P are 0 (the contract reverts otherwise)


def test_mask__bit_i_is_proposal_i():
    assert mask_from_verdicts([True, False, True]) == 0b101
    assert verdicts_from_mask(0b110, 4) == [False, True, True, False]
    assert uniform_mask(True, 3) == 0b111 and uniform_mask(False, 3) == 0


@pytest.mark.parametrize("mask, count", [(0b1000, 3), (-1, 3), (1, 0)])
def test_verdicts_from_mask__bits_outside_the_proposals__raise(mask, count):
    with pytest.raises(ValueError, match="accept mask"):
        verdicts_from_mask(mask, count)


def test_mask_from_verdicts__too_many_or_not_bools__raise():
    with pytest.raises(ValueError, match="at most 256"):
        mask_from_verdicts([True] * 257)
    with pytest.raises(ValueError, match="must be a bool"):
        mask_from_verdicts([True, 2])


def test_commitment__binds_every_field():
    voter = "0x" + "11" * 20
    base = commitment_for(3, voter, 0b101, b"\x01" * 32, b"\x02" * 32)
    assert Ballot(voter, 0b101, b"\x01" * 32, b"\x02" * 32).commitment(3) == base
    others = [
        commitment_for(4, voter, 0b101, b"\x01" * 32, b"\x02" * 32),
        commitment_for(3, "0x" + "12" * 20, 0b101, b"\x01" * 32, b"\x02" * 32),
        commitment_for(3, voter, 0b100, b"\x01" * 32, b"\x02" * 32),
        commitment_for(3, voter, 0b101, b"\x03" * 32, b"\x02" * 32),
        commitment_for(3, voter, 0b101, b"\x01" * 32, b"\x04" * 32),
    ]
    assert base not in others and len(set(others)) == len(others)


@pytest.fixture(scope="module")
def voting(accounts):
    return ProtocolChain.deploy(accounts[0], ProtocolParams(), b"\x07" * 32, fast=False).voting


@settings(max_examples=25, deadline=None)
@given(
    round_id=st.integers(0, 2**64),
    voter_index=st.integers(0, 9),
    verdicts=verdict_lists,
    parent=st.binary(min_size=32, max_size=32),
    salt=st.binary(min_size=32, max_size=32),
)
def test_commitment__equals_the_contracts_commitment_for(voting, accounts, round_id, voter_index, verdicts, parent, salt):
    voter = str(accounts[voter_index].address)
    mask = mask_from_verdicts(verdicts)
    assert voting.commitmentFor(round_id, voter, mask, parent, salt) == commitment_for(round_id, voter, mask, parent, salt)
