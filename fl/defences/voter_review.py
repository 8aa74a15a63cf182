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

__all__ = ["ReviewRule", "RULES", "DEFAULT_RULE", "recommended_rule", "VoterView", "review_round", "rule_named"]


@dataclass(frozen=True)
class ReviewRule:
    """A named review rule: a policy of fl.defences.review with its parameters."""

    name: str
    policy: str  # a key of fl.defences.review.POLICIES
    parameters: dict = field(default_factory=dict)
    loss: str = ""  # per-example loss of the loss rules: "logloss" | "brier" ("" = none needed)
    own_epochs: int = 1  # the voter's own update: own_epochs x the proposers' local epochs (direction rules)
    description: str = ""


RULES: dict[str, ReviewRule] = {
    rule.name: rule
    for rule in (
        ReviewRule("aggregate", "aggregate", description=(
            "the paper's voter (Dong et al. 2024, Eq. 2): one verdict for every proposal, accept iff "
            "score(FedAvg of all proposals) >= score(global model) - epsilon")),
        ReviewRule("cosine", "cosine", {"threshold": -0.1, "max_norm_ratio": 2.0}, own_epochs=rv.OWN_UPDATE_EPOCHS,
                   description=(
            "accept proposal i iff cos(update_i, own update) > -0.1 and ||update_i|| <= 2 x the norm of the "
            "voter's own update trained like a proposer's; own update: 20 x the proposers' local epochs on the "
            "voter's training split")),
        ReviewRule("cosine_floor", rv.RECOMMENDED_POLICY, dict(rv.RECOMMENDED_PARAMETERS), own_epochs=rv.OWN_UPDATE_EPOCHS,
                   description=(
            "the cosine rule with a norm floor: accept proposal i iff cos(update_i, own update) > -0.1 and "
            "0.1 x r <= ||update_i|| <= 2 x r, r the norm of the voter's own update trained like a proposer's "
            "(rejects a free rider's zero update); own update: 20 x the proposers' local epochs")),
        ReviewRule("cosine_floor_t0", rv.RECOMMENDED_POLICY, {**rv.RECOMMENDED_PARAMETERS, "threshold": 0.0},
                   own_epochs=rv.OWN_UPDATE_EPOCHS, description=(
            "cosine_floor with FLTrust's threshold 0: accept proposal i iff cos(update_i, own update) > 0 and "
            "0.1 x r <= ||update_i|| <= 2 x r (on Fashion-MNIST a label-flipped update sits at cos -0.06 to "
            "-0.10, above cosine_floor's -0.1)")),
        ReviewRule("cosine_floor_rel", rv.RECOMMENDED_POLICY,
                   {**rv.RECOMMENDED_PARAMETERS, "threshold": 0.0, "median_ratio": 0.5},
                   own_epochs=rv.OWN_UPDATE_EPOCHS, description=(
            "cosine_floor_t0 and a relative test: accept proposal i only if its cosine is also above half the "
            "median cosine of the round's proposals within the norm bounds (a backdoored update keeps a small "
            "positive cosine, well below the honest ones'; the image tasks' default)")),
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
DEFAULT_RULE = "cosine_floor"  # cosine: measured better than the paper's rule (docs/REVIEW_STUDY.md); the floor: issue 12


def recommended_rule(task: str) -> str:
    """The review rule a voter of ``task`` should use (the CLI's default). Lending Club: ``cosine_floor``
    (threshold -0.1; 0% honest proposals rejected at 40% inverted voters where 0 rejects 7%). Image
    tasks: ``cosine_floor_rel`` (threshold 0 and half the round's median cosine; on Fashion-MNIST the
    only rule measured to cut the backdoor's success to a third of FedAvg's at both ratios; chest
    X-ray is not measured). docs/REVIEW_STUDY.md gives the measurements."""
    return DEFAULT_RULE if task == "lending" else "cosine_floor_rel"


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
    local_epochs: int = 1,
) -> list[list[bool]]:
    """Each voter's honest verdicts on the round's proposals (one list of P bools per voter).

    `proposals` are the proposed full states (None: unusable blob), `sample_counts` their claimed
    training rows (weights of the leave-one-out FedAvg), `train` the task's local training
    (signature of fl.learning.model.train_local) and `lr`, `local_epochs` the proposers' settings,
    for the direction rules' own updates (fl/defences/review.py: own_update, reference_norm).
    """
    if rule.policy == "aggregate":
        raise ValueError("the aggregate rule is scored by the round loop (fl.simulation.rounds)")
    count = len(proposals)
    # (the store already refuses non-finite blobs; a NaN update must never pass a cosine test)
    valid = [i for i, p in enumerate(proposals) if p is not None and all(bool(torch.isfinite(v).all()) for v in p.values())]
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
        own_updates, reference_norms = _own_updates(
            rule, template, global_state, global_flat, names, voters, train, lr, local_epochs)

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


def _own_updates(rule, template, global_state, global_flat, names, voters, train, lr, local_epochs):
    """Each voter's own update (rule.own_epochs x local_epochs epochs) and the norm of its update
    trained like a proposer's (local_epochs epochs; only for a norm cap or floor)."""
    from fl.learning.model import BATCH_SIZE, load_state, train_local

    cap = bool({"max_norm_ratio", "min_norm_ratio"} & set(rule.parameters))  # the norm tests need reference_norm
    epochs = rule.own_epochs * local_epochs
    if train is train_local and not list(template.buffers()) and all(len(v.train.y) <= BATCH_SIZE for v in voters):
        # one batch per epoch: every voter's training at once (the same Adam steps, vmapped)
        short, long = full_batch_adam(template, global_flat, [v.train for v in voters], epochs, lr, keep=local_epochs)
        own = [u - global_flat for u in long]
        norms = [float((u - global_flat).double().norm()) for u in short] if cap else [None] * len(voters)
        return own, norms
    model = load_state(template, global_state)
    own, norms = [], []
    for voter in voters:
        long = _flat(train(model, voter.train, epochs=epochs, lr=lr, seed=voter.seed), names) - global_flat
        own.append(long)
        if cap:
            short = long if epochs == local_epochs else (
                _flat(train(model, voter.train, epochs=local_epochs, lr=lr, seed=voter.seed), names) - global_flat)
            norms.append(float(short.double().norm()))
        else:
            norms.append(None)
    return own, norms


def full_batch_adam(template, start: torch.Tensor, splits: Sequence[Split], epochs: int, lr: float,
                    keep: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """fl.learning.model.train_local (binary cross-entropy, Adam with a fresh state, no proximal
    term) for splits that fit in one mini-batch, for many clients at once: clients with the same
    number of rows are stacked and stepped together (torch.func.grad vmapped over the clients).

    Returns the flat parameters of every split after epoch `keep` and after the last epoch."""
    names, shapes = zip(*[(n, p.shape) for n, p in template.named_parameters()])
    sizes = [int(torch.tensor(s).prod()) if len(s) else 1 for s in shapes]
    loss_of = torch.nn.BCEWithLogitsLoss()

    def loss(flat, X, y):
        pieces = torch.split(flat, sizes)
        parameters = {n: piece.view(s) for n, piece, s in zip(names, pieces, shapes)}
        return loss_of(torch.func.functional_call(template, parameters, (X,)), y)

    gradient = torch.func.vmap(torch.func.grad(loss))
    first: list = [None] * len(splits)
    last: list = [None] * len(splits)
    groups: dict[int, list[int]] = {}
    for i, split in enumerate(splits):
        groups.setdefault(len(split.y), []).append(i)
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
    was_training = template.training
    template.train()
    try:
        for members in groups.values():
            X = torch.stack([splits[i].X for i in members])
            y = torch.stack([splits[i].y.to(torch.float32) for i in members])
            params = start.to(torch.float32).unsqueeze(0).repeat(len(members), 1)
            m = torch.zeros_like(params)
            v = torch.zeros_like(params)
            for step in range(1, epochs + 1):
                g = gradient(params, X, y)
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denominator = (v.sqrt() / (1 - beta2 ** step) ** 0.5).add_(eps)
                params = params - (lr / (1 - beta1 ** step)) * m / denominator
                if step == keep:
                    for row, i in enumerate(members):
                        first[i] = params[row].clone()
            for row, i in enumerate(members):
                last[i] = params[row]
    finally:
        template.train(was_training)
    return first, last
