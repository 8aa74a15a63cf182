"""VotingRound.settle: per-proposal decisions, proposer and voter settlement, the pool, the
parent-hash confirmation, and the record of a round. Every settlement here is checked token by
token against the Python model (protocol_model.settle_outcome); the hand-computed examples and the
paper's rule (protocol_model.paper_settle_outcome) check the model itself."""
import ape
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol_model import (
    DEFAULT_PARAMS,
    INITIAL_MODEL,
    TOKEN,
    Decision,
    Role,
    RoundState,
    accept_all,
    paper_settle_outcome,
    settle_outcome,
)

PARENT = INITIAL_MODEL  # what honest voters attest in round 1
OTHER = b"\x22" * 32
THIRD = b"\x33" * 32
ALL, NONE = "all", "none"  # uniform ballots: accept every proposal / reject every proposal


def ballot(choice, proposals):
    """A plan entry as (acceptMask, parentHash): "all", "none", a mask, or (mask, parent)."""
    if choice == ALL:
        return accept_all(proposals), PARENT
    if choice == NONE:
        return 0, PARENT
    if isinstance(choice, int):
        return choice, PARENT
    return choice


def play_and_check(voting, registry, pool, token, play_round, owner, votes, proposes=None, pool_funds=0):
    """Play one round with per-index plans and check every token movement, event and record field
    against the model. `votes[i]` is a ballot (see `ballot`), None (silent) or "commit-only";
    `proposes[i]` is a bool. Returns (outcome, tx, proposers, voters)."""
    if pool_funds:
        token.mint(pool, pool_funds, sender=owner)
    round_id = voting.currentRoundId() + 1
    model_before = voting.globalModelHash()
    stakes_before = {c: registry.stakeOf(c) for c in registry.activeClients()}
    pool_before = pool.call_view_method("balance")
    v_order, p_order = {}, {}

    def vote_of(v, proposals):
        choice = votes[v_order.setdefault(v.address, len(v_order))]
        return choice if choice in (None, "commit-only") else ballot(choice, proposals)

    def proposes_of(p):
        i = p_order.setdefault(p.address, len(p_order))
        return True if proposes is None else proposes[i]

    _, proposers, voters, tx = play_round(proposes=proposes_of, votes=vote_of)
    assert len(votes) == len(voters), "plan one vote per voter"
    p_addr = [p.address for p in proposers]
    v_addr = [v.address for v in voters]
    submitted = [a for a in p_addr if proposes is None or proposes[p_order[a]]]  # play_round proposes in draw order
    reveals = {v: ballot(votes[v_order[v]], len(submitted)) for v in v_addr  # and reveals in voter order
               if votes[v_order[v]] not in (None, "commit-only")}
    expected = settle_outcome(DEFAULT_PARAMS, p_addr, v_addr, submitted, reveals, pool_before, model_before)

    info = voting.getRound(round_id)
    assert info.settled and info.decision == expected.decision
    assert (info.acceptedMask, info.acceptedCount) == (expected.accepted_mask, expected.accepted_count)
    assert info.globalModelHash == expected.model == voting.globalModelHash()
    assert (info.leadingParentHash, info.leadingParentVotes) == (expected.leading_parent, expected.leading_votes)
    assert voting.proposalAccepts(round_id) == expected.accepts
    assert voting.state(round_id) == RoundState.SETTLED
    [done] = tx.decode_logs(voting.RoundSettled)
    assert (done.roundId, done.decision, done.globalModelHash, done.acceptedMask, done.acceptedCount,
            done.revealedVotes) == (round_id, expected.decision, expected.model, expected.accepted_mask,
                                    expected.accepted_count, len(reveals))
    [tallied] = tx.decode_logs(voting.ParentHashTallied)
    assert (tallied.parentHash, tallied.votes, tallied.revealed, tallied.confirmed) == (
        expected.leading_parent, expected.leading_votes, len(reveals), expected.confirmed)
    proposals = [(e.proposer, e.index, e.accepted, e.accepts, e.revealed) for e in tx.decode_logs(voting.ProposalSettled)]
    assert proposals == [(a, i, bool(expected.accepted_mask >> i & 1), expected.accepts[i], len(reveals))
                         for i, a in enumerate(submitted)]
    settled = {e.client: e for e in tx.decode_logs(voting.ParticipantSettled)}
    assert set(settled) == set(p_addr) | set(v_addr)
    for a in p_addr + v_addr:
        e = settled[a]
        assert e.roundId == round_id
        assert e.role == (Role.PROPOSER if a in p_addr else Role.VOTER)
        assert (e.won, e.slashed, e.rewarded) == (expected.won[a], expected.slashed[a], expected.rewarded[a])
        assert registry.stakeOf(a) == stakes_before[a] - e.slashed + e.rewarded
        assert registry.lockedOf(a) == 0
    # conservation: what left the stakes and the pool is what came in; nothing stays unassigned
    assert pool.call_view_method("balance") == pool_before - expected.pool_release + expected.swept
    assert registry.unassigned() == 0
    assert token.balanceOf(registry) == registry.totalStaked()
    released = tx.decode_logs(pool.RewardReleased)
    assert [e.amount for e in released] == ([expected.pool_release] if expected.pool_release else [])
    swept = tx.decode_logs(registry.UnassignedSwept)
    assert [e.amount for e in swept] == ([expected.swept] if expected.swept else [])
    return expected, tx, proposers, voters


@pytest.fixture
def settled_round(voting, registry, pool, token, play_round, owner):
    """Factory: `play_and_check` bound to the shared deployment."""

    def run(votes, proposes=None, pool_funds=0):
        return play_and_check(voting, registry, pool, token, play_round, owner, votes, proposes, pool_funds)

    return run


@pytest.fixture
def five(stake, clients):
    """5 clients with 64 tokens: each round draws 1 proposer and 4 voters."""
    return stake(clients[:5])


@pytest.fixture
def ten(stake, clients):
    """10 clients with 64 tokens: each round draws 2 proposers and 8 voters."""
    return stake(clients[:10])


# ---------------------------------------------------------------- uniform ballots (the paper's rule)
def test_settle__unanimous_accept__accepted_and_proposer_paid(settled_round, five, voting):
    expected, _, proposers, voters = settled_round([ALL] * 4, pool_funds=10 * TOKEN)
    assert expected.decision == Decision.ACCEPTED
    assert expected.rewarded[proposers[0].address] == 2 * TOKEN
    assert all(expected.rewarded[v.address] == 0 for v in voters)  # no losers, nothing to share
    assert sum(expected.slashed.values()) == 0


def test_settle__minority_reject__slashed_and_shared_with_dust_to_pool(settled_round, five, registry):
    expected, _, _, voters = settled_round([ALL, ALL, ALL, NONE])
    assert expected.decision == Decision.ACCEPTED
    assert expected.slashed[voters[3].address] == 4 * TOKEN
    assert expected.rewarded[voters[0].address] == 4 * TOKEN // 3
    assert expected.swept == 1  # 4 tokens shared by 3 leaves one wei of dust
    assert registry.stakeOf(voters[3]) == 60 * TOKEN


def test_settle__majority_reject__rejected_and_proposer_slashed_to_pool(settled_round, five):
    expected, _, proposers, voters = settled_round([NONE, NONE, NONE, ALL])
    assert expected.decision == Decision.REJECTED
    assert expected.slashed[proposers[0].address] == 8 * TOKEN
    assert expected.slashed[voters[3].address] == 4 * TOKEN
    assert expected.swept == 8 * TOKEN + 1


def test_settle__tie__rejected(settled_round, five):
    expected, _, proposers, _ = settled_round([ALL, ALL, NONE, NONE])
    assert expected.accepts == [2]
    assert expected.decision == Decision.REJECTED  # 2 of 4 is no majority
    assert expected.slashed[proposers[0].address] == 8 * TOKEN


def test_settle__no_reveals__rejected_and_everyone_slashed(settled_round, five, pool):
    expected, _, _, _ = settled_round([None, None, "commit-only", "commit-only"])
    assert expected.decision == Decision.REJECTED
    assert sum(expected.slashed.values()) == 8 * TOKEN + 4 * 4 * TOKEN
    assert pool.call_view_method("balance") == 24 * TOKEN


def test_settle__silent_and_commit_only_voters__slashed_as_losers(settled_round, five):
    expected, _, _, voters = settled_round([ALL, ALL, None, "commit-only"])
    assert expected.decision == Decision.ACCEPTED
    assert [expected.slashed[v.address] for v in voters] == [0, 0, 4 * TOKEN, 4 * TOKEN]
    assert expected.rewarded[voters[0].address] == 4 * TOKEN  # 8 tokens shared by 2 winners


def test_settle__no_proposals__revealed_voters_win(settled_round, five):
    # P == 0: the silent proposer loses 8; the 2 voters that revealed share the 2 others' stakes
    expected, _, proposers, voters = settled_round([NONE, NONE, None, "commit-only"], proposes=[False])
    assert expected.decision == Decision.REJECTED
    assert expected.slashed[proposers[0].address] == 8 * TOKEN
    assert [(expected.slashed[v.address], expected.rewarded[v.address]) for v in voters] == [
        (0, 4 * TOKEN), (0, 4 * TOKEN), (4 * TOKEN, 0), (4 * TOKEN, 0)]
    assert expected.swept == 8 * TOKEN


def test_settle__silent_proposer__slashed_while_others_paid(settled_round, stake, clients):
    stake(clients)  # 17 clients: 3 proposers, 14 voters
    expected, _, proposers, _ = settled_round([ALL] * 14, proposes=[True, False, True], pool_funds=100 * TOKEN)
    assert expected.decision == Decision.ACCEPTED
    assert [expected.slashed[p.address] for p in proposers] == [0, 8 * TOKEN, 0]
    assert expected.rewarded[proposers[0].address] == expected.rewarded[proposers[2].address] == 2 * TOKEN
    assert expected.pool_release == 4 * TOKEN
    assert expected.swept == 8 * TOKEN


def test_settle__pool_short__reward_capped_by_balance(settled_round, stake, clients):
    stake(clients)
    expected, _, proposers, _ = settled_round([ALL] * 14, pool_funds=TOKEN)
    per = TOKEN // 3
    assert all(expected.rewarded[p.address] == per for p in proposers)
    assert expected.pool_release == 3 * per


def test_settle__empty_pool__no_reward_no_release(settled_round, five):
    expected, _, proposers, _ = settled_round([ALL] * 4)
    assert expected.rewarded[proposers[0].address] == 0
    assert expected.pool_release == 0


# ---------------------------------------------------------------- ballots over proposals
def test_settle__per_proposal__each_proposer_on_its_own(settled_round, stake, clients):
    stake(clients)  # 17 clients: 3 proposers, 14 voters
    # 8 voters accept proposals 0 and 2 only, 4 accept all, 2 reject all: accepts = [12, 4, 12] of 14
    votes = [0b101] * 8 + [ALL] * 4 + [NONE] * 2
    expected, tx, proposers, _ = settled_round(votes, pool_funds=100 * TOKEN)
    assert expected.accepts == [12, 4, 12]
    assert expected.accepted_mask == 0b101 and expected.decision == Decision.ACCEPTED
    assert [(expected.slashed[p.address], expected.rewarded[p.address]) for p in proposers] == [
        (0, 2 * TOKEN), (8 * TOKEN, 0), (0, 2 * TOKEN)]
    assert expected.pool_release == 4 * TOKEN  # two accepted proposals


def test_settle__per_proposal_voters__hand_computed(settled_round, ten, voting):
    # 2 proposals, 8 voters (S = 4 tokens), R = 6 reveals:
    #   v0-v2 accept both, v3 accepts only proposal 1, v4 and v5 only proposal 0, v6 silent, v7 commit-only
    #   accepts = [5, 4]: both accepted (2*5 > 6, 2*4 > 6)
    #   proposal 0: W = 5 (v0-v2, v4, v5), L = 3 (v3, v6, v7): share floor(3 * 4 / 5) = 2.4 tokens
    #   proposal 1: W = 4 (v0-v3), L = 4 (v4-v7): share 4 tokens
    #   v0-v2: slash 0, reward (2.4 + 4) / 2 = 3.2;  v3: slash ceil(4 * 1 / 2) = 2, reward 4 / 2 = 2
    #   v4, v5: slash 2, reward 2.4 / 2 = 1.2;  v6, v7: slash 4, reward 0
    votes = [ALL, ALL, ALL, 0b10, 0b01, 0b01, None, "commit-only"]
    expected, _, _, voters = settled_round(votes, pool_funds=10 * TOKEN)
    actual = [(expected.slashed[v.address], expected.rewarded[v.address]) for v in voters]
    milli = TOKEN // 1000
    assert actual == [(0, 3200 * milli)] * 3 + [(2 * TOKEN, 2 * TOKEN)] + [(2 * TOKEN, 1200 * milli)] * 2 + [
        (4 * TOKEN, 0)] * 2
    assert expected.accepts == [5, 4]
    assert [expected.won[v.address] for v in voters] == [True] * 3 + [False] * 5
    assert voting.getRound(1).acceptedMask == 0b11


def test_settle__one_wrong_verdict_of_three__slash_rounded_up(settled_round, stake, clients):
    stake(clients)  # 3 proposals, 14 voters
    # voter 0 rejects proposal 2, the 13 others accept all: accepts = [14, 14, 13], all accepted.
    # Voter 0 is slashed ceil(4 / 3) tokens and wins proposals 0 and 1, which nobody lost (share 0);
    # each other voter gets proposal 2's share floor(4 / 13) tokens, divided by the 3 proposals
    expected, _, _, voters = settled_round([0b011] + [ALL] * 13)
    share = 4 * TOKEN // 13
    assert expected.accepts == [14, 14, 13]
    assert (expected.slashed[voters[0].address], expected.rewarded[voters[0].address]) == (4 * TOKEN // 3 + 1, 0)
    assert all(expected.rewarded[v.address] == share // 3 for v in voters[1:])
    assert expected.swept == 4 * TOKEN // 3 + 1 - 13 * (share // 3) == 2  # rounding dust to the pool


def test_settle__rejected_proposal_tie__rejected_per_proposal(settled_round, ten):
    # accepts = [4, 6] of 8: proposal 0 ties and is rejected, proposal 1 is accepted
    expected, _, proposers, _ = settled_round([ALL] * 4 + [0b10] * 2 + [NONE] * 2)
    assert expected.accepts == [4, 6]
    assert expected.accepted_mask == 0b10
    assert [expected.slashed[p.address] for p in proposers] == [8 * TOKEN, 0]


# ---------------------------------------------------------------- the parent-hash confirmation
def test_settle__parent_majority__recorded(settled_round, five, voting):
    expected, tx, _, _ = settled_round([(1, OTHER), (1, OTHER), (1, OTHER), (1, PARENT)])
    assert expected.confirmed and voting.globalModelHash() == OTHER
    assert voting.getRound(1).globalModelHash == OTHER


def test_settle__parent_minority__not_recorded(settled_round, five, voting):
    settled_round([(1, OTHER), (1, PARENT), (1, THIRD), (1, b"\x44" * 32)])
    assert voting.globalModelHash() == INITIAL_MODEL  # one vote of four leads, no majority


def test_settle__parent_tie__not_recorded(settled_round, five, voting):
    expected, tx, _, _ = settled_round([(1, OTHER), (1, OTHER), (1, THIRD), (1, THIRD)])
    assert not expected.confirmed
    assert voting.getRound(1).leadingParentHash == OTHER  # first to reach 2 keeps the lead
    assert voting.globalModelHash() == INITIAL_MODEL


def test_settle__accepted_proposals__do_not_set_recorded_model(settled_round, five, voting):
    # the recorded hash only ever comes from the voters' parent attestations: it lags one round
    settled_round([ALL] * 4)
    assert voting.globalModelHash() == INITIAL_MODEL
    settled_round([(1, OTHER)] * 4)  # round 2's voters confirm what round 1 produced
    assert voting.globalModelHash() == OTHER
    settled_round([(0, THIRD), (0, THIRD), None, None])  # 2 of 2 revealed: a majority
    assert voting.globalModelHash() == THIRD
    assert [voting.getRound(r).globalModelHash for r in (1, 2, 3)] == [INITIAL_MODEL, OTHER, THIRD]


def test_settle__no_reveals__recorded_model_kept(settled_round, five, voting):
    settled_round([(1, OTHER)] * 4)
    settled_round([None] * 4)
    assert voting.getRound(2).globalModelHash == OTHER == voting.globalModelHash()


# ---------------------------------------------------------------- uniform ballots == the paper's rule
UNIFORM = st.sampled_from([ALL, NONE, None, "commit-only"])


@pytest.fixture
def ten_snapshot(ten, chain):
    """The ten-client deployment; each hypothesis example restores it."""
    return chain


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(votes=st.lists(UNIFORM, min_size=8, max_size=8), proposes=st.lists(st.booleans(), min_size=2, max_size=2),
       pool_funds=st.sampled_from([0, TOKEN, 100 * TOKEN]))
def test_settle__uniform_ballots__equal_paper_rule(ten_snapshot, voting, registry, pool, token, play_round, owner,
                                                   votes, proposes, pool_funds):
    if not any(proposes):
        proposes = [True, False]  # the paper's rule needs a proposal to judge
    snapshot = ten_snapshot.snapshot()
    try:
        pool_before = pool.call_view_method("balance") + pool_funds
        expected, _, proposers, voters = play_and_check(voting, registry, pool, token, play_round, owner, votes,
                                                        proposes, pool_funds)
        p_addr, v_addr = [p.address for p in proposers], [v.address for v in voters]
        uniform = {v: votes[i] == ALL for i, v in enumerate(v_addr) if votes[i] in (ALL, NONE)}
        proposed = {a for a, ok in zip(p_addr, proposes) if ok}
        accepted, slashed, rewarded, release = paper_settle_outcome(DEFAULT_PARAMS, p_addr, v_addr, proposed,
                                                                    uniform, pool_before)
        actual = (expected.decision == Decision.ACCEPTED, expected.slashed, expected.rewarded, expected.pool_release)
    finally:
        ten_snapshot.restore(snapshot)
    assert actual == (accepted, slashed, rewarded, release)


# ---------------------------------------------------------------- several rounds
def test_settle__repeated_rejection__removes_client_once_stake_runs_out(voting, registry, stake, clients, play_round):
    # two clients: one proposer and one voter a round; every proposal is rejected, so 8 tokens
    # leave the pair each round and a 64-token client survives at most 8 rejected proposals
    pair = stake(clients[:2])
    rejected = {a.address: 0 for a in pair}
    for _ in range(16):
        if registry.activeCount() < 2:
            break
        round_id, proposers, _, _ = play_round(votes=lambda v, proposals: (0, PARENT))
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


def test_settle__by_outsider__allowed(voting, five, play_round, outsider):
    round_id, _, _, _ = play_round(settle=False)
    voting.settle(round_id, sender=outsider)
    assert voting.state(round_id) == RoundState.SETTLED
