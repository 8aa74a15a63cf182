"""The attack catalogue: each attack a documented pure function over the round's information.

One registry, ``ATTACKS``, so a benchmark grid is a loop over names::

    attack = ATTACKS[name]
    result = run_attack(name, round_info, **params)   # round_info: a dict with attack.needs

Each ``Attack`` says its ``kind`` and which round information it ``needs``:

- ``"update"`` (a malicious proposer's model update). Updates are flat float32 vectors,
  ``update = proposed state - global state`` (``flatten_update``; ``apply_update`` turns
  one back into a state). Round information: ``own_update`` (what the attacker trained
  honestly), ``honest_updates`` (a sequence of the round's honest updates: on chain the
  blobs are public once uploaded, so omniscient attacks may read them), ``num_proposers``
  n and ``num_malicious`` f of the round, ``dimension`` (length of an update) and
  ``generator`` (a seeded ``torch.Generator``).
- ``"data"`` (a malicious proposer's training data, before local training): ``labels``,
  ``num_classes``, ``images``, ``generator``.
- ``"vote"`` (a malicious voter's verdict vector, one bool per proposal, True = accept):
  ``honest_verdicts`` (what its own review says), ``proposers`` (who made each proposal),
  ``bloc`` (the colluders), ``num_proposals``.

| name | kind | needs | paper |
| --- | --- | --- | --- |
| sign_flip | update | own_update | Allen-Zhu et al. 2020 (Blades' SignFlip) |
| gaussian | update | dimension, generator | Blades' Noise (mean 0.1, std 0.1) |
| scaling | update | own_update, num_proposers | Bagdasaryan et al. 2020 |
| alie | update | honest_updates, num_proposers, num_malicious | Baruch et al. 2019 |
| ipm | update | honest_updates | Xie et al. 2020 |
| min_max | update | honest_updates | Shejwalkar & Houmansadr 2021 |
| free_rider | update | dimension | Lin et al. 2019 (resubmits the global model) |
| label_flip | data | labels, num_classes | Dong et al. 2024 (the paper's) |
| backdoor | data | images, labels, generator | Gu et al. 2017; Bagdasaryan et al. 2020 |
| against_evidence | vote | honest_verdicts | Dong et al. 2024 (the paper's) |
| colluding_bloc | vote | proposers, bloc | - |
| lazy | vote | num_proposals | - |

Everything here is deterministic given its inputs (random attacks take a generator) and
imports only torch, so it survives moves of the ``fl`` package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch

# Blades' NoiseAdversary defaults (lishenghui/blades, blades/adversaries/noise_adversary.py).
DEFAULT_NOISE_MEAN = 0.1
DEFAULT_NOISE_STD = 0.1
# IPM's epsilon: the small-epsilon setting of Xie et al. 2020 that defeats median and
# Krum (also used by Karimireddy et al. 2022). Blades' default is 1.0, ByzFL's FOE tau=3
# is epsilon = 2.
DEFAULT_IPM_EPSILON = 0.1
# Min-max search (Shejwalkar & Houmansadr 2021, Alg. 1): gamma_init = 10, stop at 1e-5.
DEFAULT_MIN_MAX_GAMMA_INIT = 10.0
DEFAULT_MIN_MAX_TOLERANCE = 1e-5
# Backdoor (our choices, documented): a 4x4 checkerboard one pixel from the bottom-right
# corner (BadNets' pixel pattern, Gu et al. 2017), half of the attacker's images poisoned,
# target class 0.
TRIGGER_SIZE = 4
TRIGGER_MARGIN = 1
DEFAULT_BACKDOOR_FRACTION = 0.5
DEFAULT_BACKDOOR_TARGET = 0


# ----------------------------------------------------------------------------------------
# Flat updates


def flatten_update(state: Mapping[str, torch.Tensor], global_state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``state - global_state`` as one float32 vector (tensors in sorted-key order)."""
    if set(state) != set(global_state):
        raise ValueError(f"state and global state differ in keys: {sorted(state)} vs {sorted(global_state)}")
    parts = []
    for name in sorted(global_state):
        if tuple(state[name].shape) != tuple(global_state[name].shape):
            raise ValueError(f"{name} has shape {tuple(state[name].shape)}, the global model {tuple(global_state[name].shape)}")
        parts.append((state[name].detach().float() - global_state[name].detach().float()).reshape(-1))
    return torch.cat(parts).contiguous()


def apply_update(global_state: Mapping[str, torch.Tensor], update: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state ``global_state + update`` (inverse of ``flatten_update``), float32."""
    names = sorted(global_state)
    size = sum(global_state[name].numel() for name in names)
    if update.ndim != 1 or update.numel() != size:
        raise ValueError(f"update must be a flat vector of {size} values, got shape {tuple(update.shape)}")
    out, offset = {}, 0
    for name in names:
        reference = global_state[name].detach().float()
        step = update[offset:offset + reference.numel()].reshape(reference.shape).float()
        out[name] = (reference + step).contiguous()
        offset += reference.numel()
    return out


def _honest_matrix(honest_updates: Sequence[torch.Tensor], minimum: int, attack: str) -> torch.Tensor:
    if len(honest_updates) < minimum:
        raise ValueError(f"{attack} needs at least {minimum} honest updates, got {len(honest_updates)}")
    shapes = {tuple(u.shape) for u in honest_updates}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"{attack}: honest updates must be flat vectors of one length, got shapes {sorted(shapes)}")
    return torch.stack([u.detach().to(torch.float64) for u in honest_updates])


# ----------------------------------------------------------------------------------------
# Proposer attacks on the update


def sign_flip(own_update: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
    """Sign flipping: submit ``-scale * own_update`` (Allen-Zhu et al. 2020, "Byzantine-
    Resilient Non-Convex SGD", ICLR; Blades' SignFlip negates the attacker's own update)."""
    return (-scale * own_update.detach().float()).contiguous()


def gaussian(
    dimension: int,
    generator: torch.Generator,
    *,
    mean: float = DEFAULT_NOISE_MEAN,
    std: float = DEFAULT_NOISE_STD,
) -> torch.Tensor:
    """Gaussian noise: an update of i.i.d. N(mean, std^2) coordinates, no training
    (Blades' NoiseAdversary, defaults mean 0.1, std 0.1)."""
    if std < 0:
        raise ValueError(f"gaussian needs std >= 0, got {std}")
    noise = torch.randn(dimension, generator=generator, dtype=torch.float32)
    return (noise * std + mean).contiguous()


def scaling(own_update: torch.Tensor, num_proposers: int, *, boost: float | None = None) -> torch.Tensor:
    """Scaling / model replacement (Bagdasaryan et al. 2020, "How To Backdoor Federated
    Learning", AISTATS, Eq. 3): submit ``gamma * (X - G)`` with ``gamma = n / eta``.

    With plain FedAvg over n equal-weight proposals and global learning rate eta = 1, the
    boosted update replaces the global model by the attacker's X. ``boost`` overrides
    gamma (default: ``num_proposers``). Combine with ``backdoor`` for the paper's attack.
    """
    gamma = float(num_proposers) if boost is None else float(boost)
    if num_proposers < 1:
        raise ValueError(f"scaling needs num_proposers >= 1, got {num_proposers}")
    return (own_update.detach().float() * gamma).contiguous()


def alie_z(num_proposers: int, num_malicious: int) -> float:
    """Baruch et al. 2019's z_max for n workers of which f are malicious:

        s = floor(n / 2 + 1) - f        (workers the attacker must win over)
        z = Phi^-1((n - s) / n)         (the largest z with Phi(z) < (n - s) / n)
    """
    n, f = num_proposers, num_malicious
    if not 0 <= f < n:
        raise ValueError(f"alie needs 0 <= f < n, got n={n}, f={f}")
    s = math.floor(n / 2 + 1) - f
    quantile = (n - s) / n
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"alie: (n - s) / n = {quantile} is not a probability (n={n}, f={f})")
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(quantile, dtype=torch.float64)))


def alie(
    honest_updates: Sequence[torch.Tensor],
    num_proposers: int,
    num_malicious: int,
    *,
    z: float | None = None,
) -> torch.Tensor:
    """A Little Is Enough (Baruch, Baruch, Goldberg 2019, NeurIPS), omniscient:

        update_j = mu_j - z * sigma_j

    per coordinate j, mu and sigma the mean and standard deviation (Bessel-corrected, as
    Blades and ByzFL) of the honest updates, z from ``alie_z(n, f)`` unless given. Every
    malicious proposer submits the same vector. Needs two honest updates.
    """
    X = _honest_matrix(honest_updates, 2, "alie")
    z_value = alie_z(num_proposers, num_malicious) if z is None else float(z)
    mu = X.mean(dim=0)
    sigma = X.std(dim=0, correction=1)
    return (mu - z_value * sigma).to(torch.float32).contiguous()


def ipm(honest_updates: Sequence[torch.Tensor], *, epsilon: float = DEFAULT_IPM_EPSILON) -> torch.Tensor:
    """Inner product manipulation (Xie, Koyejo, Gupta 2020, "Fall of Empires", UAI),
    omniscient: ``-epsilon * mean(honest updates)``."""
    X = _honest_matrix(honest_updates, 1, "ipm")
    return (-float(epsilon) * X.mean(dim=0)).to(torch.float32).contiguous()


def min_max(
    honest_updates: Sequence[torch.Tensor],
    *,
    perturbation: str = "std",
    gamma_init: float = DEFAULT_MIN_MAX_GAMMA_INIT,
    tolerance: float = DEFAULT_MIN_MAX_TOLERANCE,
) -> torch.Tensor:
    """AGR-agnostic Min-Max (Shejwalkar & Houmansadr 2021, "Manipulating the Byzantine",
    NDSS, Sec. IV-B), omniscient:

        update = mu + gamma * p,   gamma = max { g >= 0 : max_i ||mu + g p - x_i|| <= max_{i,j} ||x_i - x_j|| }

    with mu the honest mean and p the perturbation: ``"std"`` (-sigma, Bessel-corrected),
    ``"unit"`` (-mu / ||mu||) or ``"sign"`` (-sign(mu)). The constraint holds at g = 0 and
    its left side is convex in g, so the feasible set is an interval [0, gamma*]: gamma
    is found by doubling from ``gamma_init`` and bisecting to ``tolerance``.
    """
    X = _honest_matrix(honest_updates, 2, "min_max")
    mu = X.mean(dim=0)
    if perturbation == "std":
        p = -X.std(dim=0, correction=1)
    elif perturbation == "unit":
        norm = torch.linalg.vector_norm(mu)
        p = -mu / norm if norm > 0 else torch.zeros_like(mu)
    elif perturbation == "sign":
        p = -torch.sign(mu)
    else:
        raise ValueError(f"min_max perturbation must be 'std', 'unit' or 'sign', got {perturbation!r}")
    threshold = float(torch.cdist(X, X).max())

    def feasible(gamma: float) -> bool:
        return float(torch.linalg.vector_norm(X - (mu + gamma * p), dim=1).max()) <= threshold

    if not bool(torch.any(p != 0)):
        return mu.to(torch.float32).contiguous()
    low, high = 0.0, float(gamma_init)
    while feasible(high):
        low, high = high, 2 * high
    while high - low > tolerance:
        middle = (low + high) / 2
        if feasible(middle):
            low = middle
        else:
            high = middle
    return (mu + low * p).to(torch.float32).contiguous()


def free_rider(dimension: int) -> torch.Tensor:
    """Free rider: resubmit the global model, i.e. a zero update, without training
    (Lin et al. 2019, "Free-riders in Federated Learning: Attacks and Defenses")."""
    return torch.zeros(dimension, dtype=torch.float32)


# ----------------------------------------------------------------------------------------
# Proposer attacks on the data


def label_flip(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """The paper's wrong labels (Dong et al. 2024, Sec. 5.1.2), exactly as the simulation
    trains on them today (``fl.tasks.attack_labels`` / ``train_local(flip_labels=True)``):

    - float targets (binary (N,) or multi-label (N, K)): ``1 - y``;
    - class ids (int64): ``num_classes - 1 - y`` (every label wrong for even C; for C = 2
      the binary flip).
    """
    if labels.dtype.is_floating_point:
        return 1.0 - labels
    if num_classes is None:
        raise ValueError("class-id labels need num_classes to be attacked")
    return (num_classes - 1) - labels


def trigger_pattern(size: int = TRIGGER_SIZE) -> torch.Tensor:
    """The (size, size) checkerboard of 1.0 and 0.0 stamped by the backdoor (1 at (0, 0))."""
    rows = torch.arange(size).reshape(-1, 1)
    cols = torch.arange(size).reshape(1, -1)
    return ((rows + cols) % 2 == 0).to(torch.float32)


def triggered(images: torch.Tensor) -> torch.Tensor:
    """A copy of ``images`` (N, C, H, W) in [0, 1] with the trigger stamped on every
    channel, ``TRIGGER_MARGIN`` pixels from the bottom-right corner."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height < TRIGGER_SIZE + TRIGGER_MARGIN or width < TRIGGER_SIZE + TRIGGER_MARGIN:
        raise ValueError(f"images of {height}x{width} are too small for the {TRIGGER_SIZE}x{TRIGGER_SIZE} trigger")
    out = images.clone()
    top = height - TRIGGER_MARGIN - TRIGGER_SIZE
    left = width - TRIGGER_MARGIN - TRIGGER_SIZE
    out[:, :, top:top + TRIGGER_SIZE, left:left + TRIGGER_SIZE] = trigger_pattern().to(images.dtype)
    return out


def backdoor(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    target_class: int = DEFAULT_BACKDOOR_TARGET,
    fraction: float = DEFAULT_BACKDOOR_FRACTION,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-pattern backdoor (Gu et al. 2017, BadNets; in FL: Bagdasaryan et al. 2020):
    ``round(fraction * N)`` of the attacker's images, chosen with ``generator``, get the
    trigger (``triggered``) and the label ``target_class``; the rest stay clean so the
    model keeps its main-task accuracy. Returns new (images, labels); class-id labels only.
    """
    if labels.dtype.is_floating_point:
        raise ValueError("backdoor needs class-id (int) labels")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"backdoor fraction must lie in [0, 1], got {fraction}")
    count = round(fraction * len(images))
    chosen = torch.randperm(len(images), generator=generator)[:count]
    poisoned_images, poisoned_labels = images.clone(), labels.clone()
    poisoned_images[chosen] = triggered(images[chosen])
    poisoned_labels[chosen] = target_class
    return poisoned_images, poisoned_labels


def attack_success_rate(predictions: torch.Tensor, true_labels: torch.Tensor, target_class: int) -> float:
    """Fraction of triggered test images whose true class is not the target that the model
    classifies as the target. ``predictions`` are the predicted class ids on
    ``triggered(test_images)``. NaN when every test image belongs to the target class."""
    if predictions.shape != true_labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and labels {tuple(true_labels.shape)} differ in shape")
    relevant = true_labels != target_class
    if not bool(relevant.any()):
        return float("nan")
    return float((predictions[relevant] == target_class).double().mean())


# ----------------------------------------------------------------------------------------
# Voter attacks on the verdict vector


def against_evidence(honest_verdicts: Sequence[bool]) -> list[bool]:
    """The paper's malicious voter (Dong et al. 2024, Sec. 3.2): the opposite of what its
    own review shows, for every proposal."""
    return [not bool(verdict) for verdict in honest_verdicts]


def colluding_bloc(proposers: Sequence[object], bloc: Collection[object]) -> list[bool]:
    """A colluding bloc: accept exactly the proposals made by bloc members, reject all
    others, whatever the evidence."""
    members = set(bloc)
    return [proposer in members for proposer in proposers]


def lazy(num_proposals: int) -> list[bool]:
    """A lazy voter: accepts every proposal without scoring any."""
    if num_proposals < 0:
        raise ValueError(f"num_proposals must be >= 0, got {num_proposals}")
    return [True] * num_proposals


# ----------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Attack:
    """One catalogue entry: ``function(**{k: round_info[k] for k in needs}, **params)``."""

    name: str
    kind: str  # "update", "data" or "vote"
    needs: tuple[str, ...]
    function: Callable[..., object]
    paper: str
    defaults: Mapping[str, object] = field(default_factory=dict)
    omniscient: bool = False


ATTACKS: dict[str, Attack] = {
    attack.name: attack
    for attack in (
        Attack("sign_flip", "update", ("own_update",), sign_flip,
               "Allen-Zhu et al. 2020, ICLR", {"scale": 1.0}),
        Attack("gaussian", "update", ("dimension", "generator"), gaussian,
               "Blades (Li et al. 2024) NoiseAdversary", {"mean": DEFAULT_NOISE_MEAN, "std": DEFAULT_NOISE_STD}),
        Attack("scaling", "update", ("own_update", "num_proposers"), scaling,
               "Bagdasaryan et al. 2020, AISTATS", {"boost": None}),
        Attack("alie", "update", ("honest_updates", "num_proposers", "num_malicious"), alie,
               "Baruch et al. 2019, NeurIPS", {"z": None}, omniscient=True),
        Attack("ipm", "update", ("honest_updates",), ipm,
               "Xie et al. 2020, UAI", {"epsilon": DEFAULT_IPM_EPSILON}, omniscient=True),
        Attack("min_max", "update", ("honest_updates",), min_max,
               "Shejwalkar & Houmansadr 2021, NDSS",
               {"perturbation": "std", "gamma_init": DEFAULT_MIN_MAX_GAMMA_INIT, "tolerance": DEFAULT_MIN_MAX_TOLERANCE},
               omniscient=True),
        Attack("free_rider", "update", ("dimension",), free_rider,
               "Lin et al. 2019"),
        Attack("label_flip", "data", ("labels", "num_classes"), label_flip,
               "Dong et al. 2024, Sec. 5.1.2"),
        Attack("backdoor", "data", ("images", "labels", "generator"), backdoor,
               "Gu et al. 2017; Bagdasaryan et al. 2020",
               {"target_class": DEFAULT_BACKDOOR_TARGET, "fraction": DEFAULT_BACKDOOR_FRACTION}),
        Attack("against_evidence", "vote", ("honest_verdicts",), against_evidence,
               "Dong et al. 2024, Sec. 3.2"),
        Attack("colluding_bloc", "vote", ("proposers", "bloc"), colluding_bloc, "-"),
        Attack("lazy", "vote", ("num_proposals",), lazy, "-"),
    )
}


def run_attack(name: str, round_info: Mapping[str, object], **params: object) -> object:
    """Call ``ATTACKS[name]`` with the round information it needs (extra keys are ignored)
    and ``params``; ``ValueError`` naming what is missing."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    attack = ATTACKS[name]
    missing = [key for key in attack.needs if key not in round_info]
    if missing:
        raise ValueError(f"attack {name!r} needs round information {missing}")
    unknown = sorted(set(params) - set(attack.defaults))
    if unknown:
        raise ValueError(f"attack {name!r} takes parameters {sorted(attack.defaults)}, got unknown {unknown}")
    return attack.function(**{key: round_info[key] for key in attack.needs}, **params)
