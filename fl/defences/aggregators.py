"""Robust aggregation rules that every voter computes to the same bits.

One call shape for all, so a benchmark grid is a loop over ``AGGREGATORS``::

    new_state = AGGREGATORS[name](updates, reference, num_byzantine=f, **params)

``updates`` is a sequence of ``(state_dict, sample_count)`` pairs in ANY order (each
state is a proposer's full proposed model, not a difference), ``reference`` is the
global model the round started from, ``num_byzantine`` is the ``f`` the rule is told to
tolerate (rules that have no ``f`` accept and ignore it). The result is a new float32
state dict with the keys of ``reference``.

| key | rule | paper |
| --- | --- | --- |
| ``fedavg`` | sample-weighted mean | McMahan et al. 2017; recipe of ``fl/aggregate.py`` |
| ``median`` | coordinate-wise median | Yin et al. 2018 |
| ``trimmed_mean`` | coordinate-wise beta-trimmed mean | Yin et al. 2018 |
| ``krum`` | the proposal closest to its n - f - 2 neighbours | Blanchard et al. 2017 |
| ``multi_krum`` | mean of the m best Krum scores | Blanchard et al. 2017 |
| ``bulyan`` | iterated Krum, then a trimmed mean around the median | El Mhamdi et al. 2018 |
| ``centered_clipping`` | clipped mean of updates around a centre | Karimireddy et al. 2021 |

Bit-exactness. Floating-point addition is not associative, and a voter receives the
proposals in whatever order it fetched them, so every rule first sorts the inputs into a
canonical order that depends only on their content: the sha256 of each state's
canonical safetensors bytes (sorted keys, contiguous float32 CPU tensors, no metadata:
the bytes ``fl.store.serialize`` writes), then its count. All arithmetic after that is in
float64 with element-wise torch ops in a fixed order (sequential row sums; a vector's
squared norm is the last entry of a ``cumsum``, a sequential scan) so no reduction
depends on the number of threads; the result is cast to float32 once. Scores are
compared with ties broken by the canonical index. So the output is a function of the
*set* of (state, count) pairs only: the same bytes for every honest voter.

Sample counts are a proposer's claim, hence hostile input: only ``fedavg`` (and
``multi_krum(weighted=True)``) weights by them; the robust rules ignore them, as in the
papers. Every input must be finite (``ValueError`` otherwise).

Conventions and where they differ from Flower's ``flwr/server/strategy/aggregate.py``
(the tests check each rule against an independent numpy restatement of Flower's
functions, and against the papers' formulas):

- ``median``: mean of the two middle values for an even count (Yin et al.; Flower's
  ``np.median`` does the same, torch's ``median`` would not).
- ``trimmed_mean``: ``floor(beta * n)`` values cut at each end (Flower's ``int(p * n)``);
  with ``beta=None`` exactly ``f`` are cut (ByzFL's ``TrMean_f``).
- ``krum``: n - f - 2 neighbours, as in the paper and Flower; the paper's precondition
  n > 2f + 2 is enforced (Flower does not check it).
- ``multi_krum``: the paper averages the m selected vectors with equal weights (so does
  ByzFL); Flower's ``aggregate_krum(to_keep=m)`` weights them by sample count
  (``weighted=True`` here). Default m = n - f (ByzFL, El Mhamdi et al.).
- ``bulyan``: as the paper and Flower (n >= 4f + 3; theta = n - 2f Krum picks, each on the
  set left; beta = theta - 2f values closest to the coordinate-wise median). Where the
  shrinking set leaves Krum fewer than one neighbour the paper is silent; like Flower we
  use one. Equidistant values are broken towards the smaller value (Flower's
  ``argpartition`` leaves that to numpy).
- ``centered_clipping``: not in Flower; ByzFL's formula, centred at the previous global
  update (the paper's momentum) instead of ByzFL's zero.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from safetensors.torch import save as safetensors_save

StateDict = Mapping[str, torch.Tensor]
Updates = Sequence[tuple[StateDict, int]]

# Centered clipping: radius tau and inner iterations L. L = 1 as ByzFL's default and the
# paper's experiments; tau must match the scale of the updates (ByzFL's default 100 never
# clips this project's updates, whose norms are a few units), so 10 is our default.
DEFAULT_CLIPPING_TAU = 10.0
DEFAULT_CLIPPING_ITERATIONS = 1


# ----------------------------------------------------------------------------------------
# Canonical order, validation, flattening


def canonical_bytes(state: StateDict) -> bytes:
    """The safetensors bytes ``fl.store.serialize`` writes for ``state`` (same values,
    same bytes): sorted keys, contiguous float32 CPU tensors, no metadata."""
    canonical = {
        name: state[name].detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
        for name in sorted(state)
    }
    return safetensors_save(canonical, metadata=None)


def canonical_hash(state: StateDict) -> bytes:
    """sha256 of ``canonical_bytes(state)`` (equals ``fl.store.hash_state``)."""
    return hashlib.sha256(canonical_bytes(state)).digest()


def canonical_order(updates: Updates) -> list[tuple[StateDict, int]]:
    """``updates`` sorted by (content hash, count): the same list whatever the input order."""
    keyed = sorted(
        ((canonical_hash(state), count, index) for index, (state, count) in enumerate(updates)),
        key=lambda entry: (entry[0], entry[1]),
    )
    return [(updates[index][0], updates[index][1]) for _, _, index in keyed]


def _validate(rule: str, updates: Updates, reference: StateDict, num_byzantine: int) -> None:
    if len(updates) == 0:
        raise ValueError(f"{rule} needs at least one update")
    if not reference:
        raise ValueError(f"{rule} needs a non-empty reference state")
    if isinstance(num_byzantine, bool) or not isinstance(num_byzantine, int) or num_byzantine < 0:
        raise ValueError(f"{rule}: num_byzantine must be an int >= 0, got {num_byzantine!r}")
    names = set(reference)
    for state, count in updates:
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"{rule}: every sample count must be a positive int, got {count!r}")
        if set(state) != names:
            raise ValueError(
                f"{rule}: every update must have the reference's keys: {sorted(state)} vs {sorted(names)}"
            )
        for name, value in state.items():
            if tuple(value.shape) != tuple(reference[name].shape):
                raise ValueError(
                    f"{rule}: {name} has shape {tuple(value.shape)}, the reference has "
                    f"{tuple(reference[name].shape)}"
                )
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{rule}: {name} holds NaN or infinite values")


def _flat64(state: StateDict, names: list[str]) -> torch.Tensor:
    return torch.cat([state[name].detach().to(device="cpu", dtype=torch.float64).reshape(-1) for name in names])


def _stack(ordered: list[tuple[StateDict, int]], names: list[str]) -> torch.Tensor:
    """(n, d) float64: each state flattened in ``names`` order."""
    return torch.stack([_flat64(state, names) for state, _ in ordered])


def _unflatten(vector: torch.Tensor, reference: StateDict, names: list[str]) -> dict[str, torch.Tensor]:
    """float64 vector -> float32 state dict shaped like ``reference`` (one cast)."""
    out, offset = {}, 0
    for name in names:
        shape = tuple(reference[name].shape)
        size = math.prod(shape)
        out[name] = vector[offset:offset + size].reshape(shape).to(torch.float32).contiguous()
        offset += size
    return out


def _copy_state(state: StateDict, names: list[str]) -> dict[str, torch.Tensor]:
    return {name: state[name].detach().to(device="cpu", dtype=torch.float32).contiguous().clone() for name in names}


def _row_sum(rows: torch.Tensor) -> torch.Tensor:
    """Sum of the rows of a (k, d) float64 tensor, added one row at a time."""
    total = torch.zeros(rows.shape[1], dtype=torch.float64)
    for row in rows:
        total += row
    return total


def _squared_norm(vector: torch.Tensor) -> float:
    """Sum of squares by a sequential scan (``cumsum``): no thread-dependent reduction."""
    if vector.numel() == 0:
        return 0.0
    return float(torch.cumsum(vector * vector, dim=0)[-1])


def _squared_distances(X: torch.Tensor) -> list[list[float]]:
    n = X.shape[0]
    D = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            D[i][j] = D[j][i] = _squared_norm(X[i] - X[j])
    return D


def _krum_scores(D: list[list[float]], members: list[int], num_byzantine: int) -> list[float]:
    """Blanchard et al.'s score of each member: the sum of its squared distances to its
    n - f - 2 nearest other members (at least one, see the module notes)."""
    neighbours = max(1, len(members) - num_byzantine - 2)
    scores = []
    for i in members:
        nearest = sorted(D[i][j] for j in members if j != i)[:neighbours]
        scores.append(math.fsum(nearest))
    return scores


# ----------------------------------------------------------------------------------------
# Rules


def fedavg(updates: Updates, reference: StateDict, *, num_byzantine: int = 0) -> dict[str, torch.Tensor]:
    """Sample-weighted mean (McMahan et al. 2017; Dong et al. 2024 Eq. 1).

        w = sum_k (n_k / N) w_k,  N = sum_k n_k

    The recipe of ``fl/aggregate.py``'s ``fedavg``, so the bytes are identical: canonical
    order, ``n_k * w_k`` accumulated in float64 per tensor, divided by the integer total,
    cast to float32 once. ``num_byzantine`` is accepted for the common call shape and
    unused.
    """
    _validate("fedavg", updates, reference, num_byzantine)
    ordered = canonical_order(updates)
    total = sum(count for _, count in ordered)
    names = sorted(reference)
    sums = {name: torch.zeros(reference[name].shape, dtype=torch.float64) for name in names}
    for state, count in ordered:
        for name in names:
            sums[name] += state[name].detach().to(device="cpu", dtype=torch.float64) * count
    return {name: (sums[name] / total).to(torch.float32).contiguous() for name in names}


def median(updates: Updates, reference: StateDict, *, num_byzantine: int = 0) -> dict[str, torch.Tensor]:
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed Learning:
    Towards Optimal Statistical Rates", ICML).

        [w]_k = median_i [w_i]_k   (mean of the two middle values when n is even)

    Counts are ignored. ``num_byzantine`` is unused.
    """
    _validate("median", updates, reference, num_byzantine)
    names = sorted(reference)
    X = _stack(canonical_order(updates), names)
    values = torch.sort(X, dim=0).values
    n = X.shape[0]
    if n % 2 == 1:
        middle = values[n // 2]
    else:
        middle = (values[n // 2 - 1] + values[n // 2]) / 2
    return _unflatten(middle, reference, names)


def trimmed_mean(
    updates: Updates, reference: StateDict, *, num_byzantine: int = 0, beta: float | None = None
) -> dict[str, torch.Tensor]:
    """Coordinate-wise beta-trimmed mean (Yin et al. 2018).

        [w]_k = 1 / (n - 2b) * sum of the middle n - 2b values of [w_1]_k ... [w_n]_k

    with ``b = floor(beta * n)`` values cut at each end, or ``b = num_byzantine`` when
    ``beta`` is None (ByzFL's TrMean_f). Needs n - 2b >= 1. Counts are ignored.
    """
    _validate("trimmed_mean", updates, reference, num_byzantine)
    n = len(updates)
    if beta is None:
        cut = num_byzantine
    else:
        if not 0.0 <= beta < 0.5:
            raise ValueError(f"trimmed_mean needs 0 <= beta < 0.5, got {beta}")
        cut = int(math.floor(beta * n))
    if n - 2 * cut < 1:
        raise ValueError(f"trimmed_mean needs n - 2b >= 1 (b values cut at each end): n={n}, b={cut}")
    names = sorted(reference)
    X = _stack(canonical_order(updates), names)
    kept = torch.sort(X, dim=0).values[cut:n - cut]
    return _unflatten(_row_sum(kept) / kept.shape[0], reference, names)


def _check_krum(rule: str, n: int, f: int) -> None:
    if not n > 2 * f + 2:
        raise ValueError(f"{rule} needs n > 2f + 2 (Blanchard et al. 2017): n={n}, f={f}")


def krum(updates: Updates, reference: StateDict, *, num_byzantine: int = 0) -> dict[str, torch.Tensor]:
    """Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant
    Gradient Descent", NeurIPS).

        score(i) = sum_{j in N_i} ||w_i - w_j||^2,  N_i = the n - f - 2 nearest others
        result   = w_{argmin_i score(i)}   (ties: the first in canonical order)

    Needs n > 2f + 2. Returns the chosen proposal's own values (bit-exact copy).
    """
    _validate("krum", updates, reference, num_byzantine)
    _check_krum("krum", len(updates), num_byzantine)
    names = sorted(reference)
    ordered = canonical_order(updates)
    D = _squared_distances(_stack(ordered, names))
    scores = _krum_scores(D, list(range(len(ordered))), num_byzantine)
    best = min(range(len(scores)), key=lambda i: (scores[i], i))
    return _copy_state(ordered[best][0], names)


def multi_krum(
    updates: Updates,
    reference: StateDict,
    *,
    num_byzantine: int = 0,
    num_selected: int | None = None,
    weighted: bool = False,
) -> dict[str, torch.Tensor]:
    """Multi-Krum (Blanchard et al. 2017): the mean of the ``m`` proposals with the lowest
    Krum scores (scores computed once on all n).

        result = 1/m sum_{i in S} w_i,  S = the m lowest scores (ties: canonical order)

    ``num_selected`` m defaults to n - f (ByzFL; El Mhamdi et al. 2018). ``weighted=True``
    weights the selected by sample count with the ``fedavg`` recipe (Flower's
    ``aggregate_krum(..., to_keep=m)``). Needs n > 2f + 2 and 1 <= m <= n.
    """
    _validate("multi_krum", updates, reference, num_byzantine)
    n = len(updates)
    _check_krum("multi_krum", n, num_byzantine)
    m = n - num_byzantine if num_selected is None else num_selected
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= n:
        raise ValueError(f"multi_krum needs 1 <= m <= n selected proposals: n={n}, m={m!r}")
    names = sorted(reference)
    ordered = canonical_order(updates)
    X = _stack(ordered, names)
    scores = _krum_scores(_squared_distances(X), list(range(n)), num_byzantine)
    selected = sorted(range(n), key=lambda i: (scores[i], i))[:m]
    if weighted:
        return fedavg([ordered[i] for i in selected], reference)
    chosen = X[sorted(selected)]
    return _unflatten(_row_sum(chosen) / m, reference, names)


def bulyan(updates: Updates, reference: StateDict, *, num_byzantine: int = 0) -> dict[str, torch.Tensor]:
    """Bulyan (El Mhamdi, Guerraoui, Rouault 2018, "The Hidden Vulnerability of Distributed
    Learning in Byzantium", ICML) over Krum.

    1. theta = n - 2f times: pick the Krum winner of the proposals left (n_left - f - 2
       neighbours, at least one) and remove it from the pool; S = the picks.
    2. per coordinate k: the beta = theta - 2f values of S closest to the median of S,
       averaged (equidistant values: the smaller first).

    Needs n >= 4f + 3. Counts are ignored.
    """
    _validate("bulyan", updates, reference, num_byzantine)
    n, f = len(updates), num_byzantine
    if n < 4 * f + 3:
        raise ValueError(f"bulyan needs n >= 4f + 3 (El Mhamdi et al. 2018): n={n}, f={f}")
    names = sorted(reference)
    ordered = canonical_order(updates)
    X = _stack(ordered, names)
    D = _squared_distances(X)
    theta, beta = n - 2 * f, n - 4 * f
    pool, picks = list(range(n)), []
    for _ in range(theta):
        scores = _krum_scores(D, pool, f)
        best = min(range(len(pool)), key=lambda k: (scores[k], pool[k]))
        picks.append(pool.pop(best))
    S = torch.sort(X[sorted(picks)], dim=0).values
    if theta % 2 == 1:
        centre = S[theta // 2]
    else:
        centre = (S[theta // 2 - 1] + S[theta // 2]) / 2
    closest = torch.sort((S - centre).abs(), dim=0, stable=True).indices[:beta]
    kept = torch.gather(S, 0, closest)
    return _unflatten(_row_sum(kept) / beta, reference, names)


def centered_clipping(
    updates: Updates,
    reference: StateDict,
    *,
    num_byzantine: int = 0,
    tau: float = DEFAULT_CLIPPING_TAU,
    iterations: int = DEFAULT_CLIPPING_ITERATIONS,
    previous_update: StateDict | None = None,
) -> dict[str, torch.Tensor]:
    """Centered clipping (Karimireddy, He, Jaggi 2021, "Learning from History for
    Byzantine Robust Optimization", ICML), on the updates d_i = w_i - reference:

        v_0     = previous_update (the last round's global update; zero if None)
        v_{l+1} = v_l + 1/n sum_i (d_i - v_l) min(1, tau / ||d_i - v_l||)
        result  = reference + v_L

    ``tau`` > 0, ``iterations`` L >= 1. Counts are ignored. ``num_byzantine`` is unused.
    """
    _validate("centered_clipping", updates, reference, num_byzantine)
    if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"centered_clipping needs a finite tau > 0, got {tau!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"centered_clipping needs iterations >= 1, got {iterations!r}")
    names = sorted(reference)
    base = _flat64(reference, names)
    deltas = _stack(canonical_order(updates), names) - base
    if previous_update is None:
        centre = torch.zeros_like(base)
    else:
        _validate("centered_clipping (previous_update)", [(previous_update, 1)], reference, 0)
        centre = _flat64(previous_update, names)
    n = deltas.shape[0]
    for _ in range(iterations):
        step = torch.zeros_like(base)
        for delta in deltas:
            difference = delta - centre
            norm = math.sqrt(_squared_norm(difference))
            scale = 1.0 if norm <= tau else tau / norm
            step += difference * scale
        centre = centre + step / n
    return _unflatten(base + centre, reference, names)


Aggregator = Callable[..., dict[str, torch.Tensor]]

AGGREGATORS: dict[str, Aggregator] = {
    "fedavg": fedavg,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "multi_krum": multi_krum,
    "bulyan": bulyan,
    "centered_clipping": centered_clipping,
}
