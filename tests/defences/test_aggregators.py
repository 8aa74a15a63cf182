"""fl/defences/aggregators.py: hand-computed cases, the papers' formulas, an independent
restatement of Flower's functions (flower_reference.py), order independence, and
bit-equality of FedAvg with the simulation's fedavg."""

import math

import numpy as np
import pytest
import torch
from flower_reference import (
    aggregate,
    aggregate_bulyan,
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.defences.aggregators import (
    AGGREGATORS,
    bulyan,
    canonical_hash,
    canonical_order,
    centered_clipping,
    fedavg,
    krum,
    median,
    multi_krum,
    trimmed_mean,
)

from fl.defences.aggregate import fedavg as simulation_fedavg
from fl.learning.store import hash_state, serialize

NAMES = ["b", "w"]


def state(w, b=0.0):
    return {"w": torch.tensor(w, dtype=torch.float32), "b": torch.tensor([b], dtype=torch.float32)}


def scalars(values, counts=None):
    """1-D proposals: w = [v], b = [0]."""
    counts = counts or [1] * len(values)
    return [(state([float(v)]), c) for v, c in zip(values, counts)]


ZERO = state([0.0])


def random_updates(seed, n, outliers=0, sizes=((3, 4), (5,)), counts=None):
    """n random states (keys "w" and "b"); the last ``outliers`` far from the rest."""
    generator = torch.Generator().manual_seed(seed)
    updates = []
    for k in range(n):
        shift = 50.0 if k >= n - outliers else 0.0
        s = {"w": torch.randn(*sizes[0], generator=generator) + shift, "b": torch.randn(*sizes[1], generator=generator) - shift}
        count = counts[k] if counts else int(torch.randint(1, 500, (1,), generator=generator))
        updates.append((s, count))
    reference = {"w": torch.zeros(*sizes[0]), "b": torch.zeros(*sizes[1])}
    return updates, reference


def as_flower(updates, dtype=np.float64):
    return [([s[name].numpy().astype(dtype) for name in NAMES], c) for s, c in updates]


def from_flower(layers):
    return {name: torch.from_numpy(np.asarray(layer)) for name, layer in zip(NAMES, layers)}


def assert_close(actual, expected, rtol=1e-6, atol=1e-6):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name].dtype == torch.float32
        np.testing.assert_allclose(actual[name].double().numpy(), expected[name].double().numpy(), rtol=rtol, atol=atol)


def assert_bytes_equal(actual, expected):
    assert serialize(actual) == serialize(expected)


# ----------------------------------------------------------------------------------------
# Hand-computed cases


def test_fedavg__two_updates__hand_computed_weighted_mean():
    # Prepare: (1*[1, 2] + 3*[5, 10]) / 4 and (1*0 + 3*4) / 4
    updates = [(state([1.0, 2.0], 0.0), 1), (state([5.0, 10.0], 4.0), 3)]
    expected = state([4.0, 8.0], 3.0)

    # Execute
    actual = fedavg(updates, state([0.0, 0.0]))

    # Assert
    assert_bytes_equal(actual, expected)


@pytest.mark.parametrize(("values", "expected"), [([1, 100, 3], 3.0), ([1, 2, 10, 3], 2.5), ([7], 7.0)])
def test_median__odd_and_even_counts__middle_value_or_mean_of_the_two(values, expected):
    actual = median(scalars(values, counts=[1000] + [1] * (len(values) - 1)), ZERO)

    assert actual["w"].tolist() == [expected]
    assert actual["b"].tolist() == [0.0]


@pytest.mark.parametrize(("params", "expected"), [
    ({"beta": 0.2}, 3.0),             # floor(0.2 * 5) = 1 cut each end: (2 + 3 + 4) / 3
    ({"num_byzantine": 1}, 3.0),      # beta None: cut f = 1
    ({"num_byzantine": 2}, 3.0),      # only the median left
    ({"beta": 0.0}, 22.0),            # plain mean (1 + 2 + 3 + 4 + 100) / 5
    ({"beta": 0.1}, 22.0),            # floor(0.5) = 0 cut
])
def test_trimmed_mean__known_cut__mean_of_the_middle_values(params, expected):
    actual = trimmed_mean(scalars([4, 100, 1, 3, 2]), ZERO, **params)

    assert actual["w"].tolist() == [expected]


# Krum scores of 0, 1, 3, 5, 100 with n = 5, f = 1 (n - f - 2 = 2 nearest others):
#   0: 1 + 9 = 10,  1: 1 + 4 = 5,  3: 4 + 4 = 8,  5: 4 + 16 = 20,  100: 95^2 + 97^2
KRUM_POINTS = [100, 3, 0, 5, 1]


def test_krum__five_points_one_byzantine__lowest_score_wins():
    actual = krum(scalars(KRUM_POINTS), ZERO, num_byzantine=1)

    assert actual["w"].tolist() == [1.0]


@pytest.mark.parametrize(("m", "expected"), [(1, 1.0), (2, 2.0), (3, 4 / 3), (None, 2.25)])
def test_multi_krum__m_lowest_scores__unweighted_mean(m, expected):
    # Prepare: order by score 1, 3, 0, 5, 100; m = None means n - f = 4
    counts = [1, 2, 3, 4, 5]

    # Execute
    actual = multi_krum(scalars(KRUM_POINTS, counts), ZERO, num_byzantine=1, num_selected=m)

    # Assert
    assert actual["w"].tolist() == [torch.tensor(expected, dtype=torch.float32).item()]


def test_multi_krum__weighted__sample_weighted_mean_of_the_selected():
    # Prepare: selected 1 (count 5) and 3 (count 1): (5 * 1 + 1 * 3) / 6
    counts = [1, 1, 1, 1, 5]

    # Execute
    actual = multi_krum(scalars(KRUM_POINTS, counts), ZERO, num_byzantine=1, num_selected=2, weighted=True)

    # Assert
    assert actual["w"].tolist() == [torch.tensor(8 / 6, dtype=torch.float32).item()]


def test_bulyan__no_byzantine__mean_of_all():
    # f = 0: theta = n picks, beta = n values closest to the median: every value
    actual = bulyan(scalars([1, 2, 6]), ZERO, num_byzantine=0)

    assert actual["w"].tolist() == [3.0]


def test_bulyan__one_byzantine__outlier_excluded_and_trimmed_around_the_median():
    # Prepare: n = 7, f = 1: theta = 5 Krum picks (never the outlier while two honest are
    # left: their mutual distance is smaller), beta = 3 values closest to the median of
    # the picks. Six 1s and a 2 among the honest: the picks hold at least four 1s, so the
    # median and its three closest values are 1.
    values = [1, 1, 1, 2, 1000, 1, 1]

    # Execute
    actual = bulyan(scalars(values), ZERO, num_byzantine=1)

    # Assert
    assert actual["w"].tolist() == [1.0]


def test_bulyan__equidistant_values__smaller_value_breaks_the_tie():
    # Prepare: f = 0, n = 4 -> beta = 4 keeps everything; use n = 3 with values 0, 1, 2 and
    # a 2-vector whose second coordinate is symmetric about the median: 1 +- 1
    updates = [(state([0.0, 0.0]), 1), (state([1.0, 1.0]), 1), (state([2.0, 2.0]), 1)]

    # Execute
    actual = bulyan(updates, state([0.0, 0.0]), num_byzantine=0)

    # Assert: beta = 3, all kept: the mean
    assert actual["w"].tolist() == [1.0, 1.0]


def test_centered_clipping__one_iteration__clips_far_updates_to_tau():
    # Prepare: d = 1, 2, 100 around 0 with tau = 10: clipped 1, 2, 10 -> v = 13 / 3
    updates = scalars([1, 2, 100])

    # Execute
    actual = centered_clipping(updates, ZERO, tau=10.0, iterations=1)

    # Assert
    assert actual["w"].tolist() == [torch.tensor(13 / 3, dtype=torch.float32).item()]


def test_centered_clipping__previous_update_centre__clips_around_it():
    # Prepare: reference 10, states 11, 12, 110 -> d = 1, 2, 100; v0 = 1:
    # d - v0 = 0, 1, 99 -> 0, 1, 10; v1 = 1 + 11/3; result 10 + v1
    updates = scalars([11, 12, 110])

    # Execute
    actual = centered_clipping(updates, state([10.0], 0.0), tau=10.0, iterations=1, previous_update=state([1.0], 0.0))

    # Assert
    assert actual["w"].tolist() == [torch.tensor(10 + 1 + 11 / 3, dtype=torch.float32).item()]


def centered_clipping_formula(deltas: np.ndarray, tau: float, iterations: int, centre: np.ndarray) -> np.ndarray:
    """ByzFL's formula: v <- v + mean_i (x_i - v) min(1, tau / ||x_i - v||)."""
    v = centre.copy()
    for _ in range(iterations):
        differences = deltas - v
        norms = np.linalg.norm(differences, axis=1)
        factors = np.minimum(1.0, tau / np.where(norms == 0, np.inf, norms))
        v = v + (differences * factors[:, None]).mean(axis=0)
    return v


@pytest.mark.parametrize("iterations", [1, 3])
def test_centered_clipping__random_updates__matches_the_formula(iterations):
    # Prepare
    updates, reference = random_updates(seed=3, n=6, outliers=2)
    reference = {name: torch.full_like(value, 0.5) for name, value in reference.items()}
    previous = {name: torch.full_like(value, 0.25) for name, value in reference.items()}
    flat = lambda s: np.concatenate([s[name].double().numpy().ravel() for name in NAMES])  # noqa: E731
    deltas = np.stack([flat(s) - flat(reference) for s, _ in updates])

    # Execute
    actual = centered_clipping(updates, reference, tau=2.0, iterations=iterations, previous_update=previous)

    # Assert
    expected_flat = flat(reference) + centered_clipping_formula(deltas, 2.0, iterations, flat(previous))
    np.testing.assert_allclose(
        np.concatenate([actual[name].double().numpy().ravel() for name in NAMES]), expected_flat, rtol=1e-6, atol=1e-6
    )


# ----------------------------------------------------------------------------------------
# Against the independent restatement of Flower's functions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fedavg__random__agrees_with_flower_aggregate(seed):
    updates, reference = random_updates(seed, n=7, outliers=2)

    actual = fedavg(updates, reference)

    assert_close(actual, from_flower(aggregate(as_flower(updates))))


@pytest.mark.parametrize(("seed", "n"), [(0, 7), (1, 8), (2, 5)])
def test_median__random_float32__bit_equal_to_flower_median(seed, n):
    # np.median of float32 rounds (a + b) once and halves exactly: the same bits as ours
    updates, reference = random_updates(seed, n=n, outliers=2)

    actual = median(updates, reference)

    assert_bytes_equal(actual, {k: v.to(torch.float32) for k, v in from_flower(aggregate_median(as_flower(updates, np.float32))).items()})


@pytest.mark.parametrize(("seed", "beta"), [(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.0)])
def test_trimmed_mean__random__agrees_with_flower_trimmed_avg(seed, beta):
    updates, reference = random_updates(seed, n=9, outliers=2)

    actual = trimmed_mean(updates, reference, beta=beta)

    assert_close(actual, from_flower(aggregate_trimmed_avg(as_flower(updates), beta)))


@pytest.mark.parametrize(("seed", "n", "f"), [(0, 7, 2), (1, 9, 3), (2, 5, 1), (3, 10, 1)])
def test_krum__random__same_choice_as_flower_krum(seed, n, f):
    updates, reference = random_updates(seed, n=n, outliers=f)

    actual = krum(updates, reference, num_byzantine=f)

    expected = from_flower(aggregate_krum(as_flower(updates, np.float32), f, to_keep=0))
    assert_bytes_equal(actual, expected)


@pytest.mark.parametrize(("seed", "n", "f", "m"), [(0, 7, 2, 3), (1, 9, 3, 6), (2, 10, 1, 9)])
def test_multi_krum__weighted__agrees_with_flower_multi_krum(seed, n, f, m):
    updates, reference = random_updates(seed, n=n, outliers=f)

    actual = multi_krum(updates, reference, num_byzantine=f, num_selected=m, weighted=True)

    assert_close(actual, from_flower(aggregate_krum(as_flower(updates), f, to_keep=m)))


def test_multi_krum__unweighted_with_equal_counts__agrees_with_flower_multi_krum():
    updates, reference = random_updates(4, n=8, outliers=2, counts=[7] * 8)

    actual = multi_krum(updates, reference, num_byzantine=2, num_selected=4)

    assert_close(actual, from_flower(aggregate_krum(as_flower(updates), 2, to_keep=4)))


def test_multi_krum__unweighted_with_unequal_counts__differs_from_flower_by_design():
    # The paper (and ByzFL) average the selected with equal weights; Flower weights them
    updates, reference = random_updates(5, n=8, outliers=2, counts=[1, 1000, 1, 1, 1, 1, 1, 1])

    actual = multi_krum(updates, reference, num_byzantine=2, num_selected=4)
    flower = from_flower(aggregate_krum(as_flower(updates), 2, to_keep=4))

    assert not np.allclose(actual["w"].numpy(), flower["w"].numpy(), atol=1e-3)


@pytest.mark.parametrize(("seed", "n", "f"), [(0, 7, 1), (1, 11, 2), (2, 9, 1), (3, 3, 0)])
def test_bulyan__random__agrees_with_flower_bulyan(seed, n, f):
    # Prepare: when Krum is left one neighbour (pool n - f - 2 < 1), a mutually nearest
    # pair always ties; both break ties by list position, so give Flower the canonical order
    updates, reference = random_updates(seed, n=n, outliers=f)

    # Execute
    actual = bulyan(updates, reference, num_byzantine=f)

    # Assert
    expected = aggregate_bulyan(as_flower(canonical_order(updates), np.float32), f)
    assert_close(actual, from_flower(expected))


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "krum", "multi_krum", "bulyan", "centered_clipping"])
def test_robust_rules__byzantine_outliers__stay_near_the_honest_mean_where_fedavg_does_not(name):
    # Prepare: 9 honest around 0, 2 outliers at +-50 (f = 2, n = 11 >= 4f + 3)
    updates, reference = random_updates(7, n=11, outliers=2, counts=[1] * 11)
    honest_mean = fedavg(updates[:9], reference)

    # Execute
    robust = AGGREGATORS[name](updates, reference, num_byzantine=2)
    plain = fedavg(updates, reference)

    # Assert
    distance = lambda s: max(float((s[k] - honest_mean[k]).abs().max()) for k in NAMES)  # noqa: E731
    assert distance(plain) > 5.0
    assert distance(robust) < 2.5


# ----------------------------------------------------------------------------------------
# Order independence and bit-equality


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), permutation=st.permutations(list(range(8))))
def test_every_rule__permuted_inputs__identical_bytes(seed, permutation):
    # Prepare: 7 random updates plus a duplicate of one with another count (ties)
    updates, reference = random_updates(seed, n=7, outliers=1)
    updates.append((updates[2][0], updates[2][1] + 1))
    shuffled = [updates[i] for i in permutation]

    for name, rule in AGGREGATORS.items():
        # Execute
        expected = rule(updates, reference, num_byzantine=1)
        actual = rule(shuffled, reference, num_byzantine=1)

        # Assert
        assert serialize(actual) == serialize(expected), name


magnitudes = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.tuples(st.lists(magnitudes, min_size=3, max_size=3), st.integers(1, 10**6)), min_size=1, max_size=9),
    permutation_seed=st.integers(0, 1000),
)
def test_fedavg__any_inputs__bit_identical_to_the_simulation_fedavg(rows, permutation_seed):
    # Prepare: values of very different magnitudes, so the summation order matters
    updates = [({"w": torch.tensor(values, dtype=torch.float32), "b": torch.tensor([values[0] * 1e-3], dtype=torch.float32)}, count)
               for values, count in rows]
    order = torch.randperm(len(updates), generator=torch.Generator().manual_seed(permutation_seed)).tolist()
    reference = {"w": torch.zeros(3), "b": torch.zeros(1)}

    # Execute
    expected = simulation_fedavg(updates)
    actual = fedavg([updates[i] for i in order], reference)

    # Assert
    assert serialize(actual) == serialize(expected)


def test_canonical_hash__equals_the_store_hash():
    updates, _ = random_updates(11, n=3)

    for s, _ in updates:
        assert canonical_hash(s) == hash_state(s)


# ----------------------------------------------------------------------------------------
# Preconditions


@pytest.mark.parametrize(("rule", "n", "params", "message"), [
    (krum, 4, {"num_byzantine": 1}, "krum needs n > 2f + 2"),
    (multi_krum, 6, {"num_byzantine": 2}, "multi_krum needs n > 2f + 2"),
    (multi_krum, 5, {"num_byzantine": 1, "num_selected": 0}, "multi_krum needs 1 <= m <= n"),
    (multi_krum, 5, {"num_byzantine": 1, "num_selected": 6}, "multi_krum needs 1 <= m <= n"),
    (bulyan, 6, {"num_byzantine": 1}, "bulyan needs n >= 4f + 3"),
    (trimmed_mean, 4, {"beta": 0.5}, "trimmed_mean needs 0 <= beta < 0.5"),
    (trimmed_mean, 4, {"num_byzantine": 2}, "trimmed_mean needs n - 2b >= 1"),
    (centered_clipping, 3, {"tau": 0.0}, "centered_clipping needs a finite tau > 0"),
    (centered_clipping, 3, {"iterations": 0}, "centered_clipping needs iterations >= 1"),
    (median, 3, {"num_byzantine": -1}, "num_byzantine must be an int >= 0"),
])
def test_rule__precondition_violated__value_error_names_the_rule(rule, n, params, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        rule(scalars(range(n)), ZERO, **params)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_rule__bad_inputs__value_error(name):
    rule = AGGREGATORS[name]
    with pytest.raises(ValueError, match=f"{name} needs at least one update"):
        rule([], ZERO)
    with pytest.raises(ValueError, match="positive int"):
        rule([(state([1.0]), 0)], ZERO)
    with pytest.raises(ValueError, match="reference's keys"):
        rule([({"w": torch.zeros(1)}, 1)], ZERO)
    with pytest.raises(ValueError, match="has shape"):
        rule([(state([1.0, 2.0]), 1)], ZERO)
    with pytest.raises(ValueError, match="NaN or infinite"):
        rule([(state([math.nan]), 1)], ZERO)


def test_registry__every_rule__one_call_shape_returns_a_float32_state():
    updates, reference = random_updates(9, n=7, outliers=1)

    for name, rule in AGGREGATORS.items():
        actual = rule(updates, reference, num_byzantine=1)

        assert sorted(actual) == sorted(reference), name
        assert all(v.dtype == torch.float32 and v.shape == reference[k].shape for k, v in actual.items()), name


def test_every_rule__one_or_two_torch_threads__identical_bytes():
    # Prepare: 33k coordinates, above torch's parallel grain size, so a thread-dependent
    # reduction would show
    updates, reference = random_updates(13, n=7, outliers=1, sizes=((33, 1000), (3,)))
    threads = torch.get_num_threads()

    for name, rule in AGGREGATORS.items():
        # Execute
        try:
            torch.set_num_threads(1)
            single = rule(updates, reference, num_byzantine=1)
            torch.set_num_threads(2)
            double = rule(updates, reference, num_byzantine=1)
        finally:
            torch.set_num_threads(threads)

        # Assert
        assert serialize(single) == serialize(double), name
