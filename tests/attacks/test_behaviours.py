import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.attacks.behaviours import (
    DEFAULT_ATTACK_PROXIMAL_MU,
    HONEST,
    Behaviour,
    assign_malicious,
    behaviour_for,
    decide_vote,
    make_proposal,
)
from fl.learning.model import evaluate, init_model, state_of, train_local
from fl.learning.store import serialize

NUM_FEATURES = 8
MALICIOUS = Behaviour(malicious_proposer=True, malicious_voter=True)


def distance(a, b) -> float:
    return math.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a))


@settings(max_examples=50, deadline=None)
@given(num_clients=st.integers(1, 200), ratio=st.floats(0.0, 0.99), seed=st.integers(0, 2**32 - 1))
def test_assign_malicious__any_ratio__exactly_rounded_count(num_clients, ratio, seed):
    expected = round(ratio * num_clients)

    actual = assign_malicious(num_clients, ratio, seed)

    assert len(actual) == num_clients
    assert sum(actual) == expected


def test_assign_malicious__same_seed__same_clients_other_seed_differs():
    first = assign_malicious(50, 0.2, seed=1)
    second = assign_malicious(50, 0.2, seed=1)
    other = assign_malicious(50, 0.2, seed=2)

    assert first == second
    assert first != other


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_assign_malicious__ratio_outside_unit_interval__raises(ratio):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        assign_malicious(10, ratio, seed=0)


@pytest.mark.parametrize(
    ("is_malicious", "attack", "expected"),
    [
        (False, "both", HONEST),
        (False, "proposer", HONEST),
        (True, "both", Behaviour(True, True)),
        (True, "proposer", Behaviour(True, False)),
        (True, "voter", Behaviour(False, True)),
    ],
)
def test_behaviour_for__roles(is_malicious, attack, expected):
    assert behaviour_for(is_malicious, attack) == expected


def test_behaviour_for__default_attack__both_roles():
    assert behaviour_for(True) == Behaviour(True, True)


def test_behaviour_for__unknown_attack__raises():
    with pytest.raises(ValueError, match="malicious roles must be one of"):
        behaviour_for(True, "sybil")


@pytest.mark.parametrize(
    ("candidate", "current", "expected_honest"),
    [(0.80, 0.80, True), (0.79, 0.80, True), (0.78, 0.80, False), (0.90, 0.80, True), (0.50, 0.80, False)],
)
def test_decide_vote__honest_follows_evidence_malicious_opposes_it(candidate, current, expected_honest):
    # Execute
    honest = decide_vote(candidate, current, epsilon=0.01, behaviour=HONEST)
    malicious = decide_vote(candidate, current, epsilon=0.01, behaviour=MALICIOUS)

    # Assert
    assert honest is expected_honest
    assert malicious is (not expected_honest)


def test_decide_vote__malicious_proposer_only__votes_honestly():
    assert decide_vote(0.5, 0.8, 0.01, Behaviour(malicious_proposer=True, malicious_voter=False)) is False


@pytest.mark.parametrize(("candidate", "epsilon"), [(0.5, -0.1), (float("nan"), 0.1)])
def test_decide_vote__bad_input__raises(candidate, epsilon):
    with pytest.raises(ValueError):
        decide_vote(candidate, 0.5, epsilon, HONEST)


def test_make_proposal__honest__equals_train_local_from_global(separable_train):
    # Prepare
    global_model = init_model(NUM_FEATURES, 0)
    expected = train_local(global_model, separable_train, epochs=2, lr=1e-2, seed=4)

    # Execute
    actual = make_proposal(state_of(global_model), separable_train, HONEST,
                           epochs=2, lr=1e-2, seed=4, num_features=NUM_FEATURES)

    # Assert
    assert serialize(actual) == serialize(expected)


def test_make_proposal__malicious__worse_on_validation_but_close_to_global(separable_train, separable_val):
    # Prepare: a global model that already learned the task
    warm = train_local(init_model(NUM_FEATURES, 0), separable_train, epochs=5, lr=1e-2, seed=0)
    arguments = {"epochs": 5, "lr": 1e-2, "seed": 1, "num_features": NUM_FEATURES}

    # Execute
    honest = make_proposal(warm, separable_train, HONEST, **arguments)
    malicious = make_proposal(warm, separable_train, MALICIOUS, **arguments)
    unconstrained = make_proposal(warm, separable_train, MALICIOUS, proximal_mu=0.0, **arguments)

    # Assert
    honest_metrics, malicious_metrics = evaluate(honest, separable_val), evaluate(malicious, separable_val)
    assert malicious_metrics.accuracy < honest_metrics.accuracy - 0.1
    assert malicious_metrics.auroc < honest_metrics.auroc - 0.1
    assert distance(malicious, warm) < 0.75 * distance(unconstrained, warm)
    assert DEFAULT_ATTACK_PROXIMAL_MU > 0


def test_make_proposal__same_seed__deterministic(separable_train):
    global_state = state_of(init_model(NUM_FEATURES, 0))
    arguments = {"epochs": 3, "lr": 1e-2, "seed": 9, "num_features": NUM_FEATURES}

    first = make_proposal(global_state, separable_train, MALICIOUS, **arguments)
    second = make_proposal(global_state, separable_train, MALICIOUS, **arguments)

    assert serialize(first) == serialize(second)
