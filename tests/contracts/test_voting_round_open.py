"""VotingRound.openRound: preconditions, the seed, the sparse draw, stake locks, removal at open."""
import ape
import pytest
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol_model import (
    DEFAULT_PARAMS,
    INITIAL_MODEL,
    TOKEN,
    ZERO32,
    Role,
    RoundState,
    apply_draw,
    initial_seed,
    round_seed,
    salt_share,
    selection_sizes,
    xor32,
)


def test_open_round__one_client__reverts(voting, stake, alice):
    stake([alice])
    with ape.reverts(voting.RoundNotEnoughClients, active=1, required=2):
        voting.openRound(sender=alice)


def test_open_round__no_clients__reverts(voting, outsider):
    with ape.reverts(voting.RoundNotEnoughClients, active=0, required=2):
        voting.openRound(sender=outsider)


def test_open_round__draws_locks_and_emits(voting, registry, stake, clients, outsider, chain, open_round):
    stake(clients)  # 17 clients: 3 proposers, 14 voters
    k, v = selection_sizes(len(clients))

    round_id, proposers, voters, tx = open_round(sender=outsider)  # anyone may open

    assert round_id == 1 and voting.currentRoundId() == 1
    assert (len(proposers), len(voters)) == (k, v) == (3, 14)
    assert set(proposers).isdisjoint(voters)
    [opened] = tx.decode_logs(voting.RoundOpened)
    info = voting.getRound(1)
    block = chain.blocks[tx.block_number]
    assert opened.roundId == 1
    assert opened.seed == info.seed
    assert (opened.proposerCount, opened.voterCount) == (k, v)
    assert info.openedAt == block.timestamp
    assert opened.proposalDeadline == info.proposalDeadline == block.timestamp + 120
    assert opened.commitDeadline == info.commitDeadline == block.timestamp + 240
    assert opened.revealDeadline == info.revealDeadline == block.timestamp + 360
    assert (info.proposerCount, info.voterCount) == (k, v)
    selected = [(e.client, e.role) for e in tx.decode_logs(voting.ParticipantSelected)]
    assert selected == [(p.address, Role.PROPOSER) for p in proposers] + [(a.address, Role.VOTER) for a in voters]
    for p in proposers:
        assert registry.lockedOf(p) == 8 * TOKEN
        assert voting.getParticipant(1, p).role == Role.PROPOSER
    for a in voters:
        assert registry.lockedOf(a) == 4 * TOKEN
        assert voting.getParticipant(1, a).role == Role.VOTER
    assert voting.getParticipant(1, outsider).role == Role.NONE
    assert len(tx.decode_logs(registry.StakeLocked)) == k + v
    assert voting.state(1) == RoundState.PROPOSING


def test_open_round__two_clients__one_proposer_one_voter(voting, stake, clients, open_round):
    stake(clients[:2])
    _, proposers, voters, _ = open_round()
    assert (len(proposers), len(voters)) == (1, 1)


def test_open_round__caps__bound_selection(deploy_protocol, fund, clients):
    registry, _, voting = deploy_protocol(proposerFractionBps=5_000, maxProposers=2, maxVoters=3)
    for c in clients[:10]:
        fund(c, registry, 64 * TOKEN)
        registry.deposit(64 * TOKEN, sender=c)
    voting.openRound(sender=clients[0])
    assert len(voting.proposersOf(1)) == 2
    assert len(voting.votersOf(1)) == 3


def test_open_round__previous_not_settled__reverts(voting, stake, clients, open_round, advance_to):
    stake(clients[:3])
    open_round()
    with ape.reverts(voting.RoundPreviousNotSettled, roundId=1):
        voting.openRound(sender=clients[0])
    advance_to(1, RoundState.SETTLEABLE)
    with ape.reverts(voting.RoundPreviousNotSettled, roundId=1):
        voting.openRound(sender=clients[0])


def test_open_round__after_settle__opens_next(voting, stake, clients, play_round, open_round):
    stake(clients[:3])
    play_round()
    round_id, _, _, _ = open_round()
    assert round_id == 2
    assert voting.state(1) == RoundState.SETTLED
    assert voting.state(2) == RoundState.PROPOSING


def test_open_round__under_staked_client__removed_not_selected(voting, registry, stake, clients, open_round):
    poor = clients[4]
    stake(clients[:4])
    stake([poor], 3 * TOKEN)  # below both the voter stake (4) and the proposer stake (8)

    round_id, proposers, voters, tx = open_round()

    [removed] = tx.decode_logs(voting.ParticipantRemoved)
    assert removed.roundId == round_id
    assert removed.client == poor.address
    assert removed.freeStake == 3 * TOKEN
    assert removed.requiredStake == (8 * TOKEN if removed.role == Role.PROPOSER else 4 * TOKEN)
    assert tx.decode_logs(registry.ClientRemoved)[0].client == poor.address
    assert poor not in proposers and poor not in voters
    assert len(proposers) + len(voters) == 4
    assert voting.getParticipant(round_id, poor).role == Role.NONE
    assert registry.isRemoved(poor) and not registry.isActive(poor)
    assert registry.activeCount() == 4
    assert registry.lockedOf(poor) == 0
    assert registry.stakeOf(poor) == 3 * TOKEN


def test_open_round__removed_client__never_selected_again(
    voting, registry, stake, clients, play_round, open_round, fund
):
    poor = clients[4]
    stake(clients[:4])
    stake([poor], 3 * TOKEN)
    play_round()
    assert registry.isRemoved(poor)

    round_id, _, _, _ = open_round()

    assert poor.address not in voting.proposersOf(round_id) + voting.votersOf(round_id)
    with ape.reverts(voting.RoundNotSelected, roundId=round_id, client=poor.address, role=Role.PROPOSER):
        voting.propose(round_id, b"\x22" * 32, 1, sender=poor)
    fund(poor, registry, TOKEN)
    with ape.reverts(registry.StakeClientRemoved, client=poor.address):
        registry.deposit(TOKEN, sender=poor)


def test_open_round__too_few_after_removals__still_opens(voting, registry, stake, clients, open_round):
    stake(clients[:1])
    stake(clients[1:3], TOKEN)  # both under-staked
    round_id, proposers, voters, tx = open_round()
    assert len(tx.decode_logs(voting.ParticipantRemoved)) == 2
    assert registry.activeCount() == 1
    assert len(proposers) + len(voters) == 1


def test_open_round__draw__same_as_reference_fisher_yates(voting, registry, stake, clients, open_round):
    stake(clients[:12])
    stake(clients[12:15], 5 * TOKEN)  # can vote, cannot propose
    stake(clients[15:], 3 * TOKEN)  # can do neither
    active = registry.activeClients()
    free = {a: registry.freeStakeOf(a) for a in active}

    round_id, proposers, voters, tx = open_round()

    expected = apply_draw(voting.getRound(round_id).seed, active, free)
    removed = [(e.client, e.role, e.freeStake, e.requiredStake) for e in tx.decode_logs(voting.ParticipantRemoved)]
    assert ([p.address for p in proposers], [v.address for v in voters], removed, registry.activeClients()) == expected


# ---------------------------------------------------------------- the seed
def play_quiet_round(voting, open_round, advance_to, commit, salts):
    """Open a round, let every voter commit an empty ballot with `salts[i]` (None: stays silent) and
    reveal it, and settle. Returns the round id."""
    round_id, _, voters, _ = open_round()
    advance_to(round_id, RoundState.COMMITTING)
    plan = [(v, commit(round_id, v, 0, salt=s)) for v, s in zip(voters, salts) if s is not None]
    advance_to(round_id, RoundState.REVEALING)
    for v, salt in plan:
        voting.revealVote(round_id, 0, INITIAL_MODEL, salt, sender=v)
    advance_to(round_id, RoundState.SETTLEABLE)
    voting.settle(round_id, sender=voters[0])
    return round_id


def test_open_round__seed__follows_spec(voting, stake, clients, open_round, advance_to, commit):
    stake(clients[:5])
    seed0 = initial_seed(voting.address, INITIAL_MODEL)
    assert voting.initialSeed() == seed0
    assert voting.nextSeed() == round_seed(seed0, ZERO32, 1, voting.address)
    salts = [bytes([i + 1]) * 32 for i in range(3)] + [None]  # the fourth voter stays silent

    round_id = play_quiet_round(voting, open_round, advance_to, commit, salts)

    info = voting.getRound(round_id)
    assert info.seed == round_seed(seed0, ZERO32, 1, voting.address)
    voters = voting.votersOf(round_id)
    mix = ZERO32
    for v, salt in zip(voters, salts[:3]):
        mix = xor32(mix, salt_share(v, salt))
    assert info.saltMix == mix
    expected = round_seed(info.seed, mix, 2, voting.address)
    assert voting.nextSeed() == expected
    _, _, _, tx = open_round()
    [opened] = tx.decode_logs(voting.RoundOpened)
    assert opened.seed == voting.getRound(2).seed == expected


def test_open_round__opener_timing__does_not_change_seed_or_draw(voting, stake, clients, chain, open_round,
                                                                  advance_to, commit):
    stake(clients)
    play_quiet_round(voting, open_round, advance_to, commit, [b"\x07" * 32] * 14)
    snapshot = chain.snapshot()
    _, proposers, voters, tx = open_round(sender=clients[0])
    now = (voting.getRound(2).seed, proposers, voters, chain.blocks[tx.block_number].timestamp)
    chain.restore(snapshot)

    chain.mine(7, timestamp=chain.pending_timestamp + 3_600)  # 7 blocks and an hour later, another opener
    _, proposers, voters, tx = open_round(sender=clients[5])
    later = (voting.getRound(2).seed, proposers, voters, chain.blocks[tx.block_number].timestamp)

    assert later[:3] == now[:3]
    assert later[3] > now[3] + 3_000  # an hour later (the node may round the mined blocks' times)


@pytest.mark.parametrize("change", ["salt", "withheld-reveal", "initial-model", "contract"])
def test_next_seed__each_input__changes_it(deploy_protocol, fund, clients, chain, change):
    """seed_2 depends on each revealed salt, on whether a committed voter revealed, and on seed_1
    (through the initial model hash and the contract's address)."""
    members, salts = clients[:5], [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32]

    def seed_2(salts, withheld=(), initial_model=INITIAL_MODEL):
        registry, _, voting = deploy_protocol(initial_model=initial_model)
        for c in members:
            fund(c, registry)
            registry.deposit(64 * TOKEN, sender=c)
        voting.openRound(sender=members[0])
        info, by_address = voting.getRound(1), {c.address: c for c in members}
        voters = [by_address[v] for v in voting.votersOf(1)]
        chain.pending_timestamp = max(chain.pending_timestamp, info.proposalDeadline)
        for v, salt in zip(voters, salts):
            voting.commitVote(1, voting.commitmentFor(1, v, 0, INITIAL_MODEL, salt), sender=v)
        chain.pending_timestamp = max(chain.pending_timestamp, info.commitDeadline)
        for i, (v, salt) in enumerate(zip(voters, salts)):
            if i not in withheld:
                voting.revealVote(1, 0, INITIAL_MODEL, salt, sender=v)
        chain.pending_timestamp = max(chain.pending_timestamp, info.revealDeadline)
        voting.settle(1, sender=members[0])
        return voting.nextSeed(), voting.address

    snapshot = chain.snapshot()
    base, base_address = seed_2(salts)
    chain.restore(snapshot)  # the next deployment lands at the same address
    if change == "salt":
        other, other_address = seed_2(salts[:3] + [b"\x05" * 32])
    elif change == "withheld-reveal":
        other, other_address = seed_2(salts, withheld=(3,))
    elif change == "initial-model":
        other, other_address = seed_2(salts, initial_model=b"\x02" * 32)
    else:
        deploy_protocol()  # move the deployer's nonce: the same steps at another address
        other, other_address = seed_2(salts)
    assert (other_address == base_address) == (change != "contract")
    assert other != base


def test_next_seed__same_inputs__same_seed(deploy_protocol, chain, clients, fund):
    """The control for the test above: nothing else (block, time, sender) enters the seed."""
    registry, _, voting = deploy_protocol()
    expected = voting.nextSeed()
    chain.mine(3, timestamp=chain.pending_timestamp + 1_000)
    assert voting.nextSeed() == expected == round_seed(initial_seed(voting.address), ZERO32, 1, voting.address)


# ---------------------------------------------------------------- the sparse draw (hypothesis)
def fake_clients(n, tag):
    return [to_checksum_address(keccak(b"client" + tag + i.to_bytes(4, "big"))[-20:]) for i in range(n)]


FREE = st.sampled_from([64 * TOKEN, 64 * TOKEN, 8 * TOKEN, 5 * TOKEN, 4 * TOKEN, 3 * TOKEN, 0])


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), n=st.integers(2, 120), max_proposers=st.integers(1, 50), max_voters=st.integers(1, 150),
       initial_model=st.binary(min_size=32, max_size=32))
def test_open_round__sparse_draw__matches_reference_fisher_yates(project, owner, chain, data, n, max_proposers,
                                                                  max_voters, initial_model):
    """Any active set (clients that cannot cover a stake included), any caps, any seed: openRound picks,
    locks and removes exactly what a Fisher-Yates shuffle of a full copy of the active list gives."""
    free = data.draw(st.lists(FREE, min_size=n, max_size=n))
    params = {**DEFAULT_PARAMS, "maxProposers": max_proposers, "maxVoters": max_voters}
    snapshot = chain.snapshot()
    try:
        registry = project.DrawRegistry.deploy(sender=owner)
        active = fake_clients(n, initial_model[:4])
        registry.addActive(active, free, sender=owner)
        voting = project.VotingRound.deploy(registry, owner, params, initial_model, sender=owner)
        tx = voting.openRound(sender=owner)
        seed = voting.getRound(1).seed
        actual = (voting.proposersOf(1), voting.votersOf(1),
                  [(e.client, e.role, e.freeStake, e.requiredStake) for e in tx.decode_logs(voting.ParticipantRemoved)],
                  registry.activeClients())
    finally:
        chain.restore(snapshot)
    assert seed == round_seed(initial_seed(voting.address, initial_model), ZERO32, 1, voting.address)
    assert actual == apply_draw(seed, active, dict(zip(active, free)), params)


# ---------------------------------------------------------------- pinned values (flag off)
PINNER_KEY = "0x" + keccak(b"stakefl.tests.pinned-seed").hex()


def test_seed_and_draw__flag_off__pinned_values(project, accounts, owner, clients):
    """Rounds 1 and 2 of a deployment at a fixed address (a fresh key deploys it, nonces 0-3) draw
    with the seeds and pick the clients recorded before `seedBlockDelay` and the draw snapshot
    existed: with the flag off nothing a simulation sees may change."""
    from eth_account import Account

    from ape_test.accounts import TestAccountContainer

    pinner = TestAccountContainer.init_test_account(99, Account.from_key(PINNER_KEY).address, PINNER_KEY)
    owner.transfer(pinner, 10**18)
    token = project.TestToken.deploy(sender=pinner)
    registry = project.StakeRegistry.deploy(token, sender=pinner)
    pool = project.ProposalPool.deploy(token, registry, sender=pinner)
    params = {**DEFAULT_PARAMS, "maxProposers": 2, "maxVoters": 4}  # 6 of 12 drawn: the draw is a choice
    voting = project.VotingRound.deploy(registry, pool, params, INITIAL_MODEL, sender=pinner)
    registry.bind(voting, pool, sender=pinner)
    pool.bind(voting, sender=pinner)
    members = clients[:12]
    for c in members:
        token.mint(c, 64 * TOKEN, sender=c)
        token.approve(registry, 64 * TOKEN, sender=c)
        registry.deposit(64 * TOKEN, sender=c)
    by_address = {c.address: c for c in members}

    voting.openRound(sender=members[0])
    first = (voting.getRound(1).seed.hex(), voting.proposersOf(1), voting.votersOf(1))
    info = voting.getRound(1)
    ape.chain.pending_timestamp = max(ape.chain.pending_timestamp, info.proposalDeadline)
    voters = [by_address[v] for v in voting.votersOf(1)]
    salts = [bytes([0x40 + i]) * 32 for i in range(len(voters))]
    for v, salt in zip(voters, salts):
        voting.commitVote(1, voting.commitmentFor(1, v, 0, INITIAL_MODEL, salt), sender=v)
    ape.chain.pending_timestamp = max(ape.chain.pending_timestamp, info.commitDeadline)
    for v, salt in zip(voters, salts):
        voting.revealVote(1, 0, INITIAL_MODEL, salt, sender=v)
    ape.chain.pending_timestamp = max(ape.chain.pending_timestamp, info.revealDeadline)
    voting.settle(1, sender=members[0])
    voting.openRound(sender=members[1])
    second = (voting.getRound(2).seed.hex(), voting.proposersOf(2), voting.votersOf(2))

    def drawn(proposers, voters):
        return [clients[i].address for i in proposers], [clients[i].address for i in voters]

    assert voting.address == "0x32131EEdCA99d06a867edF1578Dbc560e2b18f10"
    assert first == ("cc80183098106acf4d56cbed5aaf2cf7d04d173290c65a5e70285bec28d6e262",
                     *drawn([2, 8], [4, 10, 11, 5]))
    assert second == ("3728320a8ca60b929866403ed3415eca774e89690fa54b3069ec6a330c9a51d0",
                      *drawn([2, 6], [5, 11, 8, 10]))
