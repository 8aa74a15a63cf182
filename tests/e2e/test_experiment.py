"""The reproduction sweep at a tiny size through the real commands, then the report built from it.

`ape run experiment sweep` (baselines in process, protocol runs as `ape run simulate` on the
embedded chain) and `ape run experiment report`, checked on the files and the tables they write.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).parent / "ape")
RATIOS = (0.1, 0.3)
PROTOCOLS = ("protocol-aggregate", "protocol-cosine")  # the default methods' two review rules


def _ape(*args, timeout=600):
    return subprocess.run([APE, "run", "experiment", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    results = tmp_path_factory.mktemp("results") / "lending"
    args = ["sweep", "--results", str(results), "--clients", "10", "--rounds", "2", "--seeds", "1",
            "--ratios", ",".join(map(str, RATIOS)), "--survival-stakes", "8,16", "--voter-ratio", "0.3",
            "--jobs", "4"]
    completed = _ape(*args)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return results, args, completed


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    results, _, _ = sweep
    out = tmp_path_factory.mktemp("docs")
    completed = _ape("report", "--results", str(results), "--out", str(out))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out


def test_sweep__writes_one_finished_folder_per_run(sweep):
    results, _, _ = sweep

    expected = {"oracle/ratio-0/seed-0", "fedavg-clean/ratio-0/seed-0"}
    # each review rule gets its own survival runs at every stake, its default stake (8) included
    expected |= {f"{m}-{extra}/ratio-0.3/seed-0" for m in PROTOCOLS for extra in ("pstake8", "pstake16", "voters")}
    expected |= {f"{m}/ratio-{r:g}/seed-0" for m in ("fedavg-attack", *PROTOCOLS) for r in RATIOS}
    actual = {p.parent.relative_to(results).as_posix() for p in results.rglob("summary.json")}

    assert actual == expected
    for name in expected:
        folder = results / name
        assert {"config.json", "metrics.csv", "summary.json", "experiment.json"} <= {p.name for p in folder.iterdir()}
        assert json.loads((folder / "summary.json").read_text())["rounds_completed"] == 2


def test_sweep__protocol_runs_condensed_and_chain_checks_pass(sweep):
    results, _, _ = sweep

    for folder in results.glob("protocol*/ratio-*/seed-0"):
        summary = json.loads((folder / "summary.json").read_text())
        onchain = json.loads((folder / "onchain.json").read_text())
        experiment = json.loads((folder / "experiment.json").read_text())

        assert summary["tokens_conserved"] is True and summary["global_model_hash_matches"] is True
        assert [r["round"] for r in onchain["rounds"]] == [1, 2]
        assert all(r["gas"] > 0 and r["calldata_bytes"] > 0 and r["event_bytes"] > 0 for r in onchain["rounds"])
        assert onchain["update_bytes"] > 0
        assert not (folder / "updates").exists() and not (folder / "events.jsonl").exists()
        assert "ape run simulate" in experiment["command"] and "--malicious-roles" in experiment["command"]
    for method, review in (("protocol-aggregate", "aggregate"), ("protocol-cosine", "cosine")):
        voters = json.loads((results / f"{method}-voters/ratio-0.3/seed-0/experiment.json").read_text())
        main = json.loads((results / f"{method}/ratio-0.3/seed-0/experiment.json").read_text())
        assert voters["config"]["malicious_roles"] == "voter"
        assert voters["config"]["review"] == main["config"]["review"] == review


def test_sweep__baselines_differ_only_by_attackers(sweep):
    results, _, _ = sweep

    clean = json.loads((results / "fedavg-clean/ratio-0/seed-0/experiment.json").read_text())["config"]
    attack = json.loads((results / "fedavg-attack/ratio-0.3/seed-0/experiment.json").read_text())["config"]
    with open(results / "fedavg-attack/ratio-0.3/seed-0/metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))

    assert {k for k in clean if clean[k] != attack[k]} == {"malicious_ratio"}
    assert all(r["decision"] == "accepted" for r in rows)
    assert [int(r["proposers"]) for r in rows] == [2, 2]  # floor(10 * 0.2), as the contract draws


def test_sweep__rerun_skips_finished_runs(sweep):
    results, args, _ = sweep

    completed = _ape(*args)
    sessions = json.loads((results / "sweep.json").read_text())["sessions"]

    assert completed.returncode == 0
    assert "0 to run" in completed.stdout
    assert sessions[-1]["made"] == 0 and sessions[0]["made"] == 14


def test_report__writes_results_figures_and_tables(report):
    out = report

    text = (out / "RESULTS.md").read_text()
    figures = {p.name for p in (out / "figures").iterdir()}

    expected_figures = {f"lending-{n}.png" for n in ("learning-auroc", "learning-accuracy")}
    expected_figures |= {f"lending-{n}-{m}.png" for m in PROTOCOLS
                         for n in ("proposer-tokens", "decisions", "survival", "voters", "cost")}
    assert expected_figures | {"tables.csv"} <= figures
    for name in expected_figures:
        assert f"(figures/{name})" in text
    assert "## Task `lending`" in text and "Table 3" in text
    assert "| method | ratio 0.1 | ratio 0.3 |" in text
    for method in ("FedAvg w/ mal", "FedAvg w/ block, paper's rule (aggregate)",
                   "FedAvg w/ block, per-proposal review (cosine)", "FedAvg w/o mal", "Oracle"):
        assert f"| {method} |" in text
    assert "| FedAvg w/ block (protocol v1, stale) |" not in text  # a fresh default sweep is not the old contracts' runs
    for claim in ("**(a)", "**(b)", "**(c)"):
        assert claim in text
    assert "ape run experiment sweep" in text  # the command and its time


def test_report__table_cells_come_from_the_runs(sweep, report):
    results, _, _ = sweep

    with open(report / "figures" / "tables.csv", newline="") as fh:
        cells = list(csv.DictReader(fh))
    with open(results / "protocol-cosine/ratio-0.3/seed-0/metrics.csv", newline="") as fh:
        aurocs = [float(r["test_auroc"]) for r in csv.DictReader(fh)]
    cell = next(c for c in cells if c["method"] == "protocol-cosine" and c["malicious_ratio"] == "0.3"
                and c["metric"] == "AUROC")

    assert len(cells) == 3 * 5 * len(RATIOS)  # metrics x methods x ratios
    assert float(cell["mean"]) == pytest.approx(sum(aurocs) / len(aurocs), abs=1e-6)
    assert cell["seeds"] == "1" and cell["last_rounds"] == "2"


# --------------------------------------------------------------------- the baselines (no chain)
def test_selection_sizes__match_the_contracts_draw():
    from fl.protocol.draw import selection_sizes
    from fl.protocol.params import ProtocolParams

    expected = [(10, (2, 8)), (50, (10, 40)), (3, (1, 2)), (2, (1, 1)), (37, (7, 30))]

    actual = [(n, selection_sizes(n, ProtocolParams(proposer_fraction=0.2))) for n, _ in expected]

    assert actual == expected


def test_fedavg_baseline__same_models_with_or_without_voters(tmp_path):
    from fl.simulation.baselines import run_fedavg
    from fl.simulation.rounds import SimulationConfig, load_federated_data
    from fl.learning.store import UpdateStore

    config = SimulationConfig(clients=10, rounds=2, malicious_ratio=0.3, malicious_roles="proposer", seed=4)
    data = load_federated_data(config)

    with_voters = run_fedavg(config, data, UpdateStore(str(tmp_path / "a")), with_voters=True)
    without = run_fedavg(config, data, UpdateStore(str(tmp_path / "b")))

    assert [r.global_model_hash for r in with_voters] == [r.global_model_hash for r in without]
    assert [r.voters for r in with_voters] == [8, 8] and [r.voters for r in without] == [0, 0]
    assert all(r.decision == "accepted" for r in without)


def test_oracle__trains_on_the_pooled_rows_and_is_seeded():
    from fl.simulation.baselines import run_oracle
    from fl.simulation.rounds import SimulationConfig, load_federated_data

    config = SimulationConfig(clients=10, rounds=3, seed=2)
    data = load_federated_data(config)

    first, second = run_oracle(config, data), run_oracle(config, data)

    assert [r.global_model_hash for r in first] == [r.global_model_hash for r in second]
    assert len({r.global_model_hash for r in first}) == 3  # the model moves every round
    assert all(r.malicious_proposers == 0 and r.active_malicious == 0 for r in first)


def test_plan_sweep__seed_by_seed_with_extras_only_where_asked():
    from fl.experiments.sweep import plan_sweep
    from fl.simulation.rounds import SimulationConfig

    base = SimulationConfig(rounds=100, malicious_roles="proposer")

    specs = plan_sweep(base, [0.1, 0.4], [0, 1], survival_stakes=[4, 8], voter_ratio=0.3, extra_seeds=[0],
                       extra_rounds=50, variant_scores=["auroc"], variant_ratio=0.4)
    extras_only = plan_sweep(base, [0.1], [0], ["extras"], survival_stakes=[16], voter_ratio=0.3, extra_seeds=[0])

    assert [(s.method, s.ratio, s.seed) for s in specs] == [
        ("oracle", 0.0, 0), ("fedavg-clean", 0.0, 0), ("fedavg-attack", 0.1, 0), ("fedavg-attack", 0.4, 0),
        ("protocol", 0.1, 0), ("protocol", 0.4, 0), ("protocol-voters", 0.3, 0), ("protocol-pstake4", 0.3, 0),
        ("protocol-vote-auroc", 0.4, 0),
        ("oracle", 0.0, 1), ("fedavg-clean", 0.0, 1), ("fedavg-attack", 0.1, 1), ("fedavg-attack", 0.4, 1),
        ("protocol", 0.1, 1), ("protocol", 0.4, 1),
    ]
    by_method = {s.method: s.config for s in specs if s.seed == 0}
    assert by_method["protocol-voters"].malicious_roles == "voter" and by_method["protocol-voters"].rounds == 50
    assert by_method["protocol-pstake4"].proposer_stake == 4 and by_method["protocol-pstake4"].rounds == 50
    assert by_method["protocol-vote-auroc"].score == "auroc" and by_method["protocol-vote-auroc"].rounds == 100
    assert [s.method for s in extras_only] == ["protocol-voters", "protocol-pstake16"]


def test_sweep__a_failed_run__nonzero_exit_naming_it(tmp_path):
    results = tmp_path / "lending"
    failed = _ape("sweep", "--results", str(results), "--methods", "fedavg-clean", "--ratios", "0.3", "--seeds", "1",
                  "--survival-stakes", "", "--voter-ratio", "0", "--clients", "5", "--rounds", "1",
                  "--data-file", str(tmp_path / "missing.csv"))

    assert failed.returncode != 0, failed.stdout[-2000:]
    assert "1 runs failed: fedavg-clean r=0 s=0" in failed.stderr  # the clean baseline runs at ratio 0
    session = json.loads((results / "sweep.json").read_text())["sessions"][-1]
    assert session["failed"] == ["fedavg-clean r=0 s=0"] and "finished" in session


def test_sweep__finished_fedavg_run_of_the_former_draw__refused_with_the_folder(tmp_path):
    """A FedAvg run made before the chainless ledger replayed the contract's draw (config.json
    without "draw") is not counted done: the sweep stops and names it, and removes nothing."""
    results = tmp_path / "lending"
    args = ["sweep", "--results", str(results), "--methods", "fedavg-clean", "--ratios", "0.3", "--seeds", "1",
            "--survival-stakes", "", "--voter-ratio", "0", "--clients", "6", "--rounds", "1"]
    made = _ape(*args)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    folder = results / "fedavg-clean" / "ratio-0" / "seed-0"
    config = json.loads((folder / "config.json").read_text())
    assert config["draw"] == "contract"
    del config["draw"]
    (folder / "config.json").write_text(json.dumps(config))

    refused = _ape(*args)

    assert refused.returncode == 2, refused.stdout[-2000:]
    assert "1 finished FedAvg run(s)" in refused.stderr and str(folder) in refused.stderr
    assert (folder / "summary.json").is_file()


def test_sweep__finished_protocol_run_of_another_review_rule__refused_with_the_folder(tmp_path):
    """`protocol` runs the task's default rule: a finished run made under another rule (say, before
    the default changed) is not counted done; the sweep stops before running anything and names it."""
    results = tmp_path / "lending"
    folder = results / "protocol" / "ratio-0.3" / "seed-0"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"rounds_completed": 1}))
    (folder / "config.json").write_text(json.dumps({"simulation": {"review": "aggregate"}}))

    refused = _ape("sweep", "--results", str(results), "--methods", "protocol", "--ratios", "0.3", "--seeds", "1",
                   "--survival-stakes", "", "--voter-ratio", "0", "--clients", "6", "--rounds", "1")

    assert refused.returncode == 2, refused.stdout[-2000:]
    assert "review rule aggregate" in refused.stderr and str(folder) in refused.stderr
    assert "cosine_floor" in refused.stderr  # the rule this sweep runs (lending's default)
    assert not (results / "sweep.json").exists()
