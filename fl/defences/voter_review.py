"""The voters' review of one round, batched: named rules over fl/defences/review.py's policies.

`--review NAME` picks a `ReviewRule` of `RULES`. Every voter of the round gets one honest verdict
per proposal (True = accept), in the proposals' on-chain order; a malicious voter's inversion is
done by the caller (fl.attacks.behaviours.voter_verdicts).

Cost: the P proposals (and the global model, and the median / leave-one-out models a rule
compares with) are scored in ONE stacked forward pass over the validation rows of all the voters
of the round (`review.stacked_logits`), then each voter's rows are sliced out: the same numbers as
scoring per voter, at the cost of about one forward pass. The direction rules also need each
voter's own update (its local training on its own training split, `own_epochs` epochs): that is
one local training per voter and round.

The paper's rule (`aggregate`) is not computed here: the round loop scores the aggregate and the
global model exactly as before (fl.simulation.rounds.ScoreCache) so a run reproduces the paper's.

A proposal whose blob is missing or malformed (state None) is rejected by every honest voter; the
rule judges the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from fl.defences import review as rv
from fl.learning.data import Split

__all__ = ["ReviewRule", "RULES", "DEFAULT_RULE", "VoterView", "review_round", "rule_named"]


@dataclass(frozen=True)
class ReviewRule:
    """A named review rule: a policy of fl.defences.review with its parameters."""

    name: str
    policy: str  # a key of fl.defences.review.POLICIES
    parameters: dict = field(default_factory=dict)
    loss: str = ""  # per-example loss of the loss rules: "logloss" | "brier" ("" = none needed)
    own_epochs: int = 1  # local epochs of the voter's own reference update (direction rules)
    description: str = ""


RULES: dict[str, ReviewRule] = {
    rule.name: rule
    for rule in (
        ReviewRule("aggregate", "aggregate", description=(
            "the paper's voter (Dong et al. 2024, Eq. 2): one verdict for every proposal, accept iff "
            "score(FedAvg of all proposals) >= score(global model) - epsilon")),
        ReviewRule("cosine", "cosine", {"threshold": -0.1, "max_norm_ratio": 2.0}, own_epochs=20, description=(
            "accept proposal i iff cos(update_i, own update) > -0.1 and ||update_i|| <= 2 x the norm of the "
            "voter's own one-epoch update; own update: 20 local epochs on the voter's training split")),
        ReviewRule("cosine_and_loss", "cosine_and_loss", {"threshold": -0.1, "k": 1.0}, "logloss", own_epochs=20,
                   description="the cosine test (no norm cap) AND loss_vs_global"),
        ReviewRule("loss_vs_global", "loss_vs_global", {"k": 1.0}, "logloss", description=(
            "accept iff the proposal's mean validation log-loss is not worse than the global model's by more "
            "than 1 standard error of the paired differences")),
        ReviewRule("loss_vs_median", "loss_vs_median", {"k": 1.0}, "logloss",
                   description="the same against the coordinate-wise median of the round's proposals"),
        ReviewRule("leave_one_out", "leave_one_out", {"k": 1.0}, "logloss",
                   description="accept iff FedAvg with the proposal is not worse than FedAvg without it (1 SE)"),
    )
}
DEFAULT_RULE = "aggregate"


def rule_named(name: str) -> ReviewRule:
    if name not in RULES:
        raise ValueError(f"review rule must be one of {', '.join(RULES)}, got {name!r}")
    return RULES[name]


@dataclass
class VoterView:
    """What one voter reviews with: its own validation split, its own training split, a seed."""

    val: Split
    train: Split
    seed: int


def _flat(state: dict, names: Sequence[str]) -> torch.Tensor:
    return rv.flatten_parameters(state, list(names))


def _losses(loss: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if loss == "brier":
        return rv.per_example_brier(logits, targets)
    return rv.per_example_log_loss(logits, targets)


def review_round(
    rule: ReviewRule,
    template: torch.nn.Module,
    global_state: dict,
    proposals: Sequence[dict | None],
    sample_counts: Sequence[int],
    voters: Sequence[VoterView],
    train: Callable[..., dict] | None = None,
    lr: float = 1e-3,
) -> list[list[bool]]:
    """Each voter's honest verdicts on the round's proposals (one list of P bools per voter).

    `proposals` are the proposed full states (None: unusable blob), `sample_counts` their claimed
    training rows (weights of the leave-one-out FedAvg), `train` the task's local training
    (signature of fl.learning.model.train_local) for the direction rules' own updates.
    """
    if rule.policy == "aggregate":
        raise ValueError("the aggregate rule is scored by the round loop (fl.simulation.rounds)")
    count = len(proposals)
    valid = [i for i, p in enumerate(proposals) if p is not None]
    verdicts = [[False] * count for _ in voters]
    if not valid or not voters:
        return verdicts
    names = [n for n, _ in template.named_parameters()]
    global_flat = _flat(global_state, names)
    stacked = torch.stack([_flat(proposals[i], names) for i in valid])  # (V, D)
    needs = set(rv.REQUIRED_INPUTS[rule.policy])

    # one forward pass: every model the rule compares, on every voter's validation rows
    models = [global_flat.unsqueeze(0), stacked]
    extra = {}
    if "median_losses" in needs:
        extra["median"] = len(valid) + 1
        models.append(stacked.median(dim=0).values.unsqueeze(0))
    if "without_losses" in needs:
        weights = torch.tensor([float(sample_counts[i]) for i in valid], dtype=torch.float64).unsqueeze(1)
        total = (weights * stacked.double()).sum(0)
        extra["aggregate"] = sum(m.shape[0] for m in models)
        models.append((total / weights.sum()).float().unsqueeze(0))
        extra["without"] = extra["aggregate"] + 1
        for j in range(len(valid)):
            rest = weights.sum() - weights[j]
            # with one proposal, "without it" is the global model
            without = (total - weights[j] * stacked[j].double()) / rest if rest > 0 else global_flat.double()
            models.append(without.float().unsqueeze(0))
    losses = None
    if needs & {"proposal_losses", "global_losses", "median_losses", "aggregate_losses", "without_losses"}:
        X = torch.cat([v.val.X for v in voters])
        y = torch.cat([v.val.y for v in voters])
        logits = _stacked_logits(template, global_state, names, torch.cat(models), X)
        losses = _losses(rule.loss, logits, y)  # (M, rows of all voters)

    own_updates = reference_norms = None
    if "own_update" in needs:
        if train is None:
            raise ValueError(f"review rule {rule.name} needs the task's local training")
        own_updates, reference_norms = _own_updates(rule, template, global_state, global_flat, names, voters, train, lr)

    updates = stacked - global_flat
    start = 0
    for j, voter in enumerate(voters):
        rows = len(voter.val.y)
        fields = {"proposal_count": len(valid)}
        if losses is not None:
            mine = losses[:, start:start + rows]
            fields.update(global_losses=mine[0], proposal_losses=mine[1:len(valid) + 1])
            if "median" in extra:
                fields["median_losses"] = mine[extra["median"]]
            if "aggregate" in extra:
                fields["aggregate_losses"] = mine[extra["aggregate"]]
                fields["without_losses"] = mine[extra["without"]:extra["without"] + len(valid)]
        if own_updates is not None:
            fields.update(proposal_updates=updates, own_update=own_updates[j], reference_norm=reference_norms[j])
        start += rows
        for i, accept in zip(valid, rv.review(rule.policy, rv.ReviewInputs(**fields), **rule.parameters), strict=True):
            verdicts[j][i] = bool(accept)
    return verdicts


def _stacked_logits(template, global_state, names, flat_models: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Outputs of every flat parameter vector on X in one vmapped call (buffers: the global model's)."""
    model = template
    buffers = [n for n, _ in template.named_buffers()]
    if buffers:  # the proposals' own buffers are not compared; use the round's global buffers
        from fl.learning.model import load_state

        model = load_state(template, global_state)
    return rv.stacked_logits(model, flat_models, X)


def _own_updates(rule, template, global_state, global_flat, names, voters, train, lr):
    """Each voter's own update (rule.own_epochs epochs) and the norm of its one-epoch update."""
    from fl.learning.model import load_state

    model = load_state(template, global_state)
    own, norms = [], []
    cap = "max_norm_ratio" in rule.parameters
    for voter in voters:
        long = _flat(train(model, voter.train, epochs=rule.own_epochs, lr=lr, seed=voter.seed), names) - global_flat
        own.append(long)
        if cap:
            short = long if rule.own_epochs == 1 else (
                _flat(train(model, voter.train, epochs=1, lr=lr, seed=voter.seed), names) - global_flat)
            norms.append(float(short.double().norm()))
        else:
            norms.append(None)
    return own, norms
