import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.defences.aggregate import fedavg
from fl.learning.store import serialize


def state(weight, bias):
    return {"w": torch.tensor(weight, dtype=torch.float32), "b": torch.tensor(bias, dtype=torch.float32)}


def test_fedavg__two_updates__hand_computed_weighted_mean():
    # Prepare: (1*[1, 2] + 3*[5, 10]) / 4 and (1*0 + 3*4) / 4
    updates = [(state([1.0, 2.0], [0.0]), 1), (state([5.0, 10.0], [4.0]), 3)]
    expected = state([4.0, 8.0], [3.0])

    # Execute
    actual = fedavg(updates)

    # Assert
    assert sorted(actual) == ["b", "w"]
    for name in expected:
        assert actual[name].dtype == torch.float32
        assert torch.equal(actual[name], expected[name])


def test_fedavg__single_update__returned_bit_exactly():
    # Prepare
    expected = {"w": torch.randn(4, 3, generator=torch.Generator().manual_seed(0))}

    # Execute
    actual = fedavg([(expected, 157)])

    # Assert
    assert serialize(actual) == serialize(expected)


def test_fedavg__float64_accumulation__better_than_naive_float32():
    # Prepare: 1e8 + 1 + ... is lost in float32 arithmetic but not in float64
    big = {"w": torch.tensor([1e8], dtype=torch.float32)}
    ones = [({"w": torch.tensor([float(i)], dtype=torch.float32)}, 1) for i in range(1, 4)]
    expected = torch.tensor([(1e8 + 1 + 2 + 3) / 4], dtype=torch.float64).to(torch.float32)

    # Execute
    actual = fedavg([(big, 1), *ones])["w"]

    # Assert
    assert torch.equal(actual, expected)


finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)
update_lists = st.lists(
    st.tuples(st.lists(finite_floats, min_size=3, max_size=3), st.integers(1, 10_000)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(updates=update_lists, data=st.data())
def test_fedavg__any_permutation__identical_bytes(updates, data):
    # Prepare
    as_states = [({"w": torch.tensor(values, dtype=torch.float32)}, count) for values, count in updates]
    shuffled = data.draw(st.permutations(as_states))

    # Execute
    expected = serialize(fedavg(as_states))
    actual = serialize(fedavg(shuffled))

    # Assert
    assert actual == expected


@settings(max_examples=30, deadline=None)
@given(updates=update_lists)
def test_fedavg__result__within_bounds_of_inputs(updates):
    # Prepare
    stacked = torch.tensor([values for values, _ in updates], dtype=torch.float32)
    as_states = [({"w": torch.tensor(values, dtype=torch.float32)}, count) for values, count in updates]

    # Execute
    actual = fedavg(as_states)["w"]

    # Assert: a weighted mean lies between the smallest and largest input
    assert torch.all(actual >= stacked.min(0).values) and torch.all(actual <= stacked.max(0).values)


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ([], "at least one"),
        ([(state([1.0], [0.0]), 0)], "positive int"),
        ([(state([1.0], [0.0]), -2)], "positive int"),
        ([(state([1.0], [0.0]), True)], "positive int"),
        ([(state([1.0], [0.0]), 1.5)], "positive int"),
        ([(state([1.0], [0.0]), 1), ({"w": torch.ones(1)}, 1)], "same keys"),
        ([(state([1.0], [0.0]), 1), (state([1.0, 2.0], [0.0]), 1)], "shape"),
    ],
)
def test_fedavg__bad_input__raises(updates, message):
    with pytest.raises(ValueError, match=message):
        fedavg(updates)
