"""Recorded runs as the report reads them: ``Run``, a task's ``Sweep``, and their statistics (no plotting).

Shared by ``fl.experiments.report`` and ``fl.experiments.report_images``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fl.experiments.sweep import EXPERIMENT_FILE, MAIN_METHODS, ONCHAIN_FILE, PROTOCOL_MAIN, REVIEW_METHODS

LAST_ROUNDS = 50  # the paper's "mean accuracy of the last 50 epochs"
METRICS = ("test_accuracy", "test_balanced_accuracy", "test_auroc")
METRIC_NAMES = {"test_accuracy": "accuracy", "test_balanced_accuracy": "balanced accuracy", "test_auroc": "AUROC"}
METHOD_NAMES = {
    "fedavg-attack": "FedAvg w/ mal",
    "protocol": "FedAvg w/ block (protocol v1, stale)",
    "fedavg-clean": "FedAvg w/o mal",
    "oracle": "Oracle",
    "protocol-aggregate": "FedAvg w/ block, paper's rule (aggregate)",
    "protocol-cosine": "FedAvg w/ block, per-proposal review (cosine)",
}
# table order: the paper's, with each review rule's protocol after the legacy protocol column
TABLE_METHODS = ("fedavg-attack", *PROTOCOL_MAIN, "fedavg-clean", "oracle")


@dataclass
class Run:
    folder: Path
    method: str
    group: str
    task: str
    ratio: float
    seed: int
    config: dict
    rows: list[dict]
    summary: dict
    onchain: dict | None = None

    def column(self, name: str) -> np.ndarray:
        return np.array([_float(r[name]) for r in self.rows], dtype=float)

    @property
    def rounds(self) -> int:
        return len(self.rows)


def _float(value) -> float:
    if value in (None, "", "None", "nan"):
        return math.nan
    return float(value)


def load_runs(folders: Iterable[Path]) -> list[Run]:
    """Every finished run (summary.json + experiment.json) below `folders`."""
    runs = []
    for root in folders:
        for marker in sorted(Path(root).rglob(EXPERIMENT_FILE)):
            folder = marker.parent
            summary_path = folder / "summary.json"
            if not summary_path.is_file():
                continue
            spec = json.loads(marker.read_text())
            with open(folder / "metrics.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            onchain_path = folder / ONCHAIN_FILE
            runs.append(Run(
                folder=folder, method=spec["method"], group=spec["group"], task=spec.get("task", "lending"),
                ratio=float(spec["malicious_ratio"]), seed=int(spec["seed"]), config=spec["config"], rows=rows,
                summary=json.loads(summary_path.read_text()),
                onchain=json.loads(onchain_path.read_text()) if onchain_path.is_file() else None,
            ))
    return runs


# ----------------------------------------------------------------------------- numbers
def tail_mean(run: Run, metric: str, last: int = LAST_ROUNDS) -> float:
    values = run.column(metric)
    if len(values) == 0:
        return math.nan
    return float(np.nanmean(values[-min(last, len(values)):]))


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan, 0
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std, len(values)


def fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if math.isnan(mean):
        return "n/a"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def stack(runs: Sequence[Run], metric: str) -> np.ndarray:
    """Runs x rounds (padded with NaN to the longest run)."""
    longest = max((r.rounds for r in runs), default=0)
    out = np.full((len(runs), longest), np.nan)
    for i, run in enumerate(runs):
        values = run.column(metric)
        out[i, :len(values)] = values
    return out


class Sweep:
    """The runs of one task, indexed the way the figures need them."""

    def __init__(self, runs: list[Run]):
        self.runs = runs
        self.task = runs[0].task
        main = [r for r in runs if r.group == "main"]
        self.ratios = sorted({r.ratio for r in main if r.method in ("fedavg-attack", *PROTOCOL_MAIN)})
        present = {r.method for r in main}
        if present & set(REVIEW_METHODS):  # both review rules side by side, a rule without runs as n/a
            present |= set(REVIEW_METHODS)
        self.methods = [m for m in TABLE_METHODS if m in present]
        # the protocol methods of the main comparison (one per review rule, or the legacy "protocol")
        self.protocol_methods = [m for m in self.methods if m in PROTOCOL_MAIN]
        self.main = main

    def cell(self, method: str, ratio: float) -> list[Run]:
        """Runs of `method` at `ratio` (methods without attackers: every ratio uses their runs)."""
        if method in ("oracle", "fedavg-clean"):
            return [r for r in self.main if r.method == method]
        return [r for r in self.main if r.method == method and abs(r.ratio - ratio) < 1e-9]

    def table(self, metric: str) -> dict[tuple[str, float], tuple[float, float, int]]:
        return {(m, ratio): mean_std([tail_mean(r, metric) for r in self.cell(m, ratio)])
                for m in self.methods for ratio in self.ratios}

    @property
    def rounds(self) -> int:
        return max((r.rounds for r in self.main), default=0)

    def seeds(self, method: str = "protocol") -> list[int]:
        return sorted({r.seed for r in self.main if r.method == method})

    def survival_runs(self, method: str = "protocol") -> dict[float, list[Run]]:
        """Proposer stake -> `method`'s runs at the survival ratio (survival group + main at that ratio)."""
        survival = [r for r in self.runs if r.group == "survival" and r.method.startswith(f"{method}-pstake")]
        if not survival:
            return {}
        ratio = survival[0].ratio
        seeds = {r.seed for r in survival}
        by_stake: dict[float, list[Run]] = defaultdict(list)
        for run in survival:
            by_stake[float(run.config["proposer_stake"])].append(run)
        for run in self.main:
            if run.method == method and abs(run.ratio - ratio) < 1e-9 and run.seed in seeds:
                by_stake[float(run.config["proposer_stake"])].append(run)
        # compare like with like: every run cut to the shortest one's rounds (a run's first n
        # rounds are exactly an n-round run of the same seed: nothing depends on the total)
        shortest = min(r.rounds for runs in by_stake.values() for r in runs)
        return {stake: [replace(r, rows=r.rows[:shortest]) for r in runs] for stake, runs in sorted(by_stake.items())}

    def voter_runs(self, method: str = "protocol") -> list[Run]:
        return [r for r in self.runs if r.group == "voters" and r.method == f"{method}-voters"]


def removal_rounds(run: Run, kind: str) -> tuple[list[int], int]:
    """(rounds at which clients of `kind` (honest|malicious) were removed, clients still active)."""
    active = run.column(f"active_{kind}")
    total = int(run.summary.get(f"{kind}_clients") or (active[0] if len(active) else 0))
    removed, previous = [], total
    for r, count in zip(run.column("round"), active):
        removed += [int(r)] * int(previous - count)
        previous = count
    return removed, int(previous)


def mean_survival(run: Run, kind: str) -> float:
    """Restricted mean rounds until removal, survivors counted at the run's last round."""
    removed, survivors = removal_rounds(run, kind)
    n = len(removed) + survivors
    return (sum(removed) + survivors * run.rounds) / n if n else math.nan


def all_removed_round(run: Run, kind: str = "malicious") -> int | None:
    active = run.column(f"active_{kind}")
    for r, count in zip(run.column("round"), active):
        if count == 0:
            return int(r)
    return None


# ----------------------------------------------------------------------------- figures
