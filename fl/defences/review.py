"""Per-proposal review: one voter's accept/reject verdict on each proposal of a round.

Protocol v2 (issue 11) lets a voter cast one verdict per proposal (a bit mask). This module
decides those verdicts. It is pure numerics on tensors and floats and imports nothing from
``fl``: the caller computes the inputs (``ReviewInputs``) and gets back one bool per
proposal, in proposal order (True = accept). A malicious voter's inversion is NOT done here.

What the caller computes, all on the voter's own private data, for P proposals:

- ``proposal_losses`` (P, N): per-example loss of each proposal's model (global + update) on
  the voter's N validation rows, with a proper scoring rule: ``per_example_log_loss`` or
  ``per_example_brier`` below (binary logits (N,) or class logits (N, C), or multi-label).
- ``global_losses`` (N,): the same for the current global model (the round's parent).
- ``proposal_updates`` (P, D): each proposal's parameters minus the global model's, flattened
  in one fixed parameter order (``flatten_parameters``).
- ``own_update`` (D,): the voter's own update from the same global model on its own TRAINING
  split, with the proposers' local training (optimiser, lr, batch size) for
  ``OWN_UPDATE_EPOCHS`` x the proposers' local epochs, flattened in the same order. (One epoch,
  the issue's crude rule, is a much noisier reference: docs/REVIEW_STUDY.md.)
- ``reference_norm`` (float, for the norm cap): the norm of the voter's own update trained
  exactly like a proposer's (the proposers' local epochs).
- For the comparison rules only: ``median_losses`` (the coordinate-wise median of the P
  proposals' parameters), ``aggregate_losses`` and ``without_losses`` (P, N) (FedAvg of all
  proposals and of all but proposal i), and for the paper's rule the two scalar scores.

``stacked_logits`` evaluates many parameter vectors in one batched forward pass
(``torch.func.functional_call`` + ``vmap``), which is how a voter scores P proposals at the
cost of about one forward pass.

The rules (``POLICIES``: name -> pure function of ``ReviewInputs`` and keyword parameters):

- ``aggregate``: the paper's voter (Dong et al., IEEE TAI 2024, Eq. 2): a uniform ballot,
  accept every proposal iff score(FedAvg of all proposals) >= score(global) - epsilon.
- ``loss_vs_global``: accept proposal i iff its mean loss is not worse than the global
  model's by more than ``k`` standard errors of the paired per-example differences (the
  voter's own noise: the bootstrap spread of the mean difference on its split, in closed
  form). k = 0: strictly no worse on average.
- ``loss_vs_median``: the same against the coordinate-wise median model of the round (the
  reference of coordinate-wise-median robust aggregation, Yin et al., ICML 2018).
- ``leave_one_out``: accept iff adding proposal i to the aggregate of the others does not
  make it worse beyond ``k`` standard errors (the loss-based rejection of Fang et al.,
  USENIX Security 2020, "Local model poisoning attacks to Byzantine-robust FL", LONR).
- ``cosine``: accept iff cos(update_i, own_update) > ``threshold`` (FLTrust, Cao et al.,
  NDSS 2021: a trusted root data set gives the reference direction; here every voter is its
  own root, so no party is trusted).
- ``cosine_or_loss`` / ``cosine_and_loss``: the direction test combined with
  ``loss_vs_global`` (accept if either / both pass).

A verdict that needs an input the caller did not give raises ``ValueError`` (one line).

Chosen by measurement (docs/REVIEW_STUDY.md, Lending Club, label flipping, ratios 0.1-0.4):
``RECOMMENDED_POLICY`` = ``cosine`` with threshold -0.1 and a norm cap of 2, the voter's
``own_update`` trained for ``OWN_UPDATE_EPOCHS`` = 20 local epochs (the proposers' optimiser,
lr and batch size; one proposer epoch on its training split gives ``reference_norm``). Loss
tests on a 31-row validation split were too noisy to separate one-step updates. The norm floor
of 0.1 (issue 12: a free rider's zero update passed the rest) sits far below every honest
update seen: ||update|| / reference_norm was 0.96-1.03 on Lending Club and 0.60-1.53 on
Fashion-MNIST (alpha 0.5), label flipping at ratio 0.4, seed 0, every voter x honest proposal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = [
    "ReviewInputs", "POLICIES", "REQUIRED_INPUTS", "review",
    "RECOMMENDED_POLICY", "RECOMMENDED_PARAMETERS", "OWN_UPDATE_EPOCHS",
    "aggregate", "loss_vs_global", "loss_vs_median", "leave_one_out", "cosine",
    "cosine_or_loss", "cosine_and_loss",
    "paired_excess", "cosine_similarities",
    "per_example_log_loss", "per_example_brier", "flatten_parameters", "stacked_logits",
]


@dataclass(frozen=True)
class ReviewInputs:
    """One voter's view of one round (P proposals, N validation rows, D parameters).

    Losses: lower is better, one per validation row. Scores (paper's rule): higher is better.
    Only the fields the chosen policy needs must be set (``REQUIRED_INPUTS``).
    """

    proposal_count: int
    proposal_losses: torch.Tensor | None = None  # (P, N)
    global_losses: torch.Tensor | None = None  # (N,)
    median_losses: torch.Tensor | None = None  # (N,)
    aggregate_losses: torch.Tensor | None = None  # (N,)
    without_losses: torch.Tensor | None = None  # (P, N): FedAvg of all proposals but i
    proposal_updates: torch.Tensor | None = None  # (P, D)
    own_update: torch.Tensor | None = None  # (D,)
    reference_norm: float | None = None  # norm of the voter's own proposer-like update (norm cap)
    aggregate_score: float | None = None
    global_score: float | None = None


def _need(inputs: ReviewInputs, *names: str) -> None:
    missing = [n for n in names if getattr(inputs, n) is None]
    if missing:
        raise ValueError(f"this review policy needs {', '.join(missing)} in ReviewInputs")
    if inputs.proposal_count < 0:
        raise ValueError(f"proposal_count must be >= 0, got {inputs.proposal_count}")


def _check_rows(losses: torch.Tensor, reference: torch.Tensor, count: int) -> None:
    if losses.ndim != 2 or losses.shape[0] != count:
        raise ValueError(f"losses must have shape (P={count}, N), got {tuple(losses.shape)}")
    if reference.ndim == 1:
        reference = reference.unsqueeze(0)
    if reference.shape[-1] != losses.shape[1]:
        raise ValueError(f"losses cover {losses.shape[1]} rows but the reference covers {reference.shape[-1]}")
    if losses.shape[1] < 2:
        raise ValueError("a loss test needs at least 2 validation rows")


# ------------------------------------------------------------------------------------------
# Building blocks


def paired_excess(losses: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, standard error) over rows of ``losses - reference`` for each of the P models.

    ``losses`` (P, N); ``reference`` (N,) or (P, N). The standard error std(d, ddof=1)/sqrt(N)
    is the large-sample bootstrap spread of the mean paired difference on the voter's split.
    Computed in float64.
    """
    difference = losses.to(torch.float64) - reference.to(torch.float64)
    rows = difference.shape[1]
    return difference.mean(dim=1), difference.std(dim=1, unbiased=True) / math.sqrt(rows)


def cosine_similarities(updates: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """cos(update_i, reference) for each row of ``updates`` (P, D); 0 where a norm is 0."""
    if updates.ndim != 2 or reference.ndim != 1 or updates.shape[1] != reference.shape[0]:
        raise ValueError(f"updates (P, D) and reference (D,) do not match: {tuple(updates.shape)} vs {tuple(reference.shape)}")
    updates = updates.to(torch.float64)
    reference = reference.to(torch.float64)
    norms = updates.norm(dim=1) * reference.norm()
    dots = updates @ reference
    return torch.where(norms > 0, dots / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(dots))


def per_example_log_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-loss per example (a proper scoring rule). Works on a leading model axis too.

    - binary: logits (..., N), targets (N,) float 0/1;
    - multi-class: logits (..., N, C), targets (N,) int64 class ids (cross-entropy);
    - multi-label: logits (..., N, K), targets (N, K) float 0/1 (mean over the K labels).
    """
    if targets.dtype.is_floating_point:
        target = targets.to(logits.dtype).expand_as(logits)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return loss.mean(dim=-1) if targets.ndim == 2 else loss
    log_probabilities = torch.log_softmax(logits, dim=-1)
    index = targets.reshape((1,) * (logits.ndim - 2) + (-1, 1)).expand(*logits.shape[:-1], 1)
    return -log_probabilities.gather(-1, index).squeeze(-1)


def per_example_brier(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Brier score per example (squared error of the predicted probabilities), same shapes as
    ``per_example_log_loss``; multi-class: sum over classes of (p_c - [y = c])^2."""
    if targets.dtype.is_floating_point:
        squared = (torch.sigmoid(logits) - targets.to(logits.dtype)) ** 2
        return squared.mean(dim=-1) if targets.ndim == 2 else squared
    probabilities = torch.softmax(logits, dim=-1)
    onehot = nn.functional.one_hot(targets, probabilities.shape[-1]).to(probabilities.dtype)
    return ((probabilities - onehot) ** 2).sum(dim=-1)


def flatten_parameters(state: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """The tensors ``state[name]`` for ``name`` in ``names``, flattened and concatenated (float32)."""
    return torch.cat([state[name].detach().reshape(-1).to(torch.float32) for name in names])


def stacked_logits(model: nn.Module, flat_parameters: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Outputs of ``model`` for each row of ``flat_parameters`` (M, D) on inputs X, in one
    batched call (``torch.func.functional_call`` vmapped over the model axis). Returns (M, ...).

    The flat order is ``model.named_parameters()`` (as ``flatten_parameters`` with those names);
    the model's buffers are shared. The model is put in eval mode for the call (mode restored).
    """
    names, shapes = zip(*[(n, p.shape) for n, p in model.named_parameters()])
    sizes = [math.prod(s) for s in shapes]
    if flat_parameters.ndim != 2 or flat_parameters.shape[1] != sum(sizes):
        raise ValueError(f"flat_parameters must be (M, {sum(sizes)}), got {tuple(flat_parameters.shape)}")
    buffers = dict(model.named_buffers())

    def forward(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, sizes)
        parameters = {n: piece.view(s) for n, piece, s in zip(names, pieces, shapes)}
        return torch.func.functional_call(model, (parameters, buffers), (X,))

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.func.vmap(forward)(flat_parameters.to(torch.float32))
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------------------
# Policies: ReviewInputs -> one verdict per proposal (True = accept)


def aggregate(inputs: ReviewInputs, epsilon: float = 0.01) -> list[bool]:
    """The paper's voter: the same verdict on every proposal, from the aggregate's score.

    Accept all iff aggregate_score >= global_score - epsilon (Dong et al. 2024, Eq. 2).
    """
    _need(inputs, "aggregate_score", "global_score")
    if epsilon < 0 or math.isnan(epsilon):
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if math.isnan(inputs.aggregate_score) or math.isnan(inputs.global_score):
        raise ValueError("scores must not be NaN")
    verdict = inputs.aggregate_score >= inputs.global_score - epsilon
    return [verdict] * inputs.proposal_count


def _loss_test(losses: torch.Tensor, reference: torch.Tensor, count: int, k: float) -> list[bool]:
    if k < 0 or math.isnan(k):
        raise ValueError(f"k (standard errors of tolerance) must be >= 0, got {k}")
    if count == 0:
        return []
    _check_rows(losses, reference, count)
    mean, standard_error = paired_excess(losses, reference)
    return [bool(ok) for ok in (mean <= k * standard_error)]


def loss_vs_global(inputs: ReviewInputs, k: float = 1.0) -> list[bool]:
    """Accept proposal i iff mean(loss_i - loss_global) <= k * SE (paired, on the voter's rows)."""
    _need(inputs, "proposal_losses", "global_losses")
    return _loss_test(inputs.proposal_losses, inputs.global_losses, inputs.proposal_count, k)


def loss_vs_median(inputs: ReviewInputs, k: float = 1.0) -> list[bool]:
    """Accept proposal i iff mean(loss_i - loss_median_model) <= k * SE."""
    _need(inputs, "proposal_losses", "median_losses")
    return _loss_test(inputs.proposal_losses, inputs.median_losses, inputs.proposal_count, k)


def leave_one_out(inputs: ReviewInputs, k: float = 1.0) -> list[bool]:
    """Accept proposal i iff mean(loss_aggregate - loss_aggregate_without_i) <= k * SE.

    With one proposal, "without it" is the global model (the caller passes global_losses as
    the only row of without_losses).
    """
    _need(inputs, "aggregate_losses", "without_losses")
    count = inputs.proposal_count
    if count == 0:
        return []
    with_all = inputs.aggregate_losses.reshape(1, -1).expand(count, -1)
    _check_rows(inputs.without_losses, with_all, count)
    return _loss_test(with_all, inputs.without_losses, count, k)


def cosine(
    inputs: ReviewInputs,
    threshold: float = 0.0,
    max_norm_ratio: float | None = None,
    min_norm_ratio: float | None = None,
    median_ratio: float | None = None,
) -> list[bool]:
    """Accept proposal i iff cos(update_i, own_update) > threshold (FLTrust's direction test,
    Cao et al. NDSS 2021, with the voter's own update as the root) and, when
    ``max_norm_ratio`` is given, ||update_i|| <= max_norm_ratio * reference_norm, and, when
    ``min_norm_ratio`` is given, ||update_i|| >= min_norm_ratio * reference_norm, and, when
    ``median_ratio`` is given, cos_i > median_ratio * the median cosine of the round's proposals
    within the norm bounds (a relative test: an update that learns the voter's task far less than
    the round's typical proposal, such as a backdoored one, fails it while its cosine is still > 0).

    The norm cap stands in for FLTrust's rescaling (the protocol's FedAvg cannot rescale): a
    negative threshold admits updates orthogonal to every honest direction, and without the
    cap such an update could be arbitrarily large. The norm floor rejects an update that does
    (almost) nothing: a free rider's resubmitted global model has update 0, whose cosine with
    anything is 0 (> a negative threshold), and FedAvg would give it a proposer's weight.
    """
    _need(inputs, "proposal_updates", "own_update")
    if not -1.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [-1, 1), got {threshold}")
    for name, ratio in (("max_norm_ratio", max_norm_ratio), ("min_norm_ratio", min_norm_ratio)):
        if ratio is not None:
            _need(inputs, "reference_norm")
            if not ratio > 0 or not inputs.reference_norm > 0:
                raise ValueError(f"{name} and reference_norm must be positive")
    if median_ratio is not None and not 0.0 < median_ratio < 1.0:
        raise ValueError(f"median_ratio must lie in (0, 1), got {median_ratio}")
    if None not in (max_norm_ratio, min_norm_ratio) and min_norm_ratio > max_norm_ratio:
        raise ValueError(f"min_norm_ratio ({min_norm_ratio}) must not exceed max_norm_ratio ({max_norm_ratio})")
    if inputs.proposal_count == 0:
        return []
    if inputs.proposal_updates.shape[0] != inputs.proposal_count:
        raise ValueError(f"proposal_updates has {inputs.proposal_updates.shape[0]} rows for {inputs.proposal_count} proposals")
    cosines = cosine_similarities(inputs.proposal_updates, inputs.own_update)
    norms = inputs.proposal_updates.to(torch.float64).norm(dim=1)
    in_bounds = torch.ones_like(norms, dtype=torch.bool)
    if max_norm_ratio is not None:
        in_bounds &= norms <= max_norm_ratio * float(inputs.reference_norm)
    if min_norm_ratio is not None:
        in_bounds &= norms >= min_norm_ratio * float(inputs.reference_norm)
    accept = (cosines > threshold) & in_bounds
    if median_ratio is not None and bool(in_bounds.any()):
        accept &= cosines > median_ratio * float(torch.quantile(cosines[in_bounds], 0.5))  # mean of the middle two
    return [bool(ok) for ok in accept]


def cosine_or_loss(inputs: ReviewInputs, threshold: float = 0.0, k: float = 1.0) -> list[bool]:
    """Accept iff the direction test OR the loss test (``loss_vs_global`` with k) passes."""
    return [a or b for a, b in zip(cosine(inputs, threshold), loss_vs_global(inputs, k), strict=True)]


def cosine_and_loss(inputs: ReviewInputs, threshold: float = 0.0, k: float = 1.0) -> list[bool]:
    """Accept iff the direction test AND the loss test (``loss_vs_global`` with k) pass."""
    return [a and b for a, b in zip(cosine(inputs, threshold), loss_vs_global(inputs, k), strict=True)]


Policy = Callable[..., list[bool]]

POLICIES: dict[str, Policy] = {
    "aggregate": aggregate,
    "loss_vs_global": loss_vs_global,
    "loss_vs_median": loss_vs_median,
    "leave_one_out": leave_one_out,
    "cosine": cosine,
    "cosine_or_loss": cosine_or_loss,
    "cosine_and_loss": cosine_and_loss,
}

REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "aggregate": ("aggregate_score", "global_score"),
    "loss_vs_global": ("proposal_losses", "global_losses"),
    "loss_vs_median": ("proposal_losses", "median_losses"),
    "leave_one_out": ("aggregate_losses", "without_losses"),
    "cosine": ("proposal_updates", "own_update"),
    "cosine_or_loss": ("proposal_updates", "own_update", "proposal_losses", "global_losses"),
    "cosine_and_loss": ("proposal_updates", "own_update", "proposal_losses", "global_losses"),
}


RECOMMENDED_POLICY = "cosine"
RECOMMENDED_PARAMETERS: dict[str, float] = {"threshold": -0.1, "max_norm_ratio": 2.0, "min_norm_ratio": 0.1}
OWN_UPDATE_EPOCHS = 20  # local epochs of the voter's own reference update (lending, 1-epoch proposers)


def review(policy: str, inputs: ReviewInputs, **parameters: float) -> list[bool]:
    """The verdicts of ``POLICIES[policy]`` on ``inputs`` (one bool per proposal, True = accept)."""
    if policy not in POLICIES:
        raise ValueError(f"review policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    verdicts = POLICIES[policy](inputs, **parameters)
    if len(verdicts) != inputs.proposal_count:
        raise ValueError(f"{policy} gave {len(verdicts)} verdicts for {inputs.proposal_count} proposals")
    return verdicts
