"""VotingRound.propose / commitVote / revealVote: state guard, role checks, once-only, events."""
import ape
import pytest

from protocol_model import Role, RoundState, Vote, commitment_of

UPDATE = b"\x11" * 32
OTHER = b"\x22" * 32
SALT = b"\x5a" * 32
ZERO32 = b"\x00" * 32


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
    """Voters 0 and 1 committed Accept UPDATE; voters 2 and 3 did not commit."""
    round_id, proposers, voters = committing
    for v in voters[:2]:
        voting.commitVote(round_id, commitment_of(round_id, v.address, Vote.ACCEPT, UPDATE, SALT), sender=v)
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
    c = commitment_of(round_id, voters[0].address, Vote.ACCEPT, UPDATE, SALT)
    assert voting.commitmentFor(round_id, voters[0], Vote.ACCEPT, UPDATE, SALT) == c

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
def test_reveal_vote__matching__tallies_and_emits(voting, revealing):
    round_id, _, voters = revealing

    tx = voting.revealVote(round_id, Vote.ACCEPT, UPDATE, SALT, sender=voters[0])

    [event] = tx.decode_logs(voting.VoteRevealed)
    assert (event.roundId, event.voter, event.vote, event.aggregateHash) == (
        round_id, voters[0].address, Vote.ACCEPT, UPDATE)
    p = voting.getParticipant(round_id, voters[0])
    assert (p.revealed, p.vote, p.modelHash) == (True, Vote.ACCEPT, UPDATE)
    info = voting.getRound(round_id)
    assert (info.revealCount, info.leadingAccepts, info.leadingHash, info.rejectCount) == (1, 1, UPDATE, 0)


def test_reveal_vote__reject__counts_reject(voting, committing, commit, advance_to):
    round_id, _, voters = committing
    salt = commit(round_id, voters[0], Vote.REJECT, UPDATE)
    advance_to(round_id, RoundState.REVEALING)
    voting.revealVote(round_id, Vote.REJECT, UPDATE, salt, sender=voters[0])
    info = voting.getRound(round_id)
    assert (info.revealCount, info.rejectCount, info.leadingAccepts) == (1, 1, 0)


def test_reveal_vote__lead_tie__first_hash_keeps_lead(voting, committing, commit, advance_to):
    round_id, _, voters = committing
    salts = [commit(round_id, voters[0], Vote.ACCEPT, UPDATE), commit(round_id, voters[1], Vote.ACCEPT, OTHER)]
    advance_to(round_id, RoundState.REVEALING)
    voting.revealVote(round_id, Vote.ACCEPT, UPDATE, salts[0], sender=voters[0])
    voting.revealVote(round_id, Vote.ACCEPT, OTHER, salts[1], sender=voters[1])
    info = voting.getRound(round_id)
    assert (info.leadingHash, info.leadingAccepts) == (UPDATE, 1)


@pytest.mark.parametrize(
    "vote, agg, salt",
    [(Vote.REJECT, UPDATE, SALT), (Vote.ACCEPT, OTHER, SALT), (Vote.ACCEPT, UPDATE, b"\x01" * 32)],
    ids=["other-vote", "other-hash", "other-salt"],
)
def test_reveal_vote__mismatch__reverts(voting, revealing, vote, agg, salt):
    round_id, _, voters = revealing
    with ape.reverts(voting.RoundCommitmentMismatch, roundId=round_id, voter=voters[0].address):
        voting.revealVote(round_id, vote, agg, salt, sender=voters[0])


def test_commitment__binds_voter_address(voting, revealing):
    round_id, _, voters = revealing
    # voters[1] committed the same (vote, hash, salt), but the commitment binds the voter's address
    c = commitment_of(round_id, voters[0].address, Vote.ACCEPT, UPDATE, SALT)
    assert voting.getParticipant(round_id, voters[1]).commitment != c


def test_reveal_vote__not_committed__reverts(voting, revealing):
    round_id, _, voters = revealing
    with ape.reverts(voting.RoundNotCommitted, roundId=round_id, voter=voters[2].address):
        voting.revealVote(round_id, Vote.ACCEPT, UPDATE, SALT, sender=voters[2])


def test_reveal_vote__twice__reverts(voting, revealing):
    round_id, _, voters = revealing
    voting.revealVote(round_id, Vote.ACCEPT, UPDATE, SALT, sender=voters[0])
    with ape.reverts(voting.RoundAlreadyRevealed, roundId=round_id, voter=voters[0].address):
        voting.revealVote(round_id, Vote.ACCEPT, UPDATE, SALT, sender=voters[0])


def test_reveal_vote__vote_none__reverts(voting, revealing):
    round_id, _, voters = revealing
    with ape.reverts(voting.RoundInvalidVote, vote=Vote.NONE):
        voting.revealVote(round_id, Vote.NONE, UPDATE, SALT, sender=voters[0])


def test_reveal_vote__proposer__reverts(voting, revealing):
    round_id, proposers, _ = revealing
    with ape.reverts(voting.RoundNotSelected, roundId=round_id, client=proposers[0].address, role=Role.VOTER):
        voting.revealVote(round_id, Vote.ACCEPT, UPDATE, SALT, sender=proposers[0])


def test_reveal_vote__during_commit__reverts(voting, committing):
    round_id, _, voters = committing
    voting.commitVote(round_id, commitment_of(round_id, voters[0].address, Vote.ACCEPT, UPDATE, SALT),
                      sender=voters[0])
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.COMMITTING,
                     required=RoundState.REVEALING):
        voting.revealVote(round_id, Vote.ACCEPT, UPDATE, SALT, sender=voters[0])


def test_reveal_vote__after_deadline__reverts(voting, revealing, advance_to):
    round_id, _, voters = revealing
    advance_to(round_id, RoundState.SETTLEABLE)
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.SETTLEABLE,
                     required=RoundState.REVEALING):
        voting.revealVote(round_id, Vote.ACCEPT, UPDATE, SALT, sender=voters[0])


def test_commitment_for__matches_python(voting, alice):
    expected = commitment_of(7, alice.address, Vote.REJECT, OTHER, SALT)
    assert voting.commitmentFor(7, alice, Vote.REJECT, OTHER, SALT) == expected
