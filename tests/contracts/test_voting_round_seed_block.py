"""VotingRound with `seedBlockDelay > 0`: each round's seed also mixes in the hash of a block mined
after the previous settlement (SPEC.md, "Randomness"); and the draw snapshot (flag on and off): a
round draws over the clients active right after the previous opening."""
import ape
import pytest

from protocol_model import (
    BLOCKHASH_WINDOW,
    DEFAULT_PARAMS,
    INITIAL_MODEL,
    TOKEN,
    ZERO32,
    anchored_seed,
    apply_draw,
    initial_seed,
    round_seed,
)

DELAY = 3
GAS = {"gas": 3_000_000}  # explicit gas: the call is mined, so a revert reports the block it ran in


@pytest.fixture
def seeded(deploy_protocol, fund, clients):
    """Factory: a deployment with `seedBlockDelay` and `count` clients staked with 64 tokens."""

    def make(delay=DELAY, count=8):
        registry, pool, voting = deploy_protocol(seedBlockDelay=delay)
        join(registry, fund, clients[:count])
        return registry, pool, voting

    return make


def join(registry, fund, members, amount=64 * TOKEN):
    for c in members:
        fund(c, registry, amount)
        registry.deposit(amount, sender=c)


def next_block(chain):
    """The number of the block the next transaction is mined in (automine)."""
    return chain.blocks.height + 1


def mine_until(chain, block_number):
    """Mine empty blocks until the next transaction runs in `block_number` (or later)."""
    if next_block(chain) < block_number:
        chain.mine(block_number - next_block(chain))


def mine_past(chain, seed_block):
    """Mine until the seed block's hash is readable both by the next transaction and by a view call
    (a node may run `eth_call` in the latest block's context, where block.number is one lower)."""
    mine_until(chain, seed_block + 2)


def draw_of(voting, round_id):
    return voting.getRound(round_id).seed, voting.proposersOf(round_id), voting.votersOf(round_id)


def play_to_settlement(chain, voting, members, salts=None, settle=True):
    """Open the next round (the seed block must be readable), let every voter commit and reveal an
    empty ballot with its salt (salts[i], or one derived from the voter), and settle. Returns the round id."""
    voting.openRound(sender=members[0])
    round_id = voting.currentRoundId()
    info, by_address = voting.getRound(round_id), {c.address: c for c in members}
    voters = [by_address[v] for v in voting.votersOf(round_id)]
    salts = salts or [bytes.fromhex(v.address[2:].rjust(64, "0")) for v in voters]
    chain.pending_timestamp = max(chain.pending_timestamp, info.proposalDeadline)
    for v, salt in zip(voters, salts):
        voting.commitVote(round_id, voting.commitmentFor(round_id, v, 0, INITIAL_MODEL, salt), sender=v)
    chain.pending_timestamp = max(chain.pending_timestamp, info.commitDeadline)
    for v, salt in zip(voters, salts):
        voting.revealVote(round_id, 0, INITIAL_MODEL, salt, sender=v)
    chain.pending_timestamp = max(chain.pending_timestamp, info.revealDeadline)
    if settle:
        voting.settle(round_id, sender=members[0])
    return round_id


# ---------------------------------------------------------------- deployment
def test_deploy__flag_on__anchors_round_1(project, chain, owner, registry, pool):
    voting = project.VotingRound.deploy(registry, pool, {**DEFAULT_PARAMS, "seedBlockDelay": DELAY}, INITIAL_MODEL,
                                        sender=owner)
    receipt = chain.get_receipt(voting.txn_hash)
    [anchored] = receipt.decode_logs(voting.SeedBlockAnchored)
    assert (anchored.roundId, anchored.seedBlock) == (1, receipt.block_number + DELAY)
    assert voting.nextSeedBlock() == receipt.block_number + DELAY
    assert voting.params().seedBlockDelay == DELAY


def test_deploy__flag_off__no_seed_block(registry, pool, project, chain, owner):
    voting = project.VotingRound.deploy(registry, pool, DEFAULT_PARAMS, INITIAL_MODEL, sender=owner)
    assert chain.get_receipt(voting.txn_hash).decode_logs(voting.SeedBlockAnchored) == []
    assert voting.nextSeedBlock() == 0
    assert voting.nextSeed() == round_seed(initial_seed(voting.address), ZERO32, 1, voting.address)


# ---------------------------------------------------------------- opening with a seed block
def test_open_round__seed__mixes_the_seed_block_hash(seeded, chain, clients):
    """Round 1 and round 2: the seed is anchored_seed(roundSeed(...), blockhash(seedBlock)), where the
    seed block is fixed at deployment (round 1) and at settlement (round 2), and nextSeed() shows it
    only once that block is mined."""
    members = clients[:8]
    _, _, voting = seeded()
    seed_block = voting.nextSeedBlock()
    mine_past(chain, seed_block)
    expected = anchored_seed(round_seed(initial_seed(voting.address), ZERO32, 1, voting.address),
                             chain.blocks[seed_block].hash)
    assert voting.nextSeed() == expected
    round_id = play_to_settlement(chain, voting, members, settle=False)
    assert voting.getRound(round_id).seed == expected
    assert voting.nextSeed() == ZERO32 and voting.nextSeedBlock() == 0  # live round: not known yet

    tx = voting.settle(round_id, sender=members[0])
    [anchored] = tx.decode_logs(voting.SeedBlockAnchored)
    assert (anchored.roundId, anchored.seedBlock) == (2, tx.block_number + DELAY)
    assert voting.nextSeedBlock() == tx.block_number + DELAY
    assert voting.nextSeed() == ZERO32  # the seed block is not mined yet
    info = voting.getRound(round_id)
    mine_past(chain, anchored.seedBlock)
    expected = anchored_seed(round_seed(info.seed, info.saltMix, 2, voting.address),
                             chain.blocks[anchored.seedBlock].hash)
    assert voting.nextSeed() == expected
    voting.openRound(sender=members[1])
    assert voting.getRound(2).seed == expected


def test_open_round__until_seed_block_mined__reverts(seeded, chain, clients):
    members = clients[:8]
    _, _, voting = seeded()
    mine_until(chain, voting.nextSeedBlock() + 1)
    round_id = play_to_settlement(chain, voting, members)
    seed_block = voting.nextSeedBlock()
    while next_block(chain) <= seed_block:  # every block up to the seed block itself
        with ape.reverts(voting.RoundSeedBlockNotReached, seedBlock=seed_block, blockNumber=next_block(chain)):
            voting.openRound(sender=members[0], **GAS)
    voting.openRound(sender=members[0])
    assert voting.currentRoundId() == round_id + 1


@pytest.mark.parametrize("late", [50, BLOCKHASH_WINDOW])
def test_open_round__opener_timing__does_not_change_seed_or_draw(seeded, chain, clients, late):
    """Opening in the first block that can (seedBlock + 1) or `late` blocks after the seed block,
    by another opener and an hour later: the same seed, the same draw."""
    members = clients[:12]
    _, _, voting = seeded(count=12)
    mine_until(chain, voting.nextSeedBlock() + 1)
    play_to_settlement(chain, voting, members)
    seed_block = voting.nextSeedBlock()
    mine_until(chain, seed_block + 1)
    snapshot = chain.snapshot()
    voting.openRound(sender=members[0])
    first = draw_of(voting, 2)
    chain.restore(snapshot)

    chain.pending_timestamp += 3_600
    mine_until(chain, seed_block + late)
    tx = voting.openRound(sender=members[5])
    assert tx.block_number == seed_block + late
    assert draw_of(voting, 2) == first


def test_open_round__seed_block_expired__reverts_until_reanchored(seeded, chain, clients):
    members = clients[:8]
    _, _, voting = seeded()
    seed_block = voting.nextSeedBlock()
    mine_until(chain, seed_block + BLOCKHASH_WINDOW + 2)
    assert voting.nextSeed() == ZERO32  # the hash is gone
    with ape.reverts(voting.RoundSeedBlockExpired, seedBlock=seed_block, blockNumber=next_block(chain)):
        voting.openRound(sender=members[0], **GAS)

    tx = voting.reanchorSeedBlock(sender=clients[-1])  # anyone
    [anchored] = tx.decode_logs(voting.SeedBlockAnchored)
    assert (anchored.roundId, anchored.seedBlock) == (1, tx.block_number + DELAY)
    assert voting.nextSeedBlock() == anchored.seedBlock
    with ape.reverts(voting.RoundSeedBlockNotReached, seedBlock=anchored.seedBlock, blockNumber=next_block(chain)):
        voting.openRound(sender=members[0], **GAS)
    mine_until(chain, anchored.seedBlock + 1)
    voting.openRound(sender=members[0])
    assert voting.getRound(1).seed == anchored_seed(
        round_seed(initial_seed(voting.address), ZERO32, 1, voting.address), chain.blocks[anchored.seedBlock].hash)


def test_reanchor__before_expiry__reverts(seeded, chain, clients):
    """Not while the seed block is to come, nor while its hash is readable (up to seedBlock + 256)."""
    _, _, voting = seeded()
    seed_block = voting.nextSeedBlock()
    for target in (next_block(chain), seed_block + 1, seed_block + BLOCKHASH_WINDOW):
        mine_until(chain, target)
        with ape.reverts(voting.RoundSeedBlockNotExpired, seedBlock=seed_block, blockNumber=next_block(chain)):
            voting.reanchorSeedBlock(sender=clients[0], **GAS)
    assert voting.nextSeedBlock() == seed_block


def test_reanchor__live_round__reverts(seeded, chain, clients):
    members = clients[:8]
    _, _, voting = seeded()
    mine_until(chain, voting.nextSeedBlock() + 1)
    round_id = play_to_settlement(chain, voting, members, settle=False)
    chain.mine(BLOCKHASH_WINDOW + 1)
    with ape.reverts(voting.RoundPreviousNotSettled, roundId=round_id):
        voting.reanchorSeedBlock(sender=clients[0])


def test_reanchor__flag_off__reverts(voting, clients, chain):
    chain.mine(BLOCKHASH_WINDOW + 1)
    with ape.reverts(voting.RoundSeedBlockDisabled):
        voting.reanchorSeedBlock(sender=clients[0])


@pytest.mark.parametrize("change", ["salt", "seed-block"])
def test_next_seed__flag_on__salts_and_seed_block_change_it(seeded, chain, clients, change):
    """From the same state after round 1's reveals: another revealed salt, or the same salts with the
    settlement one block later (so another seed block), gives another seed for round 2."""
    members = clients[:8]  # 1 proposer, 7 voters
    _, _, voting = seeded()
    mine_until(chain, voting.nextSeedBlock() + 1)

    def seed_2(first_salt, settle_later):
        salts = [first_salt] + [bytes([i + 2]) * 32 for i in range(6)]
        round_id = play_to_settlement(chain, voting, members, salts=salts, settle=False)
        assert len(voting.votersOf(round_id)) == 7
        if settle_later:
            chain.mine(1)
        voting.settle(round_id, sender=members[0])
        seed_block = voting.nextSeedBlock()
        mine_past(chain, seed_block)
        info = voting.getRound(round_id)
        return voting.nextSeed(), info.saltMix, seed_block, round_seed(info.seed, info.saltMix, 2, voting.address)

    snapshot = chain.snapshot()
    base = seed_2(b"\x01" * 32, False)
    chain.restore(snapshot)
    other = seed_2(b"\x09" * 32, False) if change == "salt" else seed_2(b"\x01" * 32, True)
    assert other[0] != base[0]
    if change == "salt":
        assert other[1] != base[1]  # the mix differs
    else:
        assert other[1] == base[1] and other[3] == base[3]  # the same salts: only the seed block moved
        assert other[2] == base[2] + 1


# ---------------------------------------------------------------- the draw snapshot (flag on and off)
@pytest.mark.parametrize("delay", [0, DELAY])
def test_open_round__registrations_after_settlement__do_not_change_draw(seeded, chain, clients, fund, delay):
    """Clients that join between settlement and opening (or during the round before) are not drawn:
    the next round draws over the clients active right after the previous opening."""
    members, late = clients[:8], clients[8:14]
    registry, _, voting = seeded(delay=delay)
    mine_until(chain, voting.nextSeedBlock() + 1)
    round_id = play_to_settlement(chain, voting, members, settle=False)
    join(registry, fund, late[:2])  # during round 1
    voting.settle(round_id, sender=members[0])
    mine_until(chain, voting.nextSeedBlock() + 1)  # (flag on: the seed block is mined in both branches)
    assert voting.nextDrawSize() == 8
    snapshot = chain.snapshot()
    voting.openRound(sender=members[0])
    quiet = draw_of(voting, 2)
    chain.restore(snapshot)

    join(registry, fund, late[2:])  # between settlement and opening
    assert registry.activeCount() == 14 and voting.nextDrawSize() == 8
    voting.openRound(sender=members[0])

    assert draw_of(voting, 2) == quiet
    active = registry.activeClients()
    assert set(quiet[1] + quiet[2]) <= set(active[:8])
    assert voting.nextDrawSize() == 14  # drawable from round 3 on


def test_open_round__draw_size__snapshot_after_removals(deploy_protocol, fund, clients, chain, project):
    """The snapshot is the active count after the opening's removals; one below 2 (the protocol ran
    dry) falls back to the active count at the next opening, as in round 1."""
    registry, _, voting = deploy_protocol()
    join(registry, fund, clients[:1])
    join(registry, fund, clients[1:3], TOKEN)  # cannot cover a stake: removed when drawn
    assert voting.nextDrawSize() == 3
    tx = voting.openRound(sender=clients[0])
    assert len(tx.decode_logs(voting.ParticipantRemoved)) == 2
    assert voting.nextDrawSize() == 1 == registry.activeCount()
    join(registry, fund, clients[3:5])
    assert voting.nextDrawSize() == 3  # snapshot 1 < 2: the active count now
    round_id = voting.currentRoundId()
    info = voting.getRound(round_id)
    chain.pending_timestamp = max(chain.pending_timestamp, info.revealDeadline)
    voting.settle(round_id, sender=clients[0])
    voting.openRound(sender=clients[3])
    assert len(voting.proposersOf(2)) + len(voting.votersOf(2)) == 3


def test_open_round__draw__matches_model_over_snapshot(seeded, chain, clients, fund):
    """Round 2's draw (flag on) is the reference Fisher-Yates over the first nextDrawSize() positions."""
    members, late = clients[:10], clients[10:15]
    registry, _, voting = seeded(count=10)
    mine_until(chain, voting.nextSeedBlock() + 1)
    play_to_settlement(chain, voting, members)
    join(registry, fund, late)
    mine_until(chain, voting.nextSeedBlock() + 1)
    active = registry.activeClients()
    free = {a: registry.freeStakeOf(a) for a in active}
    n = voting.nextDrawSize()
    tx = voting.openRound(sender=members[0])
    seed = voting.getRound(2).seed
    removed = [(e.client, e.role, e.freeStake, e.requiredStake) for e in tx.decode_logs(voting.ParticipantRemoved)]
    assert n == 10
    assert (voting.proposersOf(2), voting.votersOf(2), removed, registry.activeClients()) == apply_draw(
        seed, active, free, n=n)
