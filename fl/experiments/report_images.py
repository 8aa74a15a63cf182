"""The image task's part of docs/RESULTS.md: data sizes, time, and the paper's non-IID finding.

Dong et al. 2024, Sec. 6.2.4: "while the task is more difficult, the performance gain between
the proposed method and the baselines becomes larger" on non-IID ChestX-ray14 than on the IID
Lending Club task. Here that gain is the protocol's test AUROC minus FedAvg-with-attackers'
(each run's mean over its last rounds, mean over seeds), per malicious ratio, compared between
this image sweep and every IID sweep in the same report (the lending task and, when it was run,
the same image task with IID clients, ``dirichlet_alpha = inf``).

Everything here is computed from the recorded runs (``fl.experiments.report`` passes its
``fl.experiments.runs.Sweep`` objects).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from fl.experiments.runs import METHOD_NAMES, fmt, mean_std, tail_mean
from fl.experiments.sweep import PROTOCOL_MAIN

SWEEP_FILE = "sweep.json"


def sweep_label(task: str, config: dict) -> str:
    """The report's grouping key: the task, and for image tasks the Dirichlet concentration."""
    if task == "lending":
        return task
    alpha = float(config.get("dirichlet_alpha", math.inf))
    return f"{task}-iid" if math.isinf(alpha) else f"{task}-alpha{alpha:g}"


def voter_score(config: dict) -> str:
    """The score the voters used: image tasks always vote with mean AUROC (fl.learning.tasks)."""
    return "auroc" if config.get("task", "lending") != "lending" else config.get("score", "accuracy")


def is_iid(sweep) -> bool:
    config = sweep.main[0].config if sweep.main else {}
    return sweep.main[0].task == "lending" or math.isinf(float(config.get("dirichlet_alpha", math.inf)))


def settled_window(sweep) -> int:
    """The rounds compared "after convergence": the second half of the run, at most the paper's 50
    (lending's 100 rounds: the last 50, as in its Table 3; a 40-round image sweep: the last 20)."""
    return max(1, min(50, sweep.rounds // 2))


def tail_table(sweep, metric: str, last: int) -> dict[tuple[str, float], tuple[float, float, int]]:
    """(method, ratio) -> mean, std, n over seeds of each run's mean over its ``last`` rounds."""
    return {(m, ratio): mean_std([tail_mean(r, metric, last) for r in sweep.cell(m, ratio)])
            for m in sweep.methods for ratio in sweep.ratios}


def gaps(sweep, metric: str = "test_auroc", last: int | None = None, method: str = "protocol") -> dict[float, float]:
    """The protocol method `method` minus FedAvg with attackers, per malicious ratio (nan when a
    cell is missing), over the report's table window, or over the last ``last`` rounds."""
    if not {method, "fedavg-attack"} <= set(sweep.methods):
        table = {}
    else:
        table = sweep.table(metric) if last is None else tail_table(sweep, metric, last)
    out = {}
    for ratio in sweep.ratios:
        protocol = table.get((method, ratio), (math.nan,))[0]
        attack = table.get(("fedavg-attack", ratio), (math.nan,))[0]
        out[ratio] = protocol - attack
    return out


def _signed(gain: float | None) -> str:
    """A gain cell: "+0.012", or "not run" where the sweep has no runs at that ratio."""
    return "not run" if gain is None or not math.isfinite(gain) else f"{gain:+.3f}"


def _results_folder(sweep) -> Path | None:
    """<results> of a run folder <results>/<method>/ratio-<r>/seed-<s>."""
    if not sweep.main:
        return None
    return Path(sweep.main[0].folder).parents[2]


def _sweep_minutes(sweep) -> float | None:
    folder = _results_folder(sweep)
    path = folder / SWEEP_FILE if folder else None
    if not path or not path.is_file():
        return None
    sessions = json.loads(path.read_text()).get("sessions", [])
    return sum(s.get("wall_seconds", 0) for s in sessions) / 60


def _classes_per_client(config: dict) -> tuple[float, float] | None:
    """Mean number of classes per client, and of classes holding >= 10% of a client's images,
    recomputed from the recorded partition parameters (labels only; no images are read)."""
    if config.get("task") != "fmnist":
        return None
    try:
        from fl.learning.images import FASHION_MNIST_FILES, FASHION_MNIST_ROOT, dirichlet_partition, read_idx

        root = Path(config.get("data_file") or FASHION_MNIST_ROOT)
        labels = read_idx(root / FASHION_MNIST_FILES["train_labels"])
        shares = dirichlet_partition(labels, int(config["clients"]), int(config["samples_per_client"]),
                                     float(config["dirichlet_alpha"]), int(config["seed"]))
    except Exception:  # noqa: BLE001 - the data may be absent where the report is rebuilt
        return None
    counts = [np.bincount(labels[s], minlength=10) for s in shares]
    present = float(np.mean([(c > 0).sum() for c in counts]))
    major = float(np.mean([(c >= 0.1 * c.sum()).sum() for c in counts]))
    return present, major


def detection_lines(sweep) -> list[str]:
    """How often the voters rejected a poisoned aggregate (a round with at least one malicious
    proposer) and an honest one, over all protocol runs of each ratio."""
    rows = []
    for ratio in sweep.ratios:
        runs = sweep.cell("protocol", ratio) if "protocol" in sweep.methods else []
        records = [row for run in runs for row in run.rows]
        poisoned = [row for row in records if int(row["malicious_proposers"]) > 0]
        honest = [row for row in records if int(row["malicious_proposers"]) == 0]
        rejected = lambda rs: sum(row["decision"] == "rejected" for row in rs)  # noqa: E731
        share = lambda rs: f"{rejected(rs)}/{len(rs)} ({rejected(rs) / len(rs):.0%})" if rs else "-"  # noqa: E731
        if records:
            rows.append([f"{ratio:g}", str(len(runs)), share(poisoned), share(honest)])
    if not rows:
        return []
    header = ["malicious ratio", "protocol runs", "poisoned rounds rejected", "honest rounds rejected"]
    lines = ["Voters' decisions: rounds with at least one malicious proposer (poisoned) and rounds "
             "with honest proposers only, summed over the protocol runs:", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


DISCUSSION_FILE = "DISCUSSION.md"  # authored reading of a sweep's numbers, kept beside its runs


def image_task_lines(sweep, sweeps: Sequence) -> list[str]:
    """Markdown for the end of an image task's section (plus ``<results>/DISCUSSION.md`` verbatim)."""
    lines = _computed_lines(sweep, sweeps)
    folder = _results_folder(sweep)
    if lines and folder is not None and (folder / DISCUSSION_FILE).is_file():
        lines += [(folder / DISCUSSION_FILE).read_text().strip(), ""]
    return lines


def _computed_lines(sweep, sweeps: Sequence) -> list[str]:
    main = sweep.main
    if not main:
        return []
    config = next((r.config for r in main if r.method == "protocol"), main[0].config)
    alpha = float(config.get("dirichlet_alpha", math.inf))
    per_client = int(config.get("samples_per_client", 0))
    n_val = min(per_client - 1, max(1, int(round(0.2 * per_client)))) if per_client else 0
    lines = ["### Image task: data, sizes and time", ""]
    split = "IID (uniform random shares)" if math.isinf(alpha) else f"non-IID, Dirichlet concentration alpha = {alpha:g}"
    lines.append(
        f"- Data: `{config.get('task')}`, {config['clients']} clients x {per_client} images "
        f"({per_client - n_val} train + {n_val} private validation each), {split}; global test set of "
        f"2,000 held-out images; model `{config.get('model', 'cnn')}` (instance-normalised input); "
        f"voters score with `{voter_score(config)}` (mean one-vs-rest AUROC over the classes present in "
        f"their validation split); {config['local_epochs']} local epoch(s), lr {config['lr']:g}, batch 32."
    )
    classes = _classes_per_client(config)
    if classes:
        lines.append(f"- Label skew of this split (seed {config['seed']}): a client holds {classes[0]:.1f} of the 10 "
                     f"classes on average, {classes[1]:.1f} of them with at least 10% of its images.")
    minutes = _sweep_minutes(sweep)
    per_method = {}
    for run in main:
        seconds = run.summary.get("wall_seconds")
        if seconds is not None:
            per_method.setdefault(run.method, []).append(float(seconds))
    timing = ", ".join(f"{m} {np.mean(v):.0f} s" for m, v in sorted(per_method.items()))
    lines.append(
        f"- Size run: {len(main)} runs of {sweep.rounds} rounds"
        + (f", {minutes:.0f} min of wall-clock time for the sweep" if minutes is not None else "")
        + f" (2-core machine shared with other jobs); mean wall time per run: {timing}."
    )
    lines.append("")

    window = settled_window(sweep)
    lines += [f"### Test AUROC after convergence: the last {window} of {sweep.rounds} rounds", ""]
    lines.append(
        f"The tables above average every round of these short runs, the first learning rounds included. "
        f"The paper's Table 4 reports AUROC \"after they fully converge\"; here that is the second half of "
        f"each run (mean over its last {window} rounds), mean ± std over seeds:"
    )
    lines.append("")
    settled = tail_table(sweep, "test_auroc", window)
    header = ["method", *[f"ratio {r:g}" for r in sweep.ratios]]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for method in sweep.methods:
        cells = [f"{fmt(*settled[(method, r)][:2])} (n={settled[(method, r)][2]})" if settled[(method, r)][2]
                 else "n/a" for r in sweep.ratios]
        lines.append("| " + " | ".join([METHOD_NAMES.get(method, method), *cells]) + " |")
    lines.append("")

    lines += detection_lines(sweep)
    lines += ["### The paper's non-IID finding (Sec. 6.2.4)", ""]
    if is_iid(sweep):
        lines += ["This sweep is IID; the comparison is made in the non-IID sweep's section.", ""]
        return lines
    lines.append(
        "The paper: on the harder non-IID task the gain of the protocol over FedAvg with attackers is larger "
        "than on the IID task. Gain = protocol minus FedAvg w/ mal in test AUROC, mean over seeds of each "
        "run's mean over the second half of its rounds (this sweep: the last "
        f"{window}; lending's 100-round runs: the last 50, its Table 3 window):"
    )
    lines.append("")
    # each protocol method of this sweep against the same method on the IID sweeps (v1 `protocol`
    # runs and the v2 review rules are different protocols: never compared with each other)
    methods = [m for m in PROTOCOL_MAIN if m in sweep.methods] or ["protocol"]
    others = [s for s in sweeps if s is not sweep and is_iid(s) and s.main]
    header = ["malicious ratio"] + [f"gain here ({sweep.task}, {m})" for m in methods] + [
        f"gain on {s.task} (IID, {m})" for s in others for m in methods]
    rows = []
    for ratio in sweep.ratios:
        row = [f"{ratio:g}"] + [_signed(gaps(sweep, last=window, method=m).get(ratio)) for m in methods]
        for other in others:
            row += [_signed(gaps(other, last=settled_window(other), method=m).get(ratio)) for m in methods]
        rows.append(row)
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    if not others:
        lines += ["No IID sweep in this report: the finding is **not tested** (rebuild the report with the "
                  "lending results folder as well).", ""]
        return lines
    for other, method in [(o, m) for o in others for m in methods]:
        mine = gaps(sweep, last=window, method=method)
        theirs = gaps(other, last=settled_window(other), method=method)
        common = [r for r in sweep.ratios if not math.isnan(mine.get(r, math.nan)) and not math.isnan(theirs.get(r, math.nan))]
        if not common:
            lines.append(f"- `{method}` vs `{other.task}`: no common ratios with runs of both, **not tested**.")
            continue
        larger = [r for r in common if mine[r] > theirs[r]]
        mean_mine = float(np.mean([mine[r] for r in common]))
        mean_theirs = float(np.mean([theirs[r] for r in common]))
        verdict = "**holds**" if len(larger) == len(common) else (
            "**does not hold**" if not larger else "**holds at some ratios only**")
        lines.append(
            f"- `{method}` vs `{other.task}`: the gain here is larger at {len(larger)} of {len(common)} ratios "
            f"(mean gain {mean_mine:+.3f} here vs {mean_theirs:+.3f}): the finding {verdict}."
        )
    lines.append("")
    return lines
