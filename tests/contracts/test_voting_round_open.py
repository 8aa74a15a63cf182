"""VotingRound.openRound: preconditions, the random draw, stake locks, removal at open."""
import ape
from eth_abi import encode
from eth_utils import keccak

from protocol_model import TOKEN, Role, RoundState, selection_sizes


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


def test_open_round__seed__follows_spec(voting, stake, clients, chain):
    stake(clients[:2])
    tx = voting.openRound(sender=clients[0])
    parent = chain.blocks[tx.block_number - 1]
    # block.prevrandao: always 0 on the embedded chain (whatever mixHash its headers show); on
    # anvil the header's mixHash, which Ape's block model does not carry: read the raw header
    prevrandao = 0
    if chain.provider.name != "test":
        prevrandao = int.from_bytes(bytes(chain.provider.web3.eth.get_block(tx.block_number)["mixHash"]), "big")
    expected = keccak(encode(["bytes32", "uint256", "uint256", "address"],
                             [bytes(parent.hash), prevrandao, 1, voting.address]))
    assert voting.getRound(1).seed == expected


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
