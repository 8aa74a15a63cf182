"""The image task's report lines: grouping key, voters' score and the non-IID finding verdict."""

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from fl.experiments.report_images import gaps, image_task_lines, sweep_label, voter_score


@dataclass
class FakeRun:
    method: str
    task: str
    config: dict
    ratio: float = 0.0
    values: list = field(default_factory=list)  # test AUROC per round
    folder: str = "/nonexistent/results/method/ratio-0.1/seed-0"
    summary: dict = field(default_factory=lambda: {"wall_seconds": 10.0})

    def column(self, name):
        return np.array(self.values, dtype=float)

    @property
    def rows(self):
        poisoned = self.method == "fedavg-attack"
        return [{"malicious_proposers": str(int(poisoned)), "decision": "rejected" if poisoned else "accepted"}
                for _ in self.values]


class FakeSweep:
    """Just what fl.experiments.report_images reads from fl.experiments.report.Sweep: one run per (method, ratio) whose
    AUROC is 0.5 for the first half of its rounds, then the given value."""

    def __init__(self, task, config, protocol, attack, rounds=40, protocol_method="protocol"):
        self.task = task
        self.ratios = sorted(protocol)
        self.methods = ["fedavg-attack", protocol_method]
        self.rounds = rounds
        self.main = [
            FakeRun(m, config["task"], config, r, [0.5] * (rounds // 2) + [v] * (rounds - rounds // 2))
            for m, values in ((protocol_method, protocol), ("fedavg-attack", attack)) for r, v in values.items()
        ]

    def cell(self, method, ratio):
        return [r for r in self.main if r.method == method and r.ratio == ratio]

    def table(self, metric):
        return {(m, r): (float(np.mean(run.values)), 0.0, 1) for m in self.methods for r in self.ratios
                for run in self.cell(m, r)}


IMAGE_CONFIG = {"task": "fmnist", "dirichlet_alpha": 0.5, "clients": 30, "samples_per_client": 200,
                "local_epochs": 1, "lr": 0.003, "seed": 0, "score": "accuracy", "model": "cnn"}
LENDING_CONFIG = {"task": "lending", "score": "accuracy"}


def test_sweep_label__image_tasks_split_by_alpha():
    assert sweep_label("lending", LENDING_CONFIG) == "lending"
    assert sweep_label("fmnist", IMAGE_CONFIG) == "fmnist-alpha0.5"
    assert sweep_label("fmnist", {**IMAGE_CONFIG, "dirichlet_alpha": math.inf}) == "fmnist-iid"


def test_voter_score__image_task_is_auroc_whatever_the_config_says():
    assert voter_score(IMAGE_CONFIG) == "auroc"
    assert voter_score(LENDING_CONFIG) == "accuracy"


@pytest.mark.parametrize(
    ("image_gain", "expected"),
    [(0.05, "the finding **holds**"), (0.0, "the finding **does not hold**")],
)
def test_image_task_lines__gain_compared_with_the_iid_task(image_gain, expected):
    lending = FakeSweep("lending", LENDING_CONFIG, {0.1: 0.70, 0.2: 0.70}, {0.1: 0.69, 0.2: 0.68}, rounds=100)
    image = FakeSweep("fmnist-alpha0.5", IMAGE_CONFIG, {0.1: 0.90 + image_gain, 0.2: 0.90 + image_gain},
                      {0.1: 0.90, 0.2: 0.90})

    lines = "\n".join(image_task_lines(image, [lending, image]))

    assert gaps(lending, last=50) == pytest.approx({0.1: 0.01, 0.2: 0.02})
    assert gaps(lending) == pytest.approx({0.1: 0.005, 0.2: 0.01})  # the whole run, first half included
    assert "Dirichlet concentration alpha = 0.5" in lines
    assert "| 0.1 | 1 | - | 0/40 (0%) |" in lines  # the fake protocol runs have honest rounds only
    assert expected in lines


def test_image_task_lines__no_iid_sweep__not_tested():
    image = FakeSweep("fmnist-alpha0.5", IMAGE_CONFIG, {0.1: 0.9}, {0.1: 0.8})

    lines = "\n".join(image_task_lines(image, [image]))

    assert "**not tested**" in lines


def test_image_task_lines__review_rule_compared_only_with_the_same_rule():
    """A v2 review rule's gain is never set against the v1 `protocol` runs of the IID sweep."""
    lending = FakeSweep("lending", LENDING_CONFIG, {0.1: 0.70}, {0.1: 0.69}, rounds=100,
                        protocol_method="protocol-cosine")
    iid_v1 = FakeSweep("fmnist-iid", {**IMAGE_CONFIG, "dirichlet_alpha": float("inf")}, {0.1: 0.95}, {0.1: 0.90})
    image = FakeSweep("fmnist-alpha0.5", IMAGE_CONFIG, {0.1: 0.95}, {0.1: 0.90}, protocol_method="protocol-cosine")

    lines = "\n".join(image_task_lines(image, [lending, iid_v1, image]))

    assert "| 0.1 | +0.050 | +0.010 | not run |" in lines  # here; lending (same rule); the v1 IID sweep has no cosine runs
    assert "`protocol-cosine` vs `lending`: the gain here is larger at 1 of 1 ratios" in lines
    assert "`protocol-cosine` vs `fmnist-iid`: no common ratios with runs of both, **not tested**." in lines
