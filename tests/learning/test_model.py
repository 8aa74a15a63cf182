import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from torch import nn

from fl.learning.data import Split
from fl.learning.model import (
    MLP,
    Metrics,
    evaluate,
    init_model,
    load_state,
    score,
    state_of,
    train_local,
)
from fl.learning.store import serialize

NUM_FEATURES = 8


def distance(a, b) -> float:
    return math.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a))


def test_mlp__three_linear_layers_128_hidden__one_logit_per_row():
    # Prepare
    model = MLP(NUM_FEATURES)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]

    # Execute
    actual = model(torch.zeros(5, NUM_FEATURES))

    # Assert
    assert actual.shape == (5,)
    assert [(l.in_features, l.out_features) for l in linear] == [(8, 128), (128, 128), (128, 1)]


def test_init_model__same_seed__same_weights_and_global_rng_untouched():
    # Prepare
    rng_before = torch.random.get_rng_state()

    # Execute
    first, second, other = init_model(NUM_FEATURES, 3), init_model(NUM_FEATURES, 3), init_model(NUM_FEATURES, 4)

    # Assert
    assert serialize(state_of(first)) == serialize(state_of(second))
    assert serialize(state_of(first)) != serialize(state_of(other))
    assert torch.equal(torch.random.get_rng_state(), rng_before)


def test_train_local__same_seed__bit_identical(separable_train):
    # Prepare
    model = init_model(NUM_FEATURES, 0)

    # Execute
    first = train_local(model, separable_train, epochs=2, lr=1e-2, seed=5)
    second = train_local(model, separable_train, epochs=2, lr=1e-2, seed=5)
    other = train_local(model, separable_train, epochs=2, lr=1e-2, seed=6)

    # Assert
    assert serialize(first) == serialize(second)
    assert serialize(first) != serialize(other)


def test_train_local__returns_detached_float32__input_model_unchanged(separable_train):
    # Prepare
    model = init_model(NUM_FEATURES, 0)
    expected = serialize(state_of(model))

    # Execute
    state = train_local(model, separable_train, epochs=1, lr=1e-2, seed=0)

    # Assert
    assert serialize(state_of(model)) == expected
    assert serialize(state) != expected
    assert set(state) == set(model.state_dict())
    for value in state.values():
        assert value.dtype == torch.float32 and value.is_contiguous() and not value.requires_grad


def test_train_local__flipped_labels__worse_than_true_labels(separable_train, separable_val):
    # Prepare
    model = init_model(NUM_FEATURES, 0)

    # Execute
    honest = evaluate(train_local(model, separable_train, 10, 1e-2, seed=0), separable_val)
    flipped = evaluate(train_local(model, separable_train, 10, 1e-2, seed=0, flip_labels=True), separable_val)

    # Assert
    assert honest.accuracy > 0.9 and honest.auroc > 0.95
    assert flipped.accuracy < 0.2 and flipped.auroc < 0.1


def test_train_local__proximal_term__stays_closer_to_reference(separable_train):
    # Prepare
    model = init_model(NUM_FEATURES, 0)
    reference = state_of(model)

    # Execute
    free = train_local(model, separable_train, 10, 1e-2, seed=0)
    anchored = train_local(model, separable_train, 10, 1e-2, seed=0, proximal_to=reference, proximal_mu=10.0)

    # Assert
    assert distance(anchored, reference) < 0.5 * distance(free, reference)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"proximal_mu": 1.0}, "proximal_to"),
        ({"proximal_mu": -1.0}, "proximal_mu"),
    ],
)
def test_train_local__bad_arguments__raise(separable_train, kwargs, message):
    arguments = {"epochs": 1, "lr": 1e-3, "seed": 0, **kwargs}

    with pytest.raises(ValueError, match=message):
        train_local(init_model(NUM_FEATURES, 0), separable_train, **arguments)


def test_evaluate__known_split__matches_sklearn(separable_val):
    # Prepare
    model = init_model(NUM_FEATURES, 1)
    with torch.no_grad():
        probabilities = torch.sigmoid(model(separable_val.X)).numpy()
    y_true = separable_val.y.numpy()
    y_pred = (probabilities >= 0.5).astype(int)
    expected = Metrics(
        accuracy=accuracy_score(y_true, y_pred),
        balanced_accuracy=balanced_accuracy_score(y_true, y_pred),
        auroc=roc_auc_score(y_true, probabilities),
        loss=float(nn.functional.binary_cross_entropy(torch.from_numpy(probabilities), separable_val.y)),
    )

    # Execute: from the module and from its state dict
    from_module = evaluate(model, separable_val)
    from_state = evaluate(state_of(model), separable_val)

    # Assert
    for actual in (from_module, from_state):
        assert actual.accuracy == pytest.approx(expected.accuracy)
        assert actual.balanced_accuracy == pytest.approx(expected.balanced_accuracy)
        assert actual.auroc == pytest.approx(expected.auroc)
        assert actual.loss == pytest.approx(expected.loss, rel=1e-5)


def test_evaluate__hand_made_model__exact_metrics():
    # Prepare: logit = x, so predictions are x >= 0; one false positive of 4 rows
    model = MLP(1, hidden=1)
    state = {
        "layers.0.weight": torch.tensor([[1.0]]), "layers.0.bias": torch.tensor([0.0]),
        "layers.2.weight": torch.tensor([[1.0]]), "layers.2.bias": torch.tensor([0.0]),
        "layers.4.weight": torch.tensor([[1.0]]), "layers.4.bias": torch.tensor([0.0]),
    }
    model = load_state(model, state)
    split = Split(X=torch.tensor([[0.0], [1.0], [2.0], [3.0]]), y=torch.tensor([0.0, 0.0, 1.0, 1.0]))

    # Execute
    actual = evaluate(model, split)

    # Assert: x=0 gives sigmoid 0.5 -> predicted 1 (threshold is inclusive)
    assert actual.accuracy == 0.5
    assert actual.balanced_accuracy == 0.5
    assert actual.auroc == 1.0


def test_evaluate__one_class_split__auroc_nan_and_scored_as_half():
    # Prepare
    split = Split(X=torch.randn(6, NUM_FEATURES), y=torch.zeros(6))

    # Execute
    metrics = evaluate(init_model(NUM_FEATURES, 0), split)

    # Assert
    assert math.isnan(metrics.auroc)
    assert score(metrics, "auroc") == 0.5
    assert score(metrics, "accuracy") == metrics.accuracy


def test_score__unknown_name__raises():
    metrics = Metrics(accuracy=1.0, balanced_accuracy=1.0, auroc=1.0, loss=0.0)

    with pytest.raises(ValueError, match="score must be one of"):
        score(metrics, "f1")


def test_load_state__copy_with_state__template_unchanged():
    # Prepare
    template = init_model(NUM_FEATURES, 0)
    expected = state_of(init_model(NUM_FEATURES, 1))

    # Execute
    actual = load_state(template, expected)

    # Assert
    assert serialize(state_of(actual)) == serialize(expected)
    assert serialize(state_of(template)) != serialize(expected)


def test_train_local__thread_setting__not_changed(separable_train):
    expected = torch.get_num_threads()

    train_local(init_model(NUM_FEATURES, 0), separable_train, 1, 1e-3, seed=0)

    assert torch.get_num_threads() == expected


def test_metrics__numpy_free_floats(separable_val):
    actual = evaluate(init_model(NUM_FEATURES, 0), separable_val)

    assert all(type(v) is float for v in (actual.accuracy, actual.balanced_accuracy, actual.auroc, actual.loss))
    assert not any(isinstance(v, np.floating) for v in vars(actual).values())
