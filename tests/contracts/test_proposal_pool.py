"""ProposalPool: binding, balance, and the VotingRound-only release."""
import ape
import pytest

from protocol_model import TOKEN

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def registry(solo):
    return solo[0]


@pytest.fixture
def pool(solo):
    """The pool under test, bound to the `round_stand_in` EOA (`vr`)."""
    return solo[1]


@pytest.fixture
def vr(round_stand_in):
    return round_stand_in


def test_constructor__sets_views(pool, token, registry, owner, vr):
    assert pool.token() == token.address
    assert pool.registry() == registry.address
    assert pool.votingRound() == vr.address
    assert pool.owner() == owner.address
    assert pool.call_view_method("balance") == 0


def test_constructor__zero_address__reverts(project, owner, token):
    with ape.reverts(project.ProposalPool.PoolZeroAddress):
        project.ProposalPool.deploy(ZERO, token, sender=owner)
    with ape.reverts(project.ProposalPool.PoolZeroAddress):
        project.ProposalPool.deploy(token, ZERO, sender=owner)


def test_bind__owner__binds_once_and_emits(project, owner, token, registry, vr):
    fresh = project.ProposalPool.deploy(token, registry, sender=owner)
    assert fresh.votingRound() == ZERO

    tx = fresh.bind(vr, sender=owner)

    assert tx.decode_logs(fresh.PoolBound)[0].votingRound == vr.address
    assert fresh.votingRound() == vr.address


def test_bind__twice__reverts(pool, owner, vr):
    with ape.reverts(pool.PoolAlreadyBound, votingRound=vr.address):
        pool.bind(owner, sender=owner)


def test_bind__zero_address__reverts(project, owner, token, registry):
    fresh = project.ProposalPool.deploy(token, registry, sender=owner)
    with ape.reverts(fresh.PoolZeroAddress):
        fresh.bind(ZERO, sender=owner)


def test_bind__not_owner__reverts(project, owner, outsider, token, registry):
    fresh = project.ProposalPool.deploy(token, registry, sender=owner)
    with ape.reverts(fresh.OwnableUnauthorizedAccount, account=outsider.address):
        fresh.bind(outsider, sender=outsider)


def test_balance__plain_transfer__counts(pool, token, outsider):
    token.mint(outsider, 5 * TOKEN, sender=outsider)
    token.transfer(pool, 5 * TOKEN, sender=outsider)
    assert pool.call_view_method("balance") == 5 * TOKEN


def test_release__round__pays_registry_as_unassigned_and_emits(pool, registry, token, vr, outsider):
    token.mint(pool, 5 * TOKEN, sender=outsider)

    tx = pool.release(3 * TOKEN, sender=vr)

    assert tx.decode_logs(pool.RewardReleased)[0].amount == 3 * TOKEN
    assert pool.call_view_method("balance") == 2 * TOKEN
    assert token.balanceOf(registry) == 3 * TOKEN
    assert registry.unassigned() == 3 * TOKEN


def test_release__more_than_balance__reverts(pool, token, vr, outsider):
    token.mint(pool, 5 * TOKEN, sender=outsider)
    with ape.reverts(pool.PoolInsufficientBalance, balance=5 * TOKEN, requested=5 * TOKEN + 1):
        pool.release(5 * TOKEN + 1, sender=vr)


def test_release__other_caller__reverts(pool, owner):
    with ape.reverts(pool.PoolUnauthorized, caller=owner.address):
        pool.release(0, sender=owner)
