"""Learning tasks the simulation can run: data, model, local training and evaluation.

- ``lending``: the paper's main task (Sec. 5): Lending Club, IID clients, the 3-layer MLP,
  binary cross-entropy; the voters' score is the config's ``score`` (default accuracy).
- ``fmnist``: the stand-in for the paper's Sec. 6 experiment: Fashion-MNIST split non-IID
  with a Dirichlet label partition (``dirichlet_alpha``; inf = IID), a small CNN with
  instance-normalised inputs, cross-entropy; voters score with the mean one-vs-rest AUROC
  over the classes, which is also the reported ``auroc`` metric.
- ``chestxray``: the paper's own Sec. 6 data for users who have the NIH images (pass the
  folder as ``data_file``): 10 findings, multi-label, binary cross-entropy per finding,
  mean AUROC over the findings.

The round loop only talks to a ``Task``: ``load(config)``, ``make_model(data, seed)``,
``train(model, split, epochs=, lr=, seed=, flip_labels=, proximal_to=, proximal_mu=)`` with
the signature of ``fl.learning.model.train_local``, ``evaluate(model, split) -> fl.learning.model.Metrics``
and ``score_name(config)``. The lending task is exactly the functions of ``fl.learning.data`` and
``fl.learning.model``, so its results do not change.

The label attack (``flip_labels=True``, the paper's "wrong labels") is ``1 - y`` for
binary and multi-label targets and the reversed class order ``C - 1 - y`` for multi-class
targets: every label is wrong, and for two classes it is the binary flip.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from torch import nn

from fl.learning.data import FederatedData, Split, load_lending_club, make_federated_data
from fl.learning.model import Metrics, check_training_args, evaluate, fit, init_model, state_of, train_local

TASKS = ("lending", "fmnist", "chestxray")
# Mini-batch of local image training. 160 training images per client (the default 200
# per client less the 20% validation split) give 5 Adam steps per local epoch.
IMAGE_BATCH_SIZE = 32
DEFAULT_SAMPLES_PER_CLIENT = 200
FMNIST_TEST_SIZE = 2000
CHESTXRAY_IMAGE_SIZE = 64
CHESTXRAY_TEST_SIZE = 2000


# ----------------------------------------------------------------------------------------
# Image training and evaluation


def attack_labels(y: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """The wrong labels a poisoning proposer trains on.

    Float targets (binary (N,) or multi-label (N, K)): ``1 - y``. Class ids (int64):
    ``num_classes - 1 - y`` (a fixed permutation with no fixed point for even C).
    """
    if y.dtype.is_floating_point:
        return 1.0 - y
    if num_classes is None:
        raise ValueError("class-id labels need num_classes to be attacked")
    return (num_classes - 1) - y


def _is_multilabel(split: Split) -> bool:
    return split.y.dtype.is_floating_point and split.y.ndim == 2


def train_images(
    model: nn.Module,
    split: Split,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = IMAGE_BATCH_SIZE,
    flip_labels: bool = False,
    proximal_to: Mapping[str, torch.Tensor] | None = None,
    proximal_mu: float = 0.0,
) -> dict[str, torch.Tensor]:
    """``fl.learning.model.train_local`` for image classifiers (``model`` is untouched).

    Cross-entropy for class ids, binary cross-entropy per finding for multi-label targets;
    Adam with a fresh state; batches in the order of a generator seeded with ``seed``.
    ``flip_labels`` trains on ``attack_labels(y)``; ``proximal_to``/``proximal_mu`` add
    FedProx's ``mu/2 * ||w - w_ref||^2`` as in ``train_local``.
    """
    check_training_args(epochs, lr, batch_size, len(split), proximal_to, proximal_mu)
    local = copy.deepcopy(model)
    local.train()
    multilabel = _is_multilabel(split)
    targets = split.y
    if flip_labels:
        targets = attack_labels(split.y, None if multilabel else _num_outputs(local, split))
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
    return fit(local, split.X, targets, loss_fn, epochs, lr, seed, batch_size, proximal_to, proximal_mu)


def _num_outputs(model: nn.Module, split: Split) -> int:
    with torch.no_grad():
        was_training = model.training
        model.eval()
        outputs = model(split.X[:1])
        model.train(was_training)
    return int(outputs.shape[-1])


EVAL_BATCH_SIZE = 1024


def predict(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` on ``X`` in eval mode, in batches (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(X[i:i + EVAL_BATCH_SIZE]) for i in range(0, len(X), EVAL_BATCH_SIZE)])
    model.train(was_training)
    return logits.to(torch.float32)


def mean_auroc(indicators: np.ndarray, scores: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the columns that hold both a positive and a negative;
    ``nan`` when no column does.

    Each column's AUROC is the Mann-Whitney statistic on average ranks, which is exactly
    the area under the ROC curve with ties counted half (what scikit-learn's
    ``roc_auc_score(..., average="macro")`` returns; tests/learning/test_images.py checks the
    two agree). It is computed for all columns at once: about 20x faster than
    scikit-learn's per-column curves, which matters because every voter scores every
    aggregate.
    """
    indicators = np.asarray(indicators)
    scores = np.asarray(scores, dtype=np.float64)
    usable = (indicators.min(axis=0) == 0) & (indicators.max(axis=0) == 1)
    if not usable.any():
        return math.nan
    positives = indicators[:, usable].astype(np.float64)
    ranks = rankdata(scores[:, usable], axis=0)
    n_pos = positives.sum(axis=0)
    n_neg = len(positives) - n_pos
    per_column = ((ranks * positives).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(per_column.mean())


def evaluate_images(model: nn.Module, split: Split) -> Metrics:
    """Accuracy, balanced accuracy, mean one-vs-rest AUROC and mean loss of an image model.

    Class ids: top-1 accuracy, mean per-class recall, AUROC of each class's softmax
    probability against the rest, averaged over the classes present (with at least one
    other class present). Multi-label: per-finding accuracy and balanced accuracy at
    sigmoid >= 0.5 averaged over findings, AUROC averaged over the findings with both
    outcomes in the split. A non-IID validation split often lacks some classes; their
    AUROC is undefined and left out of the mean.
    """
    if len(split) == 0:
        raise ValueError("cannot evaluate on an empty split")
    logits = predict(model, split.X)
    if _is_multilabel(split):
        loss = float(nn.functional.binary_cross_entropy_with_logits(logits, split.y))
        probabilities = torch.sigmoid(logits).numpy().astype(np.float64)
        y_true = split.y.numpy().astype(np.int64)
        y_pred = (probabilities >= 0.5).astype(np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # single-outcome findings warn but are defined
            balanced = float(np.mean([
                balanced_accuracy_score(y_true[:, k], y_pred[:, k]) for k in range(y_true.shape[1])
            ]))
        return Metrics(
            accuracy=float((y_true == y_pred).mean()),
            balanced_accuracy=balanced,
            auroc=mean_auroc(y_true, probabilities),
            loss=loss,
        )
    loss = float(nn.functional.cross_entropy(logits, split.y))
    probabilities = torch.softmax(logits, dim=1).numpy().astype(np.float64)
    y_true = split.y.numpy().astype(np.int64)
    indicators = np.eye(probabilities.shape[1], dtype=np.int64)[y_true]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        balanced = float(balanced_accuracy_score(y_true, probabilities.argmax(axis=1)))
    return Metrics(
        accuracy=float(accuracy_score(y_true, probabilities.argmax(axis=1))),
        balanced_accuracy=balanced,
        auroc=mean_auroc(indicators, probabilities),
        loss=loss,
    )


# ----------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class Task:
    """What the round loop needs to know about a learning task (see the module docstring)."""

    name: str
    load: Callable[[Any], FederatedData]
    make_model: Callable[[FederatedData, int], nn.Module]
    train: Callable[..., dict[str, torch.Tensor]]
    evaluate: Callable[[nn.Module, Split], Metrics]
    fixed_score: str | None = None  # the voters' score when the task fixes it

    def score_name(self, config: Any) -> str:
        """The validation score the voters compare: the task's own, else ``config.score``."""
        return self.fixed_score or config.score


def _load_lending(config: Any) -> FederatedData:
    return make_federated_data(load_lending_club(config.data_file), config.clients, config.seed)


def _lending_model(data: FederatedData, seed: int) -> nn.Module:
    return init_model(data.num_features, seed)


def _samples_per_client(config: Any) -> int:
    return int(getattr(config, "samples_per_client", DEFAULT_SAMPLES_PER_CLIENT))


def _load_fmnist(config: Any) -> FederatedData:
    from fl.learning.images import fashion_mnist_federated

    return fashion_mnist_federated(
        config.clients, _samples_per_client(config), float(config.dirichlet_alpha), config.seed,
        test_size=FMNIST_TEST_SIZE, root=config.data_file,
    )


def _load_chestxray(config: Any) -> FederatedData:
    from fl.learning.data import DataError
    from fl.learning.images import chestxray_federated

    if not config.data_file:
        raise DataError(
            "the chestxray task needs the ChestX-ray14 folder (Data_Entry_2017.csv + images/) "
            "as --data-file; it cannot be installed here, use --task fmnist instead"
        )
    return chestxray_federated(
        config.data_file, config.clients, _samples_per_client(config), float(config.dirichlet_alpha),
        config.seed, test_size=CHESTXRAY_TEST_SIZE, image_size=CHESTXRAY_IMAGE_SIZE,
    )


def _image_model(model_name: str | None = None) -> Callable[[FederatedData, int], nn.Module]:
    def make(data: FederatedData, seed: int) -> nn.Module:
        from fl.learning.cnn import make_cnn

        return make_cnn(model_name or "cnn", data.image_shape[0], data.num_classes, seed)  # type: ignore[attr-defined]

    return make


def get_task(name: str, model: str = "cnn") -> Task:
    """The task ``name`` ("lending", "fmnist" or "chestxray"); ``model`` picks the image
    network ("cnn" or "densenet121"; ignored for lending)."""
    if name == "lending":
        return Task("lending", _load_lending, _lending_model, train_local, evaluate)
    if name == "fmnist":
        return Task("fmnist", _load_fmnist, _image_model(model), train_images, evaluate_images, "auroc")
    if name == "chestxray":
        return Task("chestxray", _load_chestxray, _image_model(model), train_images, evaluate_images, "auroc")
    raise ValueError(f"task must be one of {TASKS}, got {name!r}")


def task_of(config: Any) -> Task:
    """The task a ``SimulationConfig`` asks for (its ``task`` and ``model`` fields)."""
    return get_task(getattr(config, "task", "lending"), getattr(config, "model", "cnn"))


def initial_state(task: Task, data: FederatedData, seed: int) -> dict[str, torch.Tensor]:
    """The state of the run's initial global model (what the chain records at deployment)."""
    return state_of(task.make_model(data, seed))
