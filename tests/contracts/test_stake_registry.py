"""StakeRegistry: deposits, withdrawals, binding, and the VotingRound-only entry points."""
import ape
import pytest

from protocol_model import TOKEN

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def registry(solo):
    """The registry under test, bound to the `round_stand_in` EOA (`vr` below)."""
    return solo[0]


@pytest.fixture
def pool(solo):
    return solo[1]


@pytest.fixture
def vr(round_stand_in):
    return round_stand_in


@pytest.fixture
def stake(fund, registry):
    def stake(accounts_, amount=64 * TOKEN):
        for a in accounts_:
            fund(a, registry, amount)
            registry.deposit(amount, sender=a)
        return accounts_

    return stake


# ---------------------------------------------------------------- deployment and bind
def test_constructor__zero_token__reverts(project, owner):
    with ape.reverts(project.StakeRegistry.StakeZeroAddress):
        project.StakeRegistry.deploy(ZERO, sender=owner)


def test_constructor__sets_token_and_owner(registry, token, owner):
    assert registry.token() == token.address
    assert registry.owner() == owner.address


def test_bind__owner__binds_once_and_emits(deploy_protocol, owner):
    registry, pool, voting = deploy_protocol(bind=False)
    assert registry.votingRound() == ZERO
    assert registry.proposalPool() == ZERO

    tx = registry.bind(voting, pool, sender=owner)

    assert registry.votingRound() == voting.address
    assert registry.proposalPool() == pool.address
    [event] = tx.decode_logs(registry.RegistryBound)
    assert event.votingRound == voting.address
    assert event.proposalPool == pool.address


def test_bind__twice__reverts(registry, pool, owner, vr):
    with ape.reverts(registry.StakeAlreadyBound, votingRound=vr.address):
        registry.bind(owner, pool, sender=owner)


def test_bind__zero_address__reverts(deploy_protocol, owner):
    registry, pool, voting = deploy_protocol(bind=False)
    with ape.reverts(registry.StakeZeroAddress):
        registry.bind(ZERO, pool, sender=owner)
    with ape.reverts(registry.StakeZeroAddress):
        registry.bind(voting, ZERO, sender=owner)


def test_bind__not_owner__reverts(deploy_protocol, outsider):
    registry, pool, voting = deploy_protocol(bind=False)
    with ape.reverts(registry.OwnableUnauthorizedAccount, account=outsider.address):
        registry.bind(voting, pool, sender=outsider)


# ---------------------------------------------------------------- deposit
def test_deposit__first__registers_and_emits(registry, token, fund, alice):
    fund(alice, registry, 10 * TOKEN)

    tx = registry.deposit(10 * TOKEN, sender=alice)

    assert tx.decode_logs(registry.ClientRegistered)[0].client == alice.address
    [event] = tx.decode_logs(registry.Deposited)
    assert (event.client, event.amount, event.newStake) == (alice.address, 10 * TOKEN, 10 * TOKEN)
    assert registry.stakeOf(alice) == 10 * TOKEN
    assert registry.freeStakeOf(alice) == 10 * TOKEN
    assert registry.lockedOf(alice) == 0
    assert registry.isActive(alice)
    assert not registry.isRemoved(alice)
    assert registry.activeCount() == 1
    assert registry.activeClientAt(0) == alice.address
    assert registry.activeClients() == [alice.address]
    assert registry.totalStaked() == 10 * TOKEN
    assert token.balanceOf(registry) == 10 * TOKEN
    assert registry.unassigned() == 0


def test_deposit__second__adds_without_registering(registry, fund, alice):
    fund(alice, registry, 10 * TOKEN)
    registry.deposit(4 * TOKEN, sender=alice)

    tx = registry.deposit(6 * TOKEN, sender=alice)

    assert tx.decode_logs(registry.ClientRegistered) == []
    assert tx.decode_logs(registry.Deposited)[0].newStake == 10 * TOKEN
    assert registry.activeCount() == 1


def test_deposit__zero__reverts(registry, alice):
    with ape.reverts(registry.StakeZeroAmount):
        registry.deposit(0, sender=alice)


def test_deposit__no_allowance__reverts(registry, token, alice):
    token.mint(alice, TOKEN, sender=alice)
    with ape.reverts(token.ERC20InsufficientAllowance):
        registry.deposit(TOKEN, sender=alice)


def test_deposit__removed_client__reverts(registry, stake, fund, alice, bob, vr):
    stake([alice, bob])
    registry.remove(alice, sender=vr)
    fund(alice, registry, TOKEN)
    with ape.reverts(registry.StakeClientRemoved, client=alice.address):
        registry.deposit(TOKEN, sender=alice)


# ---------------------------------------------------------------- withdraw
def test_withdraw__free_stake__pays_back_and_emits(registry, token, stake, alice):
    stake([alice], 10 * TOKEN)

    tx = registry.withdraw(3 * TOKEN, sender=alice)

    [event] = tx.decode_logs(registry.Withdrawn)
    assert (event.client, event.amount, event.newStake) == (alice.address, 3 * TOKEN, 7 * TOKEN)
    assert registry.stakeOf(alice) == 7 * TOKEN
    assert registry.totalStaked() == 7 * TOKEN
    assert token.balanceOf(alice) == 3 * TOKEN
    assert registry.isActive(alice)  # withdrawing everything does not deregister


def test_withdraw__zero__reverts(registry, alice):
    with ape.reverts(registry.StakeZeroAmount):
        registry.withdraw(0, sender=alice)


def test_withdraw__more_than_stake__reverts(registry, stake, alice):
    stake([alice], 10 * TOKEN)
    with ape.reverts(registry.StakeInsufficientFree, client=alice.address, free=10 * TOKEN, requested=11 * TOKEN):
        registry.withdraw(11 * TOKEN, sender=alice)


def test_withdraw__locked_stake__reverts(registry, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    registry.lock(alice, 8 * TOKEN, sender=vr)
    with ape.reverts(registry.StakeInsufficientFree, client=alice.address, free=2 * TOKEN, requested=3 * TOKEN):
        registry.withdraw(3 * TOKEN, sender=alice)
    registry.withdraw(2 * TOKEN, sender=alice)
    assert registry.stakeOf(alice) == 8 * TOKEN


def test_withdraw__removed_client__may_take_remainder(registry, token, stake, alice, bob, vr):
    stake([alice, bob], 10 * TOKEN)
    registry.remove(alice, sender=vr)

    registry.withdraw(10 * TOKEN, sender=alice)

    assert token.balanceOf(alice) == 10 * TOKEN
    assert registry.stakeOf(alice) == 0


# ---------------------------------------------------------------- VotingRound only
@pytest.mark.parametrize(
    "call",
    [
        lambda r, c: r.lock(c, 1, sender=c),
        lambda r, c: r.unlock(c, 1, sender=c),
        lambda r, c: r.slash(c, 1, sender=c),
        lambda r, c: r.reward(c, 1, sender=c),
        lambda r, c: r.remove(c, sender=c),
        lambda r, c: r.sweepUnassigned(sender=c),
    ],
    ids=["lock", "unlock", "slash", "reward", "remove", "sweepUnassigned"],
)
def test_round_only__other_caller__reverts(registry, alice, call):
    with ape.reverts(registry.StakeUnauthorized, caller=alice.address):
        call(registry, alice)


def test_round_only__owner__reverts(registry, owner):
    with ape.reverts(registry.StakeUnauthorized, caller=owner.address):
        registry.lock(owner, 1, sender=owner)


def test_lock__free_stake__locks_and_emits(registry, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    tx = registry.lock(alice, 8 * TOKEN, sender=vr)
    [event] = tx.decode_logs(registry.StakeLocked)
    assert (event.client, event.amount) == (alice.address, 8 * TOKEN)
    assert registry.lockedOf(alice) == 8 * TOKEN
    assert registry.freeStakeOf(alice) == 2 * TOKEN


def test_lock__beyond_free__reverts(registry, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    with ape.reverts(registry.StakeInsufficientFree, client=alice.address, free=10 * TOKEN, requested=11 * TOKEN):
        registry.lock(alice, 11 * TOKEN, sender=vr)


def test_lock__not_active__reverts(registry, outsider, vr):
    with ape.reverts(registry.StakeNotActive, client=outsider.address):
        registry.lock(outsider, 1, sender=vr)


def test_unlock__locked__releases_and_emits(registry, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    registry.lock(alice, 8 * TOKEN, sender=vr)
    tx = registry.unlock(alice, 8 * TOKEN, sender=vr)
    [event] = tx.decode_logs(registry.StakeUnlocked)
    assert (event.client, event.amount) == (alice.address, 8 * TOKEN)
    assert registry.lockedOf(alice) == 0
    assert registry.stakeOf(alice) == 10 * TOKEN


def test_unlock__beyond_locked__reverts(registry, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    registry.lock(alice, 4 * TOKEN, sender=vr)
    with ape.reverts(registry.StakeInsufficientLocked, client=alice.address, locked=4 * TOKEN, requested=5 * TOKEN):
        registry.unlock(alice, 5 * TOKEN, sender=vr)


def test_slash__locked__moves_to_unassigned_and_emits(registry, token, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    registry.lock(alice, 8 * TOKEN, sender=vr)
    tx = registry.slash(alice, 8 * TOKEN, sender=vr)
    [event] = tx.decode_logs(registry.StakeSlashed)
    assert (event.client, event.amount) == (alice.address, 8 * TOKEN)
    assert registry.stakeOf(alice) == 2 * TOKEN
    assert registry.lockedOf(alice) == 0
    assert registry.totalStaked() == 2 * TOKEN
    assert registry.unassigned() == 8 * TOKEN
    assert token.balanceOf(registry) == 10 * TOKEN


def test_slash__beyond_locked__reverts(registry, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    registry.lock(alice, 4 * TOKEN, sender=vr)
    with ape.reverts(registry.StakeInsufficientLocked, client=alice.address, locked=4 * TOKEN, requested=8 * TOKEN):
        registry.slash(alice, 8 * TOKEN, sender=vr)


def test_reward__from_unassigned__grows_stake_and_emits(registry, stake, alice, bob, vr):
    stake([alice, bob], 10 * TOKEN)
    registry.lock(alice, 8 * TOKEN, sender=vr)
    registry.slash(alice, 8 * TOKEN, sender=vr)
    tx = registry.reward(bob, 5 * TOKEN, sender=vr)
    [event] = tx.decode_logs(registry.StakeRewarded)
    assert (event.client, event.amount) == (bob.address, 5 * TOKEN)
    assert registry.stakeOf(bob) == 15 * TOKEN
    assert registry.totalStaked() == 17 * TOKEN
    assert registry.unassigned() == 3 * TOKEN


def test_reward__beyond_unassigned__reverts(registry, token, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    token.mint(registry, TOKEN, sender=alice)  # a donation is unassigned
    with ape.reverts(registry.StakeInsufficientUnassigned, unassigned=TOKEN, requested=TOKEN + 1):
        registry.reward(alice, TOKEN + 1, sender=vr)


def test_remove__middle__swaps_last_in_and_emits(registry, stake, clients, vr):
    a, b, c = clients[:3]
    stake([a, b, c], 10 * TOKEN)
    tx = registry.remove(a, sender=vr)
    [event] = tx.decode_logs(registry.ClientRemoved)
    assert (event.client, event.stake) == (a.address, 10 * TOKEN)
    assert registry.activeClients() == [c.address, b.address]
    assert registry.activeCount() == 2
    assert not registry.isActive(a)
    assert registry.isRemoved(a)
    assert registry.stakeOf(a) == 10 * TOKEN  # stake stays withdrawable


def test_remove__last__pops(registry, stake, clients, vr):
    a, b, c = clients[:3]
    stake([a, b, c], 10 * TOKEN)
    registry.remove(c, sender=vr)
    registry.remove(a, sender=vr)
    assert registry.activeClients() == [b.address]
    registry.remove(b, sender=vr)
    assert registry.activeClients() == []


def test_remove__twice__reverts(registry, stake, alice, vr):
    stake([alice])
    registry.remove(alice, sender=vr)
    with ape.reverts(registry.StakeClientRemoved, client=alice.address):
        registry.remove(alice, sender=vr)


def test_remove__unregistered__reverts(registry, outsider, vr):
    with ape.reverts(registry.StakeNotActive, client=outsider.address):
        registry.remove(outsider, sender=vr)


def test_sweep_unassigned__sends_all_to_pool_and_emits(registry, pool, token, stake, alice, vr):
    stake([alice], 10 * TOKEN)
    token.mint(registry, 3 * TOKEN, sender=alice)
    tx = registry.sweepUnassigned(sender=vr)
    [event] = tx.decode_logs(registry.UnassignedSwept)
    assert (event.proposalPool, event.amount) == (pool.address, 3 * TOKEN)
    assert token.balanceOf(pool) == 3 * TOKEN
    assert registry.unassigned() == 0
    assert token.balanceOf(registry) == 10 * TOKEN


def test_sweep_unassigned__nothing__no_event(registry, vr):
    tx = registry.sweepUnassigned(sender=vr)
    assert tx.decode_logs(registry.UnassignedSwept) == []


def test_active_client_at__out_of_range__reverts(registry):
    with ape.reverts():
        registry.activeClientAt(0)
