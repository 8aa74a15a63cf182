"""fl.protocol.draw (VotingRound's draw without a chain) against the contract tests' own model of
the seed and the draw (tests/contracts/protocol_model.py) and known development-chain addresses."""

import importlib.util
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.protocol import draw as d
from fl.protocol.params import ProtocolParams

_spec = importlib.util.spec_from_file_location(
    "contract_protocol_model", Path(__file__).resolve().parents[1] / "contracts" / "protocol_model.py")
model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model)


def test_create_address__the_well_known_first_contracts_of_the_anvil_and_hardhat_deployer():
    assert d.create_address(d.DEVELOPMENT_DEPLOYER, 0) == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert d.create_address(d.DEVELOPMENT_DEPLOYER, 1) == "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
    assert d.development_voting_address() == "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"
    with pytest.raises(ValueError, match="nonce"):
        d.create_address(d.DEVELOPMENT_DEPLOYER, 128)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), st.integers(1, 10**6))
def test_seeds_and_salt_share__equal_the_contract_model(model_hash, mix, round_id):
    voting = d.development_voting_address()
    assert d.initial_seed(voting, model_hash) == model.initial_seed(voting, model_hash)
    assert d.round_seed(model_hash, mix, round_id, voting) == model.round_seed(model_hash, mix, round_id, voting)
    assert d.salt_share(voting, mix) == model.salt_share(voting, mix)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(2, 60), st.sampled_from([0.1, 0.2, 0.3, 0.5]))
def test_draw__equals_the_full_fisher_yates_of_the_contract_model(seed, n, fraction):
    active = [d.simulated_client_address(i) for i in range(n)]
    params = ProtocolParams(proposer_fraction=fraction, max_proposers=8, max_voters=20)
    k, v = d.selection_sizes(n, params)
    bps = dict(model.DEFAULT_PARAMS, proposerFractionBps=round(fraction * 10_000), maxProposers=8, maxVoters=20)

    assert (k, v) == model.selection_sizes(n, bps)
    proposers, voters = model.fisher_yates_draw(seed, active, k, v)
    assert d.draw(seed, active, k + v) == proposers + voters


def test_contract_draw__round_two_mixes_in_the_voters_salts():
    active = [d.simulated_client_address(i) for i in range(10)]
    salts_a, salts_b = random.Random(1), random.Random(2)
    first_a, first_b = d.ContractDraw(active, b"\x01" * 32, salts_a), d.ContractDraw(active, b"\x01" * 32, salts_b)

    assert first_a.next_round() == first_b.next_round()  # round 1: the initial seed only
    seeds = [first_a._seed, first_b._seed]
    first_a.next_round(), first_b.next_round()
    assert seeds[0] == seeds[1] and first_a._seed != first_b._seed  # round 2: other salts, other seed
    expected = model.round_seed(seeds[0], _mix(active, 10, random.Random(1)), 2, d.development_voting_address())
    assert first_a._seed == expected


def _mix(active, n, salts):
    """Round 1's salt mix of the reference model (voters in draw order, one salt each)."""
    seed = model.round_seed(model.initial_seed(d.development_voting_address(), b"\x01" * 32), model.ZERO32, 1,
                            d.development_voting_address())
    k, v = model.selection_sizes(n)
    _, voters = model.fisher_yates_draw(seed, active, k, v)
    mix = model.ZERO32
    for voter in voters:
        mix = model.xor32(mix, model.salt_share(voter, salts.getrandbits(256).to_bytes(32, "big")))
    return mix
