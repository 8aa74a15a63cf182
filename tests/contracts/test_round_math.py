"""RoundMath (through contracts/test/RoundMathHarness.sol) against the Python model, and the model's
own properties: per-proposal settlement conserves tokens and reduces to the paper's rule on
uniform ballots (pure Python, many examples)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol_model import (
    DEFAULT_PARAMS,
    TOKEN,
    Decision,
    accept_all,
    anchored_seed,
    draw_size,
    is_majority,
    paper_settle_outcome,
    round_seed,
    settle_outcome,
)

CHAIN = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PURE = settings(max_examples=300, deadline=None)
WORD = st.integers(0, 2**256 - 1)


@pytest.fixture(scope="module")
def math(project, owner):
    return project.RoundMathHarness.deploy(sender=owner)


@pytest.mark.parametrize("votes, revealed, expected", [
    (0, 0, False), (1, 1, True), (1, 2, False), (2, 3, True), (2, 4, False), (3, 4, True), (75, 150, False),
    (76, 150, True)])
def test_is_majority__ties_and_empty__not_a_majority(math, votes, revealed, expected):
    assert math.isMajority(votes, revealed) == is_majority(votes, revealed) == expected


@CHAIN
@given(bits=st.integers(0, 0xFFFF), word=WORD, lane=st.integers(0, 15))
def test_spread_lanes__each_bit__one_in_its_lane(math, bits, word, lane):
    spread = math.spreadLanes(bits)
    assert spread == sum(1 << (16 * l) for l in range(16) if bits >> l & 1)
    assert math.laneOf(word, lane) == (word >> (16 * lane)) & 0xFFFF


@CHAIN
@given(prev=st.binary(min_size=32, max_size=32), mix=st.binary(min_size=32, max_size=32),
       round_id=st.integers(1, 2**64))
def test_round_seed__matches_model(math, owner, prev, mix, round_id):
    assert math.roundSeed(prev, mix, round_id, owner) == round_seed(prev, mix, round_id, owner.address)


@settings(CHAIN, max_examples=10)
@given(data=st.data(), voters=st.integers(1, 150), proposals=st.integers(1, 256))
def test_voter_outcome__random_round__matches_model(math, data, voters, proposals):
    revealed = data.draw(st.integers(0, voters))
    accepts = data.draw(st.lists(st.integers(0, revealed), min_size=proposals, max_size=proposals))
    stake = data.draw(st.sampled_from([4 * TOKEN, 7, 1]))
    ballot = data.draw(st.integers(0, accept_all(proposals)))
    did_reveal = data.draw(st.booleans())

    mask, count = math.decide(accepts, revealed)
    shares = math.proposalShares(accepts, mask, revealed, voters, stake)
    slash, reward, won = math.voterOutcome(did_reveal, ballot, mask, shares, stake)

    expected_mask = sum(1 << i for i, a in enumerate(accepts) if 2 * a > revealed)
    assert (mask, count) == (expected_mask, bin(expected_mask).count("1"))
    winners = [a if mask >> i & 1 else revealed - a for i, a in enumerate(accepts)]
    assert shares == [(voters - w) * stake // w if w else 0 for w in winners]
    agree = [i for i in range(proposals) if (ballot ^ mask) >> i & 1 == 0]
    if did_reveal:
        expected = (-(-stake * (proposals - len(agree)) // proposals), sum(shares[i] for i in agree) // proposals)
    else:
        expected = (stake, 0)
    assert (slash, reward) == expected
    assert won == (did_reveal and len(agree) == proposals) == (slash == 0)


@pytest.mark.parametrize("a, b, expected", [(0, 3, 0), (1, 3, 1), (3, 3, 1), (4, 3, 2), (2**256 - 1, 1, 2**256 - 1)])
def test_ceil_div__values(math, a, b, expected):
    assert math.ceilDiv(a, b) == expected


# ---------------------------------------------------------------- the model's properties (no chain)
def round_plan(draw, uniform):
    n_prop = draw(st.integers(1, 6))
    n_vote = draw(st.integers(1, 12))
    proposers = [f"p{i}" for i in range(n_prop)]
    voters = [f"v{i}" for i in range(n_vote)]
    submitted = [p for p in proposers if draw(st.booleans())] or proposers[:1]
    full = accept_all(len(submitted))
    ballots = st.sampled_from([0, full]) if uniform else st.integers(0, full)
    reveals = {v: (draw(ballots), b"\x01" * 32) for v in voters if draw(st.booleans())}
    pool = draw(st.sampled_from([0, TOKEN, 10**20]))
    return proposers, voters, submitted, reveals, pool


@PURE
@given(data=st.data())
def test_model__uniform_ballots__paper_rule(data):
    proposers, voters, submitted, reveals, pool = round_plan(data.draw, uniform=True)
    outcome = settle_outcome(DEFAULT_PARAMS, proposers, voters, submitted, reveals, pool, b"\x00" * 32)
    votes = {v: mask != 0 for v, (mask, _) in reveals.items()}
    accepted, slashed, rewarded, release = paper_settle_outcome(DEFAULT_PARAMS, proposers, voters, set(submitted),
                                                                votes, pool)
    assert (outcome.decision == Decision.ACCEPTED, outcome.slashed, outcome.rewarded, outcome.pool_release) == (
        accepted, slashed, rewarded, release)


@PURE
@given(data=st.data())
def test_model__any_ballots__rewards_never_exceed_slashes(data):
    proposers, voters, submitted, reveals, pool = round_plan(data.draw, uniform=False)
    outcome = settle_outcome(DEFAULT_PARAMS, proposers, voters, submitted, reveals, pool, b"\x00" * 32)
    voter_slashes = sum(outcome.slashed[v] for v in voters)
    voter_rewards = sum(outcome.rewarded[v] for v in voters)
    assert voter_rewards <= voter_slashes  # voters are paid only from voters' slashes
    assert outcome.swept >= 0  # the rest (and proposer slashes) goes to the pool
    assert all(outcome.slashed[v] <= DEFAULT_PARAMS["voterStake"] for v in voters)
    assert sum(outcome.rewarded[p] for p in proposers) == outcome.pool_release <= pool


@CHAIN
@given(seed=st.binary(min_size=32, max_size=32), block_hash=st.binary(min_size=32, max_size=32))
def test_anchored_seed__matches_model(math, seed, block_hash):
    assert math.anchoredSeed(seed, block_hash) == anchored_seed(seed, block_hash)


@pytest.mark.parametrize("snapshot, active, expected", [
    (0, 0, 0), (0, 5, 5), (1, 5, 5), (2, 5, 2), (5, 5, 5), (4, 9, 4), (6, 5, 5)])
def test_draw_size__snapshot_unless_below_two(math, snapshot, active, expected):
    """Round 1 (snapshot 0) and a protocol that ran dry (snapshot 1) draw over the active count now;
    otherwise the snapshot, never beyond the active count."""
    assert math.drawSize(snapshot, active) == draw_size(snapshot, active) == expected
