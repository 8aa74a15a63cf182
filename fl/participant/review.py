"""A decentralised voter's verdicts on the valid proposals of a round, with a policy of
fl.defences.review (the same names as `ape run simulate --review`).

The participant computes, on its own data, the inputs the chosen policy needs and nothing else:
scores of the aggregate and of the parent model (``aggregate``, the paper's uniform ballot),
per-example log-losses of every proposal, the parent, the median model or the leave-one-out
aggregates (the loss rules), and its own honest update from the parent (the direction rules).
Pure: no chain, no store; proposals arrive already fetched and validated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fl.defences.aggregate import fedavg
from fl.defences.review import (
    POLICIES, REQUIRED_INPUTS, ReviewInputs, flatten_parameters, per_example_log_loss, review,
)
from fl.learning.data import ClientData
from fl.learning.model import evaluate, load_state, score

REVIEW_POLICIES = tuple(POLICIES)


def _losses(template, state, split) -> torch.Tensor:
    model = load_state(template, state)
    model.eval()
    with torch.no_grad():
        return per_example_log_loss(model(split.X), split.y)


def review_proposals(
    policy: str,
    parent: dict,
    proposals: Sequence[tuple[dict, int]],
    template,
    data: ClientData,
    score_name: str,
    epsilon: float,
    own_update: Callable[[dict], dict],
) -> tuple[list[bool], str]:
    """Honest verdicts (True = accept) on `proposals` ((state, sample count), all valid) against the
    round's `parent` model, and a short note of what was measured. `own_update(parent)` trains
    this voter's own update (called by the direction rules only)."""
    count = len(proposals)
    if count == 0:
        return [], "no valid proposal"
    needs = set(REQUIRED_INPUTS[policy])
    fields: dict = {}
    note = ""
    if needs & {"aggregate_score", "global_score"}:
        aggregate = fedavg(list(proposals))
        fields["aggregate_score"] = score(evaluate(load_state(template, aggregate), data.val), score_name)
        fields["global_score"] = score(evaluate(load_state(template, parent), data.val), score_name)
        note = f"aggregate scores {fields['aggregate_score']:.4f} vs parent {fields['global_score']:.4f}"
    if needs & {"proposal_losses", "global_losses", "median_losses", "aggregate_losses", "without_losses"}:
        fields["proposal_losses"] = torch.stack([_losses(template, s, data.val) for s, _ in proposals])
        fields["global_losses"] = _losses(template, parent, data.val)
        note = "log-loss excess vs parent " + " ".join(
            f"{float(v):+.4f}" for v in (fields["proposal_losses"] - fields["global_losses"]).mean(dim=1))
    if "median_losses" in needs:
        median = {name: torch.stack([s[name] for s, _ in proposals]).median(dim=0).values for name in parent}
        fields["median_losses"] = _losses(template, median, data.val)
    if needs & {"aggregate_losses", "without_losses"}:
        fields["aggregate_losses"] = _losses(template, fedavg(list(proposals)), data.val)
        fields["without_losses"] = torch.stack([
            _losses(template, fedavg([p for j, p in enumerate(proposals) if j != i]) if count > 1 else parent,
                    data.val)
            for i in range(count)])
    if needs & {"proposal_updates", "own_update"}:
        names = sorted(parent)
        base = flatten_parameters(parent, names)
        fields["proposal_updates"] = torch.stack([flatten_parameters(s, names) - base for s, _ in proposals])
        own = flatten_parameters(own_update(parent), names) - base
        fields["own_update"] = own
        fields["reference_norm"] = float(own.to(torch.float64).norm())
        cosines = torch.nn.functional.cosine_similarity(fields["proposal_updates"], own.unsqueeze(0), dim=1)
        note = (note + "; " if note else "") + "cosine to own update " + " ".join(f"{float(c):+.3f}" for c in cosines)
    parameters = {"epsilon": epsilon} if policy == "aggregate" else {}
    verdicts = review(policy, ReviewInputs(proposal_count=count, **fields), **parameters)
    return [bool(v) for v in verdicts], note


__all__ = ["REVIEW_POLICIES", "review_proposals"]
