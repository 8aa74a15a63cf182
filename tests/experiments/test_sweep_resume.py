"""Resuming a sweep: finished protocol runs made under another review rule (the rule a run records
in its config.json, the one `ape run simulate` used) are not counted done."""

import json
from dataclasses import asdict

from fl.experiments.sweep import other_rule_runs, plan_sweep
from fl.simulation.rounds import SimulationConfig


def _finish(folder, review):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"rounds_completed": 1}))
    (folder / "config.json").write_text(json.dumps({"simulation": asdict(SimulationConfig(review=review))}))


def test_other_rule_runs__names_finished_protocol_runs_of_another_rule_only(tmp_path):
    # Prepare: `protocol` runs the config's rule (the task's default); seed 1 finished under another rule
    base = SimulationConfig(clients=6, rounds=1, review="cosine_floor_rel")
    specs = plan_sweep(base, [0.3], [0, 1, 2], ["protocol", "protocol-aggregate", "fedavg-attack"])
    by_folder = {s.folder(tmp_path): s for s in specs}
    same = tmp_path / "protocol" / "ratio-0.3" / "seed-0"
    other = tmp_path / "protocol" / "ratio-0.3" / "seed-1"
    fixed = tmp_path / "protocol-aggregate" / "ratio-0.3" / "seed-0"
    _finish(same, "cosine_floor_rel")
    _finish(other, "cosine_floor_t0")
    _finish(fixed, "aggregate")
    assert {same, other, fixed} <= set(by_folder)

    # Execute
    stale = other_rule_runs(specs, tmp_path)

    # Assert
    assert stale == [(other, "cosine_floor_t0", "cosine_floor_rel")]


def test_other_rule_runs__unfinished_or_unrecorded_runs_are_not_named(tmp_path):
    base = SimulationConfig(clients=6, rounds=1, review="cosine_floor")
    specs = plan_sweep(base, [0.3], [0], ["protocol"])
    folder = specs[0].folder(tmp_path)
    _finish(folder, "aggregate")
    (folder / "summary.json").write_text(json.dumps({"interrupted": True}))

    assert other_rule_runs(specs, tmp_path) == []  # interrupted: it reruns anyway

    (folder / "summary.json").write_text(json.dumps({"rounds_completed": 1}))
    (folder / "config.json").write_text(json.dumps({"simulation": {}}))  # made before the review rules

    assert other_rule_runs(specs, tmp_path) == []
