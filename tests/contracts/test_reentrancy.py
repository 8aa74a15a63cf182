"""No reentrancy: a token whose transfer hook calls back into the protocol (ERC-777 style, or a
malicious token) cannot re-enter deposit, withdraw, openRound or settle."""
import ape
import pytest

from protocol_model import DEFAULT_PARAMS, INITIAL_MODEL, TOKEN


@pytest.fixture
def rtoken(project, owner):
    return project.ReentrantToken.deploy(sender=owner)


@pytest.fixture
def hooked(project, owner, rtoken, clients):
    """The protocol on the hooked token; three clients staked 64 tokens each."""
    registry = project.StakeRegistry.deploy(rtoken, sender=owner)
    pool = project.ProposalPool.deploy(rtoken, registry, sender=owner)
    voting = project.VotingRound.deploy(registry, pool, DEFAULT_PARAMS, INITIAL_MODEL, sender=owner)
    registry.bind(voting, pool, sender=owner)
    pool.bind(voting, sender=owner)
    for c in clients[:3]:
        rtoken.mint(c, 64 * TOKEN, sender=c)
        rtoken.approve(registry, 64 * TOKEN, sender=c)
        registry.deposit(64 * TOKEN, sender=c)
    return registry, pool, voting


def test_deposit__token_reenters_withdraw__reverts(hooked, rtoken, alice):
    registry = hooked[0]
    rtoken.mint(alice, TOKEN, sender=alice)
    rtoken.approve(registry, TOKEN, sender=alice)
    rtoken.arm(registry, registry.withdraw.encode_input(1), sender=alice)
    with ape.reverts(registry.ReentrancyGuardReentrantCall):
        registry.deposit(TOKEN, sender=alice)


def test_withdraw__token_reenters_deposit__reverts(hooked, rtoken, alice):
    registry = hooked[0]
    rtoken.arm(registry, registry.deposit.encode_input(1), sender=alice)
    with ape.reverts(registry.ReentrancyGuardReentrantCall):
        registry.withdraw(TOKEN, sender=alice)
    assert registry.stakeOf(alice) == 64 * TOKEN


@pytest.mark.parametrize("reenter", ["settle", "openRound"])
def test_settle__token_reenters_round__reverts(hooked, rtoken, chain, alice, reenter):
    registry, _, voting = hooked
    voting.openRound(sender=alice)
    chain.pending_timestamp = voting.getRound(1).revealDeadline  # nobody acted: all slashed and swept
    data = voting.settle.encode_input(1) if reenter == "settle" else voting.openRound.encode_input()
    rtoken.arm(voting, data, sender=alice)
    with ape.reverts(voting.ReentrancyGuardReentrantCall):
        voting.settle(1, sender=alice)
    rtoken.arm(ape.utils.ZERO_ADDRESS, b"", sender=alice)
    voting.settle(1, sender=alice)  # the same settlement without the hook goes through
    assert registry.unassigned() == 0
