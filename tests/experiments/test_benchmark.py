"""The defence benchmark grid: its plan, the f each robust rule gets, one chainless cell end to end
(no Ape imported), the skip-finished rule and the report section."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fl.experiments.benchmark import (
    CHAINLESS_DEFENCES,
    NO_ATTACK,
    PROTOCOL_AGGREGATE,
    PROTOCOL_PER_PROPOSAL,
    assumed_byzantine,
    attacks_for,
    check_defences,
    expand_defences,
    is_done,
    plan_benchmark,
    run_chainless,
)
from fl.simulation.rounds import SimulationConfig, aggregate_accepted


@pytest.mark.parametrize(
    ("rule", "ratio", "expected"),
    [("krum", 0.4, 3), ("multi_krum", 0.4, 3), ("bulyan", 0.4, 1), ("bulyan", 0.2, 1), ("trimmed_mean", 0.4, 4),
     ("krum", 0.2, 2), ("median", 0.4, 4), ("krum", 0.0, 0)],
)
def test_assumed_byzantine__ten_proposers__expected_capped_at_the_precondition(rule, ratio, expected):
    assert assumed_byzantine(rule, 10, ratio) == expected


@pytest.mark.parametrize("rule", ["krum", "multi_krum", "bulyan", "trimmed_mean"])
@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_assumed_byzantine__equals_what_the_round_loop_uses(rule, ratio):
    import torch

    reference = {"w": torch.zeros(3)}
    updates = [({"w": torch.full((3,), float(i))}, 1) for i in range(10)]
    from fl.defences.aggregators import AGGREGATORS

    f = assumed_byzantine(rule, 10, ratio)
    expected = AGGREGATORS[rule](updates, reference, num_byzantine=f)

    assert torch.equal(aggregate_accepted(rule, updates, reference, ratio)["w"], expected["w"])


def test_plan__per_proposal_review_defaults_to_the_tasks_recommended_rule():
    fmnist = SimulationConfig(clients=30, rounds=2, task="fmnist")

    default = plan_benchmark(fmnist, [PROTOCOL_PER_PROPOSAL], ["ipm"], [0.4], [0])
    chosen = plan_benchmark(fmnist, [PROTOCOL_PER_PROPOSAL], ["ipm"], [0.4], [0], "cosine_floor")

    assert {s.review for s in default} == {"cosine_floor_rel"}
    assert {s.review for s in chosen} == {"cosine_floor"}


def test_plan__counts_order_and_configs():
    base = SimulationConfig(clients=50, rounds=5)
    attacks = attacks_for("lending")

    specs = plan_benchmark(base, ["krum", PROTOCOL_PER_PROPOSAL, "fedavg"], attacks, [0.2, 0.4], [0, 1])

    per_defence_seed = 1 + 2 * (len(attacks) - 1)
    assert len(specs) == 3 * 2 * per_defence_seed
    assert "backdoor" not in attacks and attacks[0] == NO_ATTACK
    assert [s.seed for s in specs] == sorted(s.seed for s in specs)  # seed by seed
    first_seed = [s.defence for s in specs if s.seed == 0]
    assert first_seed.index(PROTOCOL_PER_PROPOSAL) == len(first_seed) - per_defence_seed  # chainless first
    krum = next(s for s in specs if s.defence == "krum" and s.attack == "ipm" and s.ratio == 0.4)
    assert krum.config.aggregator == "krum" and krum.num_byzantine == 3 and krum.config.malicious_roles == "proposer"
    clean = next(s for s in specs if s.attack == NO_ATTACK)
    assert clean.ratio == 0.0 and clean.config.attack == "label_flip"
    protocol = next(s for s in specs if s.defence == PROTOCOL_PER_PROPOSAL)
    assert protocol.review == "cosine_floor" and protocol.aggregator == "fedavg"
    assert len({s.folder(Path("r")) for s in specs}) == len(specs)


def test_plan__bad_names__clear_errors():
    with pytest.raises(ValueError, match="unknown defence"):
        check_defences(["fedavg", "protocol-per-proposal+nonsense"])
    with pytest.raises(ValueError, match="image task"):
        attacks_for("lending", ["backdoor"])
    with pytest.raises(ValueError, match="unknown attacks"):
        attacks_for("fmnist", ["sybil"])
    assert "backdoor" in attacks_for("fmnist")


def test_expand_all__every_column_and_the_named_best():
    defences = expand_defences(["all"], "median", Path("nowhere"), "lending")

    assert defences == [*CHAINLESS_DEFENCES, PROTOCOL_AGGREGATE, PROTOCOL_PER_PROPOSAL, "protocol-per-proposal+median"]


def _write_cell(root: Path, defence: str, attack: str, ratio: float, seed: int, aurocs, rejected=None, summary=None,
                asr=None):
    folder = root / defence / attack / f"ratio-{ratio:g}" / f"seed-{seed}"
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({
        "benchmark": True, "defence": defence, "attack": attack, "malicious_ratio": ratio, "seed": seed,
        "config": {"task": "lending"}, "review": None, "num_byzantine": 0}))
    (folder / "summary.json").write_text(json.dumps(summary or {}))
    columns = ["round", "decision", "proposers", "malicious_proposers", "test_auroc", "test_accuracy",
               "malicious_accepted", "malicious_rejected", "honest_accepted", "honest_rejected", "attack_success_rate"]
    with open(folder / "metrics.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, auroc in enumerate(aurocs):
            mal_rej, hon_rej = rejected or (0, 0)
            writer.writerow([i + 1, "accepted", 10, 2, auroc, 0.9, 2 - mal_rej, mal_rej, 8 - hon_rej, hon_rej,
                             "" if asr is None else asr])


def test_report__last_half_means_rejections_and_losses(tmp_path):
    from fl.experiments.benchmark import best_chainless_aggregator
    from fl.experiments.benchmark_report import benchmark_section, load_cells

    _write_cell(tmp_path, "fedavg", NO_ATTACK, 0.0, 0, [0.1, 0.1, 0.8, 0.8])
    _write_cell(tmp_path, "fedavg", "ipm", 0.2, 0, [0.1, 0.1, 0.5, 0.7])
    _write_cell(tmp_path, "median", "ipm", 0.2, 0, [0.1, 0.1, 0.7, 0.7])
    _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.2, 0, [0.1, 0.1, 0.6, 0.6], rejected=(2, 1),
                summary={"network": "ethereum:local:foundry"})
    (tmp_path / "sweep.json").write_text(json.dumps({"sessions": [
        {"started": "2026-11-30T06:00:00+00:00", "wall_seconds": 600, "command": "c", "made": 4, "benchmark": True,
         "finished": "2026-11-30T06:10:00+00:00"},
        {"started": "2026-11-30T07:00:00+00:00", "wall_seconds": 60, "command": "k", "made": 0, "benchmark": True,
         "last_saved": "2026-11-30T07:01:00+00:00"}]}))

    cells = {(c.defence, c.attack): c for c in load_cells(tmp_path)}
    lines = "\n".join(benchmark_section(tmp_path, tmp_path / "figures", tmp_path))

    assert cells[("fedavg", "ipm")].auroc == pytest.approx(0.6)
    assert cells[(PROTOCOL_PER_PROPOSAL, "ipm")].malicious_rejected == 8
    assert "| ipm @ 0.2 | 0.600 | 0.700 | 0.600 |" in lines
    assert "100% / 12%" in lines  # 8 of 8 malicious, 4 of 32 honest proposals rejected
    assert "ipm @ 0.2: 0.600 vs Median 0.700" in lines
    assert "ipm @ 0.2 0.600" in lines  # more than 2 points below clean FedAvg 0.800
    assert "11 min of wall-clock time" in lines
    assert "`c`: started 2026-11-30T06:00:00+00:00, 10 min, 4 runs made\n" in lines + "\n"
    assert "`k`: started 2026-11-30T07:00:00+00:00, 1 min, 0 runs made, killed (no end recorded)" in lines
    assert "the stake protocol on `ethereum:local:foundry`" in lines  # read from the runs, not assumed
    assert (tmp_path / "figures" / "benchmark-lending-4-rounds.png").stat().st_size > 0
    assert best_chainless_aggregator(tmp_path) == "median"


def test_chainless_cell__runs_the_loop_with_the_aggregator_and_imports_no_ape(tmp_path):
    """One tiny cell in a fresh interpreter: finished, skip-finished, the recorded f, no Ape module."""
    script = f"""
import json, sys
from pathlib import Path
from fl.simulation.rounds import SimulationConfig
from fl.experiments.benchmark import plan_benchmark, run_chainless_in_worker, is_done, _loaded_ape_modules
base = SimulationConfig(clients=20, rounds=2, proposer_fraction=0.5)
spec = [s for s in plan_benchmark(base, ["krum"], ["none", "sign_flip"], [0.4], [0]) if s.attack == "sign_flip"][0]
summary = run_chainless_in_worker(spec, {str(tmp_path)!r})
folder = spec.folder(Path({str(tmp_path)!r}))
stamp = (folder / "metrics.csv").stat().st_mtime_ns
again = run_chainless_in_worker(spec, {str(tmp_path)!r})
print(json.dumps({{"done": is_done(folder), "rounds": summary["rounds_completed"], "same": again == summary,
                  "untouched": (folder / "metrics.csv").stat().st_mtime_ns == stamp,
                  "f": json.loads((folder / "experiment.json").read_text())["num_byzantine"],
                  "ape": _loaded_ape_modules()}}))
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result == {"done": True, "rounds": 2, "same": True, "untouched": True, "f": 3, "ape": []}


def test_run_lock__a_second_process_on_the_same_cell__run_busy(tmp_path):
    from fl.experiments.benchmark import RunBusy, _locked

    folder = tmp_path / "krum" / "ipm" / "ratio-0.4" / "seed-0"
    with _locked(folder):
        with pytest.raises(RunBusy, match="another benchmark"):
            with _locked(folder):
                pass
    with _locked(folder):  # released
        pass


def test_report__paired_differences_count_at_the_largest_ratio_and_backdoor_target(tmp_path):
    from fl.experiments.benchmark_report import benchmark_section, load_cells, paired_difference

    # seed 0 is an easy split for both columns, seed 1 a hard one: the means differ by 5 points,
    # the seed-by-seed differences by 4 and 6
    for seed, (protocol, median) in enumerate([(0.80, 0.84), (0.50, 0.56)]):
        _write_cell(tmp_path, "fedavg", NO_ATTACK, 0.0, seed, [0.9, 0.9])
        _write_cell(tmp_path, "median", "ipm", 0.4, seed, [median, median])
        _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.4, seed, [protocol, protocol])
        _write_cell(tmp_path, "median", "sign_flip", 0.4, seed, [0.5, 0.5])
        _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "sign_flip", 0.4, seed, [0.7, 0.7])
    for defence, asr in (("fedavg", 0.9), ("median", 0.8), (PROTOCOL_PER_PROPOSAL, 0.2), (PROTOCOL_AGGREGATE, 0.5)):
        _write_cell(tmp_path, defence, "backdoor", 0.2, 0, [0.7, 0.7], asr=asr)
    (tmp_path / "NOTES.md").write_text("Authored: why 20 rounds.\n")
    cells = load_cells(tmp_path)

    mean, sd, n = paired_difference(cells, ("ipm", 0.4), PROTOCOL_PER_PROPOSAL, "median")
    lines = "\n".join(benchmark_section(tmp_path, tmp_path / "figures", tmp_path))

    assert (mean, n) == (pytest.approx(-0.05), 2) and sd == pytest.approx(0.02 / 2 ** 0.5)  # sd of (-0.04, -0.06)
    assert "(paired by seed: -5.0 ± 1.4 points, 2 seeds)" in lines
    assert "at ratio 0.4, under 1 of 2 attacks" in lines
    assert "\nAuthored: why 20 rounds.\n" in lines  # the grid's NOTES.md, verbatim
    assert "0.200 vs FedAvg 0.900 (target at most a third, 0.300: met)" in lines
    assert "0.500 vs FedAvg 0.900 (target at most a third, 0.300: missed)" in lines


def test_report__verdicts_compare_over_the_seeds_both_columns_have(tmp_path):
    """A protocol column run on seeds 0-1 against aggregators run on seeds 0-2: the verdicts
    (behind, the 0.2 target, the backdoor target) must not set a 2-seed mean against a 3-seed
    mean. Seed 2 is a hard split for everyone, so the 3-seed means would flatter the protocol."""
    from fl.experiments.benchmark_report import benchmark_section

    for seed, (protocol, median, clean, asr) in enumerate([(0.80, 0.82, 0.84, 0.30), (0.80, 0.82, 0.84, 0.30),
                                                           (None, 0.40, 0.50, 0.10)]):
        _write_cell(tmp_path, "fedavg", NO_ATTACK, 0.0, seed, [clean, clean])
        _write_cell(tmp_path, "median", "ipm", 0.4, seed, [median, median])
        _write_cell(tmp_path, "median", "ipm", 0.2, seed, [median, median])
        _write_cell(tmp_path, "fedavg", "backdoor", 0.4, seed, [0.7, 0.7], asr=asr * 3)
        if protocol is not None:
            _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.4, seed, [protocol, protocol])
            _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.2, seed, [protocol + 0.01, protocol + 0.01])
            _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "backdoor", 0.4, seed, [0.7, 0.7], asr=asr + 0.01)

    lines = "\n".join(benchmark_section(tmp_path, tmp_path / "figures", tmp_path))

    assert "ipm @ 0.4: 0.800 vs Median 0.820 over seeds 0, 1" in lines  # 3-seed median: 0.680
    assert "at ratio 0.4, under 0 of 1 attacks" in lines  # backdoor: no robust column
    assert "clean FedAvg (0.840 over seeds 0, 1): ipm @ 0.2 0.810." in lines  # 3-seed clean: 0.727
    assert "0.310 vs FedAvg 0.900 over seeds 0, 1 (target at most a third, 0.300: missed)" in lines


def test_report__two_grids_of_one_task__own_heading_and_figure(tmp_path):
    """A longer-horizon grid of the same task must not overwrite the other's heatmap."""
    from fl.experiments.benchmark_report import benchmark_section

    short, long = tmp_path / "benchmark-lending", tmp_path / "benchmark-lending-100"
    for root, aurocs in ((short, [0.5, 0.6]), (long, [0.5, 0.6, 0.7, 0.8])):
        _write_cell(root, "fedavg", NO_ATTACK, 0.0, 0, aurocs)
        _write_cell(root, "median", "ipm", 0.4, 0, aurocs)
    figures = tmp_path / "figures"

    first = "\n".join(benchmark_section(short, figures, tmp_path))
    second = "\n".join(benchmark_section(long, figures, tmp_path))

    assert "## Defence benchmark (issue 12): lending, 2 rounds" in first
    assert "## Defence benchmark (issue 12): lending, 4 rounds" in second
    assert "(figures/benchmark-lending-2-rounds.png)" in first and "(figures/benchmark-lending-4-rounds.png)" in second
    assert (figures / "benchmark-lending-2-rounds.png").is_file() and (figures / "benchmark-lending-4-rounds.png").is_file()


def test_report__attackers_share_of_the_proposals_per_column(tmp_path):
    """Chainless and protocol columns draw their proposers differently: the report shows each
    column's share of attackers among the proposals, the draw a cell's score depends on."""
    from fl.experiments.benchmark_report import benchmark_section, draw_share_table, load_cells

    _write_cell(tmp_path, "fedavg", NO_ATTACK, 0.0, 0, [0.5, 0.6])
    _write_cell(tmp_path, "fedavg", "ipm", 0.4, 0, [0.5, 0.6])  # 2 of 10 a round: 20%
    _write_cell(tmp_path, "fedavg", "ipm", 0.4, 1, [0.5, 0.6])
    _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.4, 0, [0.5, 0.6], rejected=(1, 0))
    folder = tmp_path / PROTOCOL_PER_PROPOSAL / "ipm" / "ratio-0.4" / "seed-0" / "metrics.csv"
    text = folder.read_text().splitlines()
    header = text[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in text[1:]]
    for row in rows:  # 4 of 10 malicious in this cell
        row.update(malicious_accepted="3", malicious_rejected="1", honest_accepted="6", honest_rejected="0")
    folder.write_text("\n".join([",".join(header)] + [",".join(r[h] for h in header) for r in rows]) + "\n")

    cells = load_cells(tmp_path)
    table = draw_share_table(cells, ["fedavg", PROTOCOL_PER_PROPOSAL])

    assert table[0] == "| attack @ ratio | FedAvg | Protocol (per-proposal) |"
    assert "| ipm @ 0.4 | 20% | 40% |" in table
    assert not any(line.startswith("| none") for line in table)
    assert "Attackers' share of the proposals" in "\n".join(benchmark_section(tmp_path, tmp_path / "f", tmp_path))


def test_report__grid_without_ratio_02__no_verdict_on_it(tmp_path):
    """A grid of ratio 0.4 only must not say "none" are below clean FedAvg at 0.2: it ran none there."""
    from fl.experiments.benchmark_report import benchmark_section

    _write_cell(tmp_path, "fedavg", NO_ATTACK, 0.0, 0, [0.8, 0.8])
    _write_cell(tmp_path, "median", "ipm", 0.4, 0, [0.7, 0.7])
    _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.4, 0, [0.75, 0.75])

    lines = "\n".join(benchmark_section(tmp_path, tmp_path / "f", tmp_path))

    assert "under 1 of 1 attacks" in lines
    assert "At ratio 0.2" not in lines


def test_resume__finished_runs_of_another_review_rule__refused_not_counted_done(tmp_path):
    """A grid resumed with another --per-proposal-review must not mix the old rule's runs into
    the column (they used to count as done: the column then held two rules under one name)."""
    from fl.experiments.benchmark import run_benchmark

    base = SimulationConfig(clients=20, rounds=2, proposer_fraction=0.5)
    spec = plan_benchmark(base, [PROTOCOL_PER_PROPOSAL], [NO_ATTACK], [0.4], [0], per_proposal_review="cosine")[0]
    folder = spec.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"rounds_completed": 2}))
    (folder / "experiment.json").write_text(json.dumps({"review": "cosine"}))

    with pytest.raises(ValueError, match=r"1 finished run.*review rule cosine.*cosine_floor"):
        run_benchmark(base, [PROTOCOL_PER_PROPOSAL], [NO_ATTACK], [0.4], [0], tmp_path,
                      per_proposal_review="cosine_floor", echo=lambda *a: None)
    assert (folder / "summary.json").is_file()  # nothing removed


def test_resume__finished_chainless_runs_of_the_former_draw__refused(tmp_path):
    """Chainless runs made before the contract-draw replay (no "draw" in config.json) drew other
    proposers than the protocol runs: a resumed grid must not count them done."""
    from fl.experiments.benchmark import run_benchmark

    base = SimulationConfig(clients=20, rounds=2, proposer_fraction=0.5)
    spec = plan_benchmark(base, ["median"], [NO_ATTACK], [0.4], [0])[0]
    folder = spec.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"rounds_completed": 2}))
    (folder / "config.json").write_text(json.dumps({"simulation": {}, "method": "median"}))

    with pytest.raises(ValueError, match=r"1 finished run.*draw seeded.*this grid: contract"):
        run_benchmark(base, ["median"], [NO_ATTACK], [0.4], [0], tmp_path, echo=lambda *a: None)
    assert (folder / "summary.json").is_file()


def test_report__says_which_chainless_runs_drew_the_former_way(tmp_path):
    """The share table's caption follows the runs: a chainless run whose config.json records the
    contract's draw faced the protocol's proposers; one without it (made earlier) did not."""
    from fl.experiments.benchmark_report import benchmark_section, load_cells

    _write_cell(tmp_path, "fedavg", NO_ATTACK, 0.0, 0, [0.5, 0.6])
    _write_cell(tmp_path, "fedavg", "ipm", 0.4, 0, [0.5, 0.6])
    _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.4, 0, [0.5, 0.6], rejected=(1, 0))
    for folder in (tmp_path / "fedavg").rglob("seed-0"):
        (folder / "config.json").write_text(json.dumps({"draw": "contract"}))

    replayed = "\n".join(benchmark_section(tmp_path, tmp_path / "f", tmp_path))
    (tmp_path / "fedavg" / "ipm" / "ratio-0.4" / "seed-0" / "config.json").write_text(json.dumps({}))
    mixed = "\n".join(benchmark_section(tmp_path, tmp_path / "f", tmp_path))

    assert {c.draw for c in load_cells(tmp_path)} == {"contract", "seeded", ""}
    assert "the chainless columns replay the contract's draw" in replayed and "former" not in replayed
    assert "1 of 2 chainless runs drew their proposers with the former seeded generator" in mixed


def test_report__an_interrupted_run_is_not_a_cell(tmp_path):
    """A run stopped part-way (summary.json "interrupted") is not finished: its half-trained
    rounds must not enter the tables (the benchmark reruns it)."""
    from fl.experiments.benchmark_report import load_cells

    _write_cell(tmp_path, "fedavg", "ipm", 0.4, 0, [0.5, 0.6])
    _write_cell(tmp_path, "fedavg", "ipm", 0.4, 1, [0.5, 0.6], summary={"interrupted": True})

    assert [c.seed for c in load_cells(tmp_path)] == [0]


def test_protocol_cells__contracts_compiled_once_before_any_simulation_starts(tmp_path, monkeypatch):
    """Parallel `ape run simulate` processes on a fresh checkout each compiled the contracts and
    fetched OpenZeppelin into contracts/.cache at once; one of them read a half-written cache and
    failed ("Sources ... not found"). The benchmark compiles once, before the first simulation."""
    from fl.experiments import benchmark

    calls = []
    monkeypatch.setattr(benchmark, "compile_contracts", lambda: calls.append("compile"))

    def fake_cell(spec, results, network, simulate_params):
        calls.append(spec.label())
        return {"rounds_completed": 2}

    monkeypatch.setattr(benchmark, "run_protocol_cell", fake_cell)
    base = SimulationConfig(clients=20, rounds=2, proposer_fraction=0.5)
    benchmark.run_benchmark(base, [PROTOCOL_PER_PROPOSAL], [NO_ATTACK], [0.4], [0, 1], tmp_path, jobs=2,
                            echo=lambda *a: None)
    assert calls[0] == "compile" and calls.count("compile") == 1 and len(calls) == 3

    calls.clear()
    benchmark.run_benchmark(base, ["fedavg"], [NO_ATTACK], [0.4], [0], tmp_path, echo=lambda *a: None)
    assert "compile" not in calls  # chainless only: no Ape, no compile


def test_report__run_time_per_column_from_the_runs_themselves(tmp_path):
    """A run's cost travels with the run (summary.json), so runs copied in from another folder count."""
    from fl.experiments.benchmark_report import benchmark_section

    _write_cell(tmp_path, "fedavg", NO_ATTACK, 0.0, 0, [0.5, 0.5], summary={"wall_seconds": 4.0})
    _write_cell(tmp_path, "fedavg", "ipm", 0.2, 0, [0.5, 0.5], summary={"wall_seconds": 6.0})
    _write_cell(tmp_path, "fedavg", "ipm", 0.2, 1, [0.5, 0.5], summary={"wall_seconds": 30.0})
    _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.2, 0, [0.5, 0.5], summary={"wall_seconds": 300.0})
    _write_cell(tmp_path, PROTOCOL_PER_PROPOSAL, "ipm", 0.2, 1, [0.5, 0.5], summary={"wall_seconds": 500.0})
    _write_cell(tmp_path, PROTOCOL_AGGREGATE, "ipm", 0.2, 0, [0.5, 0.5])  # no wall time recorded

    lines = "\n".join(benchmark_section(tmp_path, tmp_path / "figures", tmp_path))

    assert "| FedAvg | 3 | 6 | 30 | 1 |" in lines  # runs, median s, max s, total min (40 s)
    assert "| Protocol (per-proposal) | 2 | 400 | 500 | 13 |" in lines
    assert "| Protocol (paper rule) | 1 | - | - | - |" in lines
    assert "sum of the runs' own wall times" in lines
