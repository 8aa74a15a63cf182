"""VotingRound.settle: decision, rewards, slashes, the pool, and the record of a round."""
import ape
import pytest

from protocol_model import DEFAULT_PARAMS, INITIAL_MODEL, TOKEN, Decision, Role, RoundState, Vote, settle_outcome

UPDATE = b"\x11" * 32
OTHER = b"\x22" * 32
A, R = (Vote.ACCEPT, UPDATE), (Vote.REJECT, UPDATE)


@pytest.fixture
def settled_round(voting, registry, pool, token, play_round, owner):
    """Factory: play one round with per-index plans and check every token movement against the
    Python model of SPEC.md. `votes[i]` is (vote, hash), None (silent) or "commit-only";
    `proposes[i]` is a bool. Returns (outcome, tx, proposers, voters)."""

    def run(votes, proposes=None, pool_funds=0):
        if pool_funds:
            token.mint(pool, pool_funds, sender=owner)
        round_id = voting.currentRoundId() + 1
        model_before = voting.globalModelHash()
        stakes_before = {c: registry.stakeOf(c) for c in registry.activeClients()}
        pool_before = pool.call_view_method("balance")
        order = {}

        def vote_of(v):
            choice = votes[order.setdefault(v.address, len(order))]
            return choice

        p_order = {}

        def proposes_of(p):
            i = p_order.setdefault(p.address, len(p_order))
            return True if proposes is None else proposes[i]

        _, proposers, voters, tx = play_round(update=UPDATE, proposes=proposes_of, votes=vote_of)
        assert len(votes) == len(voters), "plan one vote per voter"
        p_addr = [p.address for p in proposers]
        v_addr = [v.address for v in voters]
        proposed = {a for a in p_addr if proposes is None or proposes[p_order[a]]}
        reveals = {}
        for v in v_addr:  # play_round reveals in voter order
            choice = votes[order[v]]
            if choice not in (None, "commit-only"):
                reveals[v] = choice
        expected = settle_outcome(DEFAULT_PARAMS, p_addr, v_addr, proposed, reveals, pool_before, model_before)

        info = voting.getRound(round_id)
        assert info.settled and info.decision == expected.decision
        assert info.globalModelHash == expected.model == voting.globalModelHash()
        assert voting.state(round_id) == RoundState.SETTLED
        [done] = tx.decode_logs(voting.RoundSettled)
        assert (done.roundId, done.decision, done.globalModelHash) == (round_id, expected.decision, expected.model)
        assert (done.acceptVotes, done.rejectVotes, done.revealedVotes) == (
            info.leadingAccepts, info.rejectCount, len(reveals))
        settled = {e.client: e for e in tx.decode_logs(voting.ParticipantSettled)}
        assert set(settled) == set(p_addr) | set(v_addr)
        for a in p_addr + v_addr:
            e = settled[a]
            assert e.roundId == round_id
            assert e.role == (Role.PROPOSER if a in p_addr else Role.VOTER)
            assert e.won == (a not in expected.slashed)
            assert e.slashed == expected.slashed.get(a, 0)
            assert e.rewarded == expected.rewarded.get(a, 0)
            assert registry.stakeOf(a) == stakes_before[a] - e.slashed + e.rewarded
            assert registry.lockedOf(a) == 0
        assert pool.call_view_method("balance") == pool_before - expected.pool_release + expected.swept
        assert registry.unassigned() == 0
        assert token.balanceOf(registry) == registry.totalStaked()
        released = tx.decode_logs(pool.RewardReleased)
        assert [e.amount for e in released] == ([expected.pool_release] if expected.pool_release else [])
        swept = tx.decode_logs(registry.UnassignedSwept)
        assert [e.amount for e in swept] == ([expected.swept] if expected.swept else [])
        return expected, tx, proposers, voters

    return run


@pytest.fixture
def five(stake, clients):
    """5 clients with 64 tokens: each round draws 1 proposer and 4 voters."""
    return stake(clients[:5])


# ---------------------------------------------------------------- whole rounds
def test_settle__unanimous_accept__accepted_and_proposer_paid(settled_round, five, voting):
    expected, _, proposers, voters = settled_round([A, A, A, A], pool_funds=10 * TOKEN)
    assert expected.decision == Decision.ACCEPTED
    assert voting.globalModelHash() == UPDATE
    assert expected.rewarded[proposers[0].address] == 2 * TOKEN
    assert all(expected.rewarded[v.address] == 0 for v in voters)  # no losers, nothing to share
    assert expected.slashed == {}


def test_settle__minority_reject__slashed_and_shared_with_dust_to_pool(settled_round, five, registry):
    expected, _, _, voters = settled_round([A, A, A, R])
    assert expected.decision == Decision.ACCEPTED
    assert expected.slashed == {voters[3].address: 4 * TOKEN}
    assert expected.rewarded[voters[0].address] == 4 * TOKEN // 3
    assert expected.swept == 1  # 4 tokens shared by 3 leaves one wei of dust
    assert registry.stakeOf(voters[3]) == 60 * TOKEN


def test_settle__majority_reject__rejected_and_proposer_slashed_to_pool(settled_round, five, voting):
    expected, _, proposers, voters = settled_round([R, R, R, A])
    assert expected.decision == Decision.REJECTED
    assert voting.globalModelHash() == INITIAL_MODEL
    assert expected.slashed == {proposers[0].address: 8 * TOKEN, voters[3].address: 4 * TOKEN}
    assert expected.swept == 8 * TOKEN + 1


def test_settle__tie__rejected(settled_round, five, voting):
    expected, tx, _, _ = settled_round([A, A, R, R])
    assert expected.decision == Decision.REJECTED
    assert voting.globalModelHash() == INITIAL_MODEL


def test_settle__no_reveals__rejected_and_everyone_slashed(settled_round, five, pool):
    expected, _, _, _ = settled_round([None, None, "commit-only", "commit-only"])
    assert expected.decision == Decision.REJECTED
    assert sum(expected.slashed.values()) == 8 * TOKEN + 4 * 4 * TOKEN
    assert pool.call_view_method("balance") == 24 * TOKEN


def test_settle__silent_and_commit_only_voters__slashed_as_losers(settled_round, five):
    expected, _, _, voters = settled_round([A, A, None, "commit-only"])
    assert expected.decision == Decision.ACCEPTED
    assert set(expected.slashed) == {voters[2].address, voters[3].address}
    assert expected.rewarded[voters[0].address] == 4 * TOKEN  # 8 tokens shared by 2 winners


def test_settle__accept_for_other_hash__loses(settled_round, five, voting):
    expected, _, _, voters = settled_round([A, A, (Vote.ACCEPT, OTHER), A])
    assert expected.decision == Decision.ACCEPTED
    assert voting.globalModelHash() == UPDATE
    assert set(expected.slashed) == {voters[2].address}


def test_settle__split_accepts__no_majority_rejected(settled_round, five, voting):
    expected, _, _, _ = settled_round([A, A, (Vote.ACCEPT, OTHER), (Vote.ACCEPT, OTHER)])
    assert expected.decision == Decision.REJECTED  # 2 of 4 for the leading hash is no majority
    assert voting.getRound(1).leadingHash == UPDATE  # first to reach 2 keeps the lead


def test_settle__silent_proposer__slashed_while_others_paid(settled_round, stake, clients):
    stake(clients)  # 17 clients: 3 proposers, 14 voters
    expected, _, proposers, _ = settled_round([A] * 14, proposes=[True, False, True], pool_funds=100 * TOKEN)
    assert expected.decision == Decision.ACCEPTED
    assert expected.slashed == {proposers[1].address: 8 * TOKEN}
    assert expected.rewarded[proposers[0].address] == expected.rewarded[proposers[2].address] == 2 * TOKEN
    assert expected.pool_release == 4 * TOKEN
    assert expected.swept == 8 * TOKEN


def test_settle__pool_short__reward_capped_by_balance(settled_round, stake, clients):
    stake(clients)
    expected, _, proposers, _ = settled_round([A] * 14, pool_funds=TOKEN)
    per = TOKEN // 3
    assert all(expected.rewarded[p.address] == per for p in proposers)
    assert expected.pool_release == 3 * per


def test_settle__empty_pool__no_reward_no_release(settled_round, five):
    expected, tx, proposers, _ = settled_round([A, A, A, A])
    assert expected.rewarded[proposers[0].address] == 0
    assert expected.pool_release == 0


def test_settle__accepted_without_proposals__proposer_slashed_model_replaced(settled_round, five, voting):
    expected, _, proposers, _ = settled_round([A, A, A, A], proposes=[False])
    assert expected.decision == Decision.ACCEPTED
    assert expected.slashed == {proposers[0].address: 8 * TOKEN}
    assert voting.globalModelHash() == UPDATE


def test_settle__model_persists_through_rejected_round(settled_round, five, voting):
    settled_round([A, A, A, A])
    settled_round([R, R, R, R])
    assert voting.globalModelHash() == UPDATE
    assert voting.getRound(2).globalModelHash == UPDATE
    assert voting.getRound(2).decision == Decision.REJECTED


def test_settle__repeated_rejection__removes_client_once_stake_runs_out(voting, registry, stake, clients, play_round):
    # two clients: one proposer and one voter a round; every proposal is rejected, so 8 tokens
    # leave the pair each round and a 64-token client survives at most 8 rejected proposals
    pair = stake(clients[:2])
    rejected = {a.address: 0 for a in pair}
    for _ in range(16):
        if registry.activeCount() < 2:
            break
        round_id, proposers, _, _ = play_round(votes=lambda v: R)
        for p in proposers:
            rejected[p.address] += 1
    [gone] = [a for a in pair if registry.isRemoved(a)]
    assert rejected[gone.address] <= 8
    assert registry.stakeOf(gone) < 8 * TOKEN
    assert registry.stakeOf(gone) == 64 * TOKEN - 8 * TOKEN * rejected[gone.address]
    with ape.reverts(voting.RoundNotEnoughClients, active=1, required=2):
        voting.openRound(sender=gone)


# ---------------------------------------------------------------- guards
@pytest.mark.parametrize("target", [RoundState.PROPOSING, RoundState.COMMITTING, RoundState.REVEALING])
def test_settle__before_reveal_deadline__reverts(voting, five, open_round, advance_to, target):
    round_id, _, _, _ = open_round()
    if target != RoundState.PROPOSING:
        advance_to(round_id, target)
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=target, required=RoundState.SETTLEABLE):
        voting.settle(round_id, sender=five[0])


def test_settle__twice__reverts(voting, five, play_round):
    round_id, _, _, _ = play_round()
    with ape.reverts(voting.RoundNotInState, roundId=round_id, current=RoundState.SETTLED,
                     required=RoundState.SETTLEABLE):
        voting.settle(round_id, sender=five[0])


def test_settle__unknown_round__reverts(voting, outsider):
    with ape.reverts(voting.RoundNotInState, roundId=1, current=RoundState.NONE, required=RoundState.SETTLEABLE):
        voting.settle(1, sender=outsider)


def test_settle__by_outsider__allowed(voting, five, play_round, outsider, advance_to):
    round_id, _, _, _ = play_round(settle=False)
    voting.settle(round_id, sender=outsider)
    assert voting.state(round_id) == RoundState.SETTLED
