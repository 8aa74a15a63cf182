"""VotingRound.propose / commitVote / revealVote: state guard, role checks, once-only, events."""
import ape
import pytest

from protocol_model import INITIAL_MODEL, ZERO32, Role, RoundState, commitment_of, salt_share, xor32

UPDATE = b"\x11" * 32
OTHER = b"\x22" * 32
SALT = b"\x5a" * 32
PARENT = INITIAL_MODEL


@pytest.fixture
def opened(stake, clients, open_round):
    """Round 1 open with 5 clients: 1 proposer, 4 voters."""
    stake(clients[:5])
    round_id, proposers, voters, _ = open_round()
    return round_id, proposers, voters


@pytest.fixture
def committing(opened, voting, advance_to):
    round_id, proposers, voters = opened
    voting.propose(round_id, UPDATE, 100, sender=proposers[0])
    advance_to(round_id, RoundState.COMMITTING)
    return opened


@pytest.fixture
def revealing(committing, voting, advance_to):
    """Voters 0 and 1 committed to accept the one proposal (mask 1) with PARENT; voters 2 and 3 did not commit."""
    round_id, proposers, voters = committing
    for v in voters[:2]:
        voting.commitVote(round_id, commitment_of(round_id, v.address, 1, PARENT, SALT), sender=v)
    advance_to(round_id, RoundState.REVEALING)
    return committing


# ---------------------------------------------------------------- state
def test_state__moves_forward_with_the_clock(voting, opened, advance_to):
    round_id = opened[0]
    assert voting.state(round_id) == RoundState.PROPOSING
    for target in (RoundState.COMMITTING, RoundState.REVEALING, RoundState.SETTLEABLE):
        advance_to(round_id, target)
        opened[1][0].transfer(opened[1][0], 0)  # views read the head block: mine one at the new time
        assert voting.state(round_id) == target
    voting.settle(round_id, sender=opened[1][0])
    assert voting.state(round_id) == RoundState.SETTLED
    assert voting.state(round_id + 1) == RoundState.NONE


# ---------------------------------------------------------------- propose
def test_propose__proposer__records_and_emits(voting, opened):
    round_id, proposers, _ = opened

    tx = voting.propose(round_id, UPDATE, 123, sender=proposers[0])

    [event] = tx.decode_logs(voting.ProposalSubmitted)
    assert (event.roundId, event.proposer, event.updateHash, event.sampleCount) == (
        round_id, proposers[0].address, UPDATE, 123)
    p = voting.getParticipant(round_id, proposers[0])
    assert (p.role, p.acted, p.modelHash, p.sampleCount) == (Role.PROPOSER, True, UPDATE, 123)
    assert voting.getRound(round_id).proposalCount == 1
    who, hashes, counts = voting.proposalsOf(round_id)
    assert (who, hashes, counts) == ([proposers[0].address], [UPDATE], [123])


def test_propose__twice__reverts(voting, opened):
    round_id, proposers, _ = opened
    voting.propose(round_id, UPDATE, 1, sender=proposers[0])
    with ape.reverts(voting.RoundAlreadyActed, roundId=round_id, client=proposers[0].address):
        voting.propose(round_id, OTHER, 1, sender=proposers[0])


def test_propose__voter__reverts(voting, opened):
    round_id, _, voters = opened
    with ape.reverts(voting.RoundNotSelected, roundId=round_id, client=voters[0].address, role=Role.PROPOSER):
        voting.propose(round_id, UPDATE, 1, sender=voters[0])


def test_propose__outsider__reverts(voting, opened, outsider):
    round_id = opened[0]
    with ape.reverts(voting.RoundNotSelected, roundId=round_id, client=outsider.address, role=Role.PROPOSER):
        voting.propose(round_id, UPDATE, 1, sender=outsider)


@pytest.mark.parametrize("update, samples", [(ZERO32, 1), (UPDATE, 0)], ids=["zero-hash", "zero-samples"])
def test_propose__invalid__reverts(voting, opened, update, samples):
    round_id, proposers, _ = opened
    with ape.reverts(voting.RoundInvalidProposal, updateHash=update, sampleCount=samples):
        voting.propose(round_id, update, samples, sender=proposers[0])


def test_propose__after_deadline__reverts(voting, opened, advance_to):
    round_id, proposers, _ = opened
    advance_to(round_id, RoundState.COMMITTING)
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.COMMITTING,
                     required=RoundState.PROPOSING):
        voting.propose(round_id, UPDATE, 1, sender=proposers[0])


def test_propose__unknown_round__reverts(voting, opened):
    _, proposers, _ = opened
    with ape.reverts(voting.RoundNotInState, roundId=2, current=RoundState.NONE, required=RoundState.PROPOSING):
        voting.propose(2, UPDATE, 1, sender=proposers[0])


# ---------------------------------------------------------------- commit
def test_commit_vote__voter__records_and_emits(voting, committing):
    round_id, _, voters = committing
    c = commitment_of(round_id, voters[0].address, 1, PARENT, SALT)
    assert voting.commitmentFor(round_id, voters[0], 1, PARENT, SALT) == c

    tx = voting.commitVote(round_id, c, sender=voters[0])

    [event] = tx.decode_logs(voting.VoteCommitted)
    assert (event.roundId, event.voter, event.commitment) == (round_id, voters[0].address, c)
    p = voting.getParticipant(round_id, voters[0])
    assert (p.acted, p.commitment, p.revealed) == (True, c, False)
    assert voting.getRound(round_id).commitCount == 1


def test_commit_vote__during_proposing__reverts(voting, opened):
    round_id, _, voters = opened
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.PROPOSING,
                     required=RoundState.COMMITTING):
        voting.commitVote(round_id, SALT, sender=voters[0])


def test_commit_vote__after_deadline__reverts(voting, committing, advance_to):
    round_id, _, voters = committing
    advance_to(round_id, RoundState.REVEALING)
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.REVEALING,
                     required=RoundState.COMMITTING):
        voting.commitVote(round_id, SALT, sender=voters[0])


def test_commit_vote__proposer__reverts(voting, committing):
    round_id, proposers, _ = committing
    with ape.reverts(voting.RoundNotSelected, roundId=round_id, client=proposers[0].address, role=Role.VOTER):
        voting.commitVote(round_id, SALT, sender=proposers[0])


def test_commit_vote__twice__reverts(voting, committing):
    round_id, _, voters = committing
    voting.commitVote(round_id, SALT, sender=voters[0])
    with ape.reverts(voting.RoundAlreadyActed, roundId=round_id, client=voters[0].address):
        voting.commitVote(round_id, OTHER, sender=voters[0])


def test_commit_vote__zero__reverts(voting, committing):
    round_id, _, voters = committing
    with ape.reverts(voting.RoundZeroCommitment):
        voting.commitVote(round_id, ZERO32, sender=voters[0])


# ---------------------------------------------------------------- reveal
@pytest.fixture
def ballots(stake, clients, voting, open_round, advance_to):
    """Round 1 with 10 clients (2 proposers, both proposed, 8 voters) in its commit phase."""
    stake(clients[:10])
    round_id, proposers, voters, _ = open_round()
    for p in proposers:
        voting.propose(round_id, UPDATE, 100, sender=p)
    advance_to(round_id, RoundState.COMMITTING)
    return round_id, proposers, voters


def test_reveal_vote__matching__records_tallies_and_emits(voting, revealing):
    round_id, _, voters = revealing

    tx = voting.revealVote(round_id, 1, PARENT, SALT, sender=voters[0])

    [event] = tx.decode_logs(voting.VoteRevealed)
    assert (event.roundId, event.voter, event.acceptMask, event.parentHash) == (round_id, voters[0].address, 1, PARENT)
    p = voting.getParticipant(round_id, voters[0])
    assert (p.revealed, p.acceptMask, p.modelHash) == (True, 1, PARENT)
    info = voting.getRound(round_id)
    assert (info.revealCount, info.leadingParentVotes, info.leadingParentHash) == (1, 1, PARENT)
    assert info.saltMix == salt_share(voters[0].address, SALT)
    assert voting.proposalAccepts(round_id) == [1]
    assert voting.parentHashVotes(round_id, PARENT) == 1


def test_reveal_vote__mixed_ballots__counts_each_proposal(voting, ballots, commit, advance_to):
    round_id, _, voters = ballots
    masks = [0b01, 0b11, 0b10, 0b00, 0b11]
    salts = [commit(round_id, v, m) for v, m in zip(voters, masks)]
    advance_to(round_id, RoundState.REVEALING)

    for v, m, salt in zip(voters, masks, salts):
        voting.revealVote(round_id, m, PARENT, salt, sender=v)

    expected = [sum(m >> i & 1 for m in masks) for i in range(2)]
    assert voting.proposalAccepts(round_id) == expected == [3, 3]
    assert voting.getRound(round_id).revealCount == len(masks)


def test_reveal_vote__salt_mix__xor_of_revealed_shares(voting, ballots, commit, advance_to):
    round_id, _, voters = ballots
    salts = [commit(round_id, v, 0, salt=bytes([i + 1]) * 32) for i, v in enumerate(voters[:3])]
    advance_to(round_id, RoundState.REVEALING)
    expected = ZERO32
    for v, salt in zip(voters[:3], salts):
        voting.revealVote(round_id, 0, PARENT, salt, sender=v)
        expected = xor32(expected, salt_share(v.address, salt))
        assert voting.getRound(round_id).saltMix == expected


@pytest.mark.parametrize("mask", [1 << 2, 0b111, 1 << 255], ids=["bit-P", "all-plus-P", "bit-255"])
def test_reveal_vote__bit_beyond_proposals__reverts(voting, ballots, commit, advance_to, mask):
    round_id, _, voters = ballots
    salt = commit(round_id, voters[0], mask)
    advance_to(round_id, RoundState.REVEALING)
    with ape.reverts(voting.RoundInvalidBallot, acceptMask=mask, proposalCount=2):
        voting.revealVote(round_id, mask, PARENT, salt, sender=voters[0])


def test_reveal_vote__no_proposals__only_empty_ballot(voting, opened, commit, advance_to):
    round_id, _, voters = opened  # the proposer stays silent: P == 0
    advance_to(round_id, RoundState.COMMITTING)
    salts = [commit(round_id, voters[0], 1), commit(round_id, voters[1], 0)]
    advance_to(round_id, RoundState.REVEALING)
    with ape.reverts(voting.RoundInvalidBallot, acceptMask=1, proposalCount=0):
        voting.revealVote(round_id, 1, PARENT, salts[0], sender=voters[0])
    voting.revealVote(round_id, 0, PARENT, salts[1], sender=voters[1])
    assert voting.proposalAccepts(round_id) == []


def test_reveal_vote__parent_lead_tie__first_hash_keeps_lead(voting, committing, commit, advance_to):
    round_id, _, voters = committing
    salts = [commit(round_id, voters[0], 1, PARENT), commit(round_id, voters[1], 1, OTHER)]
    advance_to(round_id, RoundState.REVEALING)
    voting.revealVote(round_id, 1, PARENT, salts[0], sender=voters[0])
    voting.revealVote(round_id, 1, OTHER, salts[1], sender=voters[1])
    info = voting.getRound(round_id)
    assert (info.leadingParentHash, info.leadingParentVotes) == (PARENT, 1)
    assert voting.parentHashVotes(round_id, OTHER) == 1


@pytest.mark.parametrize(
    "mask, parent, salt",
    [(0, PARENT, SALT), (1, OTHER, SALT), (1, PARENT, b"\x01" * 32)],
    ids=["other-ballot", "other-parent", "other-salt"],
)
def test_reveal_vote__mismatch__reverts(voting, revealing, mask, parent, salt):
    round_id, _, voters = revealing
    with ape.reverts(voting.RoundCommitmentMismatch, roundId=round_id, voter=voters[0].address):
        voting.revealVote(round_id, mask, parent, salt, sender=voters[0])


def test_commitment__binds_voter_address(voting, revealing):
    round_id, _, voters = revealing
    # voters[1] committed the same (ballot, parent, salt), but the commitment binds the voter's address
    c = commitment_of(round_id, voters[0].address, 1, PARENT, SALT)
    assert voting.getParticipant(round_id, voters[1]).commitment != c


def test_reveal_vote__not_committed__reverts(voting, revealing):
    round_id, _, voters = revealing
    with ape.reverts(voting.RoundNotCommitted, roundId=round_id, voter=voters[2].address):
        voting.revealVote(round_id, 1, PARENT, SALT, sender=voters[2])


def test_reveal_vote__twice__reverts(voting, revealing):
    round_id, _, voters = revealing
    voting.revealVote(round_id, 1, PARENT, SALT, sender=voters[0])
    with ape.reverts(voting.RoundAlreadyRevealed, roundId=round_id, voter=voters[0].address):
        voting.revealVote(round_id, 1, PARENT, SALT, sender=voters[0])


def test_reveal_vote__proposer__reverts(voting, revealing):
    round_id, proposers, _ = revealing
    with ape.reverts(voting.RoundNotSelected, roundId=round_id, client=proposers[0].address, role=Role.VOTER):
        voting.revealVote(round_id, 1, PARENT, SALT, sender=proposers[0])


def test_reveal_vote__during_commit__reverts(voting, committing):
    round_id, _, voters = committing
    voting.commitVote(round_id, commitment_of(round_id, voters[0].address, 1, PARENT, SALT), sender=voters[0])
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.COMMITTING,
                     required=RoundState.REVEALING):
        voting.revealVote(round_id, 1, PARENT, SALT, sender=voters[0])


def test_reveal_vote__after_deadline__reverts(voting, revealing, advance_to):
    round_id, _, voters = revealing
    advance_to(round_id, RoundState.SETTLEABLE)
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.SETTLEABLE,
                     required=RoundState.REVEALING):
        voting.revealVote(round_id, 1, PARENT, SALT, sender=voters[0])


def test_commitment_for__matches_python(voting, alice):
    mask = (1 << 200) | 0b1011
    expected = commitment_of(7, alice.address, mask, OTHER, SALT)
    assert voting.commitmentFor(7, alice, mask, OTHER, SALT) == expected
