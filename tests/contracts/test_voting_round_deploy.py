"""VotingRound deployment: parameter validation and the views before any round."""
import ape
import pytest

from protocol_model import DEFAULT_PARAMS, INITIAL_MODEL, RoundState

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.mark.parametrize(
    "field, value",
    [
        ("proposerFractionBps", 0),
        ("proposerFractionBps", 10_000),
        ("maxProposers", 0),
        ("maxProposers", 257),  # a ballot has 256 bits
        ("maxVoters", 0),
        ("proposerStake", 0),
        ("voterStake", 0),
        ("proposalPeriod", 0),
        ("commitPeriod", 0),
        ("revealPeriod", 0),
        ("seedBlockDelay", 129),  # more than half the 256 readable block hashes
        ("seedBlockDelay", 2**64 - 1),
    ],
)
def test_constructor__param_out_of_range__reverts(project, owner, registry, pool, field, value):
    p = {**DEFAULT_PARAMS, field: value}
    with ape.reverts(project.VotingRound.RoundInvalidParams, field=field):
        project.VotingRound.deploy(registry, pool, p, INITIAL_MODEL, sender=owner)


def test_constructor__zero_contracts__reverts(project, owner, registry, pool):
    with ape.reverts(project.VotingRound.RoundInvalidParams, field="registry"):
        project.VotingRound.deploy(ZERO, pool, DEFAULT_PARAMS, INITIAL_MODEL, sender=owner)
    with ape.reverts(project.VotingRound.RoundInvalidParams, field="proposalPool"):
        project.VotingRound.deploy(registry, ZERO, DEFAULT_PARAMS, INITIAL_MODEL, sender=owner)


def test_constructor__edge_values__accepted(deploy_protocol):
    _, _, voting = deploy_protocol(proposerFractionBps=9_999, maxProposers=1, maxVoters=1, proposerReward=0)
    assert voting.params().proposerFractionBps == 9_999
    _, _, widest = deploy_protocol(maxProposers=256, maxVoters=65_535, seedBlockDelay=128)
    assert (widest.params().maxProposers, widest.params().maxVoters) == (256, 65_535)
    assert widest.params().seedBlockDelay == 128
    assert voting.params().proposerReward == 0


def test_views__after_deploy(voting, registry, pool):
    p = voting.params()
    for field, value in DEFAULT_PARAMS.items():
        assert getattr(p, field) == value, field
    assert voting.initialModelHash() == INITIAL_MODEL
    assert voting.globalModelHash() == INITIAL_MODEL
    assert voting.registry() == registry.address
    assert voting.proposalPool() == pool.address
    assert voting.currentRoundId() == 0
    assert voting.state(0) == RoundState.NONE
    assert voting.state(1) == RoundState.NONE
    assert voting.proposersOf(1) == []
    assert voting.votersOf(1) == []
    assert voting.getRound(1).settled is False
    assert voting.proposalAccepts(1) == []


def test_wiring__registry_and_pool_point_at_round(voting, registry, pool):
    assert registry.votingRound() == voting.address
    assert registry.proposalPool() == pool.address
    assert pool.votingRound() == voting.address
    assert pool.registry() == registry.address
