"""Stopping `ape run simulate` (SIGINT, SIGTERM, kill -9) and resuming it, on real processes on the
default chain (each run's own anvil). Signals are sent once the run folder holds a few committed rounds (polled, not
timed), so the tests do not depend on the machine's speed."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fl.simulation.recorder import ResumeMismatch, read_metrics
from fl.simulation.rounds import SimulationConfig
from fl.simulation.runner import CannotResume, resume_simulation, run_simulation

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).parent / "ape")
SMALL = ["--clients", "5", "--proposer-fraction", "0.4", "--malicious-ratio", "0.2", "--seed", "5"]
PLOTS = {"accuracy.png", "tokens.png", "decisions.png"}


def start(folder: Path, rounds: int, *extra: str) -> subprocess.Popen:
    log = open(folder.parent / f"{folder.name}.log", "w")
    return subprocess.Popen(
        [APE, "run", "simulate", *SMALL, "--rounds", str(rounds), "--output", str(folder), *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def read_progress(folder: Path) -> dict:
    return json.loads((folder / "progress.json").read_text())


def committed_rounds(folder: Path) -> int:
    """Rounds the folder holds: progress.json, else whole metrics.csv lines (folders of old code)."""
    try:
        return read_progress(folder)["rounds"]
    except (OSError, ValueError):
        pass
    try:
        return max(0, (folder / "metrics.csv").read_text().count("\n") - 1)
    except OSError:
        return 0


def wait_for_rounds(proc: subprocess.Popen, folder: Path, rounds: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while committed_rounds(folder) < rounds:
        assert proc.poll() is None, f"run ended early: {log_of(folder)}"
        assert time.monotonic() < deadline, f"no {rounds} rounds in {timeout} s: {log_of(folder)}"
        time.sleep(0.02)


def log_of(folder: Path) -> str:
    path = folder.parent / f"{folder.name}.log"
    return path.read_text()[-3000:] if path.exists() else ""


def finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def start_experiment(log_path: Path, *args: str, new_session: bool = False) -> subprocess.Popen:
    """`ape run experiment ARGS` in the background, its output in log_path."""
    return subprocess.Popen([APE, "run", "experiment", *args], cwd=ROOT, stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=new_session)


def wait_for_a_run(proc: subprocess.Popen, results: Path, log_path: Path, marker: str, rounds: int = 2) -> None:
    """Until a run folder under results (found by its `marker` file) holds `rounds` committed rounds."""
    deadline = time.monotonic() + 600
    while not any(committed_rounds(p.parent) >= rounds for p in results.rglob(marker)):
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.05)


def events_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal__finishes_the_round_and_writes_the_folder(tmp_path, signum, exit_code):
    folder = tmp_path / "run"
    proc = start(folder, 500)
    wait_for_rounds(proc, folder, 2)

    proc.send_signal(signum)
    code = finish(proc)

    assert code == exit_code, log_of(folder)
    summary = json.loads((folder / "summary.json").read_text())
    rows = read_metrics(folder)
    assert summary["interrupted"] is True
    assert summary["stop_signal"] == signal.Signals(signum).name
    assert 2 <= summary["rounds_completed"] == len(rows) < 500
    assert summary["tokens_conserved"] is True and summary["event_tokens_match_chain"] is True
    assert PLOTS <= {p.name for p in folder.iterdir()}
    assert sum(e["event"] == "RoundSettled" for e in events_of(folder)) == len(rows)


def test_kill_9_then_resume__replays_the_recorded_rounds_and_finishes(tmp_path):
    folder = tmp_path / "run"
    rounds = 6
    proc = start(folder, rounds)
    wait_for_rounds(proc, folder, 2)
    proc.kill()
    proc.wait(60)
    killed_at = committed_rounds(folder)
    assert 2 <= killed_at < rounds, "the run finished before it could be killed"
    recorded = read_metrics(folder)[:killed_at]
    recorded_events = (folder / "events.jsonl").read_bytes()[: read_progress(folder)["ends"][-1][1]]
    assert not (folder / "summary.json").exists()

    again = start(tmp_path / "again", rounds)  # the same run, uninterrupted, to compare with
    resumed = subprocess.run([APE, "run", "simulate", "--resume", str(folder)], cwd=ROOT, capture_output=True,
                             text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert finish(again) == 0, log_of(tmp_path / "again")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["rounds_completed"] == rounds and summary["resumed_at_round"] == killed_at
    assert summary["interrupted"] is False and summary["tokens_conserved"] is True
    rows = read_metrics(folder)
    assert rows[:killed_at] == recorded  # the recorded rounds are kept as they were
    assert (folder / "events.jsonl").read_bytes().startswith(recorded_events)

    def without_seconds(table):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in table]

    assert without_seconds(rows) == without_seconds(read_metrics(tmp_path / "again"))
    assert (folder / "events.jsonl").read_bytes() == (tmp_path / "again" / "events.jsonl").read_bytes()


def test_resume__altered_recorded_round__refused_and_folder_unchanged(tmp_path):
    folder = tmp_path / "run"
    config = SimulationConfig(clients=5, proposer_fraction=0.4, malicious_ratio=0.2, seed=5, rounds=2)
    run_simulation(config, folder, progress=False)
    # pretend the run stopped after round 2 of 3, with round 1's accuracy recorded differently
    recorded = json.loads((folder / "config.json").read_text())
    recorded["simulation"]["rounds"] = 3
    (folder / "config.json").write_text(json.dumps(recorded))
    lines = (folder / "metrics.csv").read_bytes().decode().splitlines(keepends=True)  # keeps the \r\n
    accuracy = next(csv.DictReader(lines))["test_accuracy"]
    altered = lines[1].replace(accuracy, accuracy[:-1] + ("1" if accuracy[-1] != "1" else "2"), 1)
    (folder / "metrics.csv").write_bytes((lines[0] + altered + "".join(lines[2:])).encode())
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    with pytest.raises(ResumeMismatch, match="round 1 rerun differs"):
        resume_simulation(folder, progress=False)

    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_sigterm_to_experiment_sweep__the_running_simulation_writes_its_folder(tmp_path):
    results = tmp_path / "results"
    proc = start_experiment(tmp_path / "sweep.log", "sweep", "--results", str(results), "--methods", "protocol",
                            "--ratios", "0.2", "--seeds", "1", "--survival-stakes", "", "--voter-ratio", "0",
                            "--clients", "5", "--rounds", "500")
    wait_for_a_run(proc, results, tmp_path / "sweep.log", "progress.json")

    proc.send_signal(signal.SIGTERM)
    code = finish(proc)

    assert code == 143, (tmp_path / "sweep.log").read_text()[-3000:]
    (run,) = [p.parent for p in results.rglob("progress.json")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["stop_signal"] == "SIGTERM"
    assert 2 <= summary["rounds_completed"] == len(read_metrics(run)) < 500
    assert json.loads((results / "sweep.json").read_text())["sessions"][-1].get("interrupted") is True


def test_resume_on_another_network__refused_with_the_command_that_resumes_it(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    config = SimulationConfig(clients=7, rounds=9, seed=4)
    (folder / "config.json").write_text(json.dumps({"simulation": dataclasses.asdict(config),
                                                    "network": "ethereum:local:foundry"}))

    with pytest.raises(CannotResume) as error:  # this test process is on the embedded chain
        resume_simulation(folder, progress=False)

    message = str(error.value)
    assert "\n" not in message
    assert f"ape run simulate --resume {folder} --network ethereum:local:foundry" in message


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_stopped_benchmark__sweep_json_says_so(tmp_path, signum):
    """SIGTERM: exit 143, the session marked interrupted and finished; kill -9: no "finished" (it
    had said finished at its last run's time, as if the session had ended there)."""
    results = tmp_path / "results"
    proc = start_experiment(tmp_path / "bench.log", "benchmark", "--task", "lending", "--clients", "5", "--rounds",
                            "100000", "--defences", "fedavg", "--attacks", "none", "--seeds", "1",
                            "--results", str(results), new_session=True)
    wait_for_a_run(proc, results, tmp_path / "bench.log", "metrics.csv")

    if signum == signal.SIGKILL:
        os.killpg(proc.pid, signum)  # the whole group, as a stopped queue is
    else:
        proc.send_signal(signum)
    try:
        code = finish(proc)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leave no worker behind
        except ProcessLookupError:
            pass

    session = json.loads((results / "sweep.json").read_text())["sessions"][-1]
    assert session["made"] == 0 and session["planned"] == 1
    if signum == signal.SIGTERM:
        assert code == 143, (tmp_path / "bench.log").read_text()[-3000:]
        assert session.get("interrupted") is True and "finished" in session
    else:
        assert "finished" not in session and "last_saved" in session


def test_sigterm_to_benchmark__queued_protocol_runs_do_not_start(tmp_path):
    """After SIGTERM the running simulation writes its folder and no queued one starts."""
    results = tmp_path / "results"
    proc = start_experiment(tmp_path / "bench.log", "benchmark", "--task", "lending", "--clients", "5", "--rounds",
                            "500", "--defences", "protocol-aggregate", "--attacks", "none,ipm", "--ratios", "0.4",
                            "--seeds", "1", "--results", str(results), new_session=True)
    wait_for_a_run(proc, results, tmp_path / "bench.log", "progress.json")

    proc.send_signal(signal.SIGTERM)
    try:
        code = finish(proc)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    assert code == 143, (tmp_path / "bench.log").read_text()[-3000:]
    started = [p.parent for p in results.rglob("progress.json")]
    assert len(started) == 1, started  # the second cell never started
    assert json.loads((started[0] / "summary.json").read_text())["interrupted"] is True
