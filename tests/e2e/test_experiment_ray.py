"""`ape run experiment sweep --ray` on a local Ray cluster (loopback, 2 CPUs) writes the same results
folder as the same sweep without Ray (though one worker dies and its task is retried), skips
finished runs, and reports a run failed on a worker.

Ray's own address detection would use the machine's network address; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
keeps the cluster, its driver and workers on 127.0.0.1.
"""

import csv
import gzip
import io
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install -e .[ray])")

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).parent / "ape")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
       "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
# oracle + fedavg-clean, 2 rounds each: the sweep's two cheapest real runs (no chain)
SWEEP = ["sweep", "--clients", "10", "--rounds", "2", "--seeds", "1", "--methods", "oracle,fedavg-clean"]
HEAD = """
import signal, sys
import ray
# address="local": a new cluster, never one that `ray start` left on this machine
context = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20)
print(context.address_info["gcs_address"], flush=True)
signal.signal(signal.SIGTERM, lambda *_: (ray.shutdown(), sys.exit(0)))
sys.stdin.read()  # until the test closes it
ray.shutdown()
"""
# progress.json's "ends" are byte offsets into metrics.csv, whose "seconds" column is wall time
WALL_TIME_FIELDS = {"wall_seconds", "seconds", "ends"}


def _ape(*args, python_flags=(), timeout=300):
    command = [sys.executable, *python_flags, APE, "run", "experiment", *args]
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def crash_marker(tmp_path_factory):
    """The first task on the cluster kills its worker (STAKEFL_RAY_CRASH_ONCE), as a lost node would."""
    return tmp_path_factory.mktemp("ray") / "worker-crashed"


@pytest.fixture(scope="module")
def ray_address(crash_marker):
    env = {**ENV, "STAKEFL_RAY_CRASH_ONCE": str(crash_marker)}
    head_log = crash_marker.parent / "head.log"
    with open(head_log, "w") as log:
        head = subprocess.Popen([sys.executable, "-c", HEAD], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        ready, _, _ = select.select([head.stdout], [], [], 180)
        address = head.stdout.readline().strip() if ready else ""
        assert address.startswith("127.0.0.1:"), f"local Ray cluster did not start: {head_log.read_text()[-2000:]}"
        yield address
    finally:
        head.stdin.close()  # the head shuts its cluster down
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


@pytest.fixture(scope="module")
def sweeps(ray_address, tmp_path_factory):
    base = tmp_path_factory.mktemp("sweeps")
    local = _ape(*SWEEP, "--results", str(base / "local" / "lending"), python_flags=("-X", "importtime"))
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    via_ray = _ape(*SWEEP, "--results", str(base / "ray" / "lending"), "--ray", ray_address)
    assert via_ray.returncode == 0, via_ray.stdout[-3000:] + via_ray.stderr[-3000:]
    return base, local, via_ray


def _normalised(path: Path, results: Path):
    """A run file's content with wall times dropped and the results folder's own path neutral."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if path.suffix == ".png":
        return data
    text = data.decode().replace(str(results), "<results>")
    if path.suffix == ".json":
        return {k: v for k, v in json.loads(text).items() if k not in WALL_TIME_FIELDS}
    if path.suffix == ".csv":
        return [{k: v for k, v in row.items() if k not in WALL_TIME_FIELDS} for row in csv.DictReader(io.StringIO(text))]
    return text


def _run_files(results: Path) -> dict:
    return {p.relative_to(results).as_posix(): _normalised(p, results)
            for p in sorted(results.rglob("*"))
            if p.is_file() and p.name != "sweep.json" and not p.name.endswith((".lock", "run.log"))}


def test_ray_sweep__writes_the_same_results_folder_as_a_local_sweep(sweeps, crash_marker):
    base, _, via_ray = sweeps

    local_files, ray_files = _run_files(base / "local" / "lending"), _run_files(base / "ray" / "lending")
    session = json.loads((base / "ray" / "lending" / "sweep.json").read_text())["sessions"][-1]

    assert {"oracle/ratio-0/seed-0/summary.json", "fedavg-clean/ratio-0/seed-0/metrics.csv",
            "fedavg-clean/ratio-0/seed-0/experiment.json"} <= set(ray_files)
    assert ray_files == local_files
    assert ray_files["oracle/ratio-0/seed-0/summary.json"]["rounds_completed"] == 2
    assert "Ray cluster: 1 node(s), 2 CPUs -> 2 runs at a time" in via_ray.stdout
    assert session["made"] == 2 and session["failed"] == []
    assert crash_marker.is_file()  # one task's worker died; Ray ran it again and the folder is the same


def test_sweep_without_ray__never_imports_ray(sweeps):
    _, local, _ = sweeps

    imported = {line.rsplit("|", 1)[1].strip() for line in local.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}

    assert "fl.experiments.sweep" in imported  # the importtime listing is there
    assert not {m for m in imported if m == "ray" or m.startswith("ray.")}


def test_ray_sweep__skips_finished_runs_and_reports_a_failed_run_with_its_log(sweeps, ray_address):
    base, _, _ = sweeps
    results = base / "ray" / "lending"

    # the two finished runs are skipped; the new one fails on its worker (no such data file)
    rerun = _ape(*SWEEP[:-1], "oracle,fedavg-clean,fedavg-attack", "--ratios", "0.3", "--results", str(results),
                 "--data-file", str(base / "missing.csv"), "--ray", ray_address)
    log = results / "fedavg-attack" / "ratio-0.3" / "seed-0.run.log"

    assert rerun.returncode != 0
    assert "3 runs planned, 2 already done, 1 to run" in rerun.stdout
    assert "FAILED fedavg-attack r=0.3 s=0: on " in rerun.stdout
    assert "1 runs failed: fedavg-attack r=0.3 s=0" in rerun.stderr
    assert "missing.csv" in log.read_text() and "Traceback" in log.read_text()
    assert not (results / "fedavg-attack" / "ratio-0.3" / "seed-0").exists()
    assert json.loads((results / "sweep.json").read_text())["sessions"][-1]["failed"] == ["fedavg-attack r=0.3 s=0"]


def test_ray_sweep__sigterm__interrupted_exit_143_and_no_done_line(ray_address, tmp_path):
    """Stopped while its runs are on the cluster, the Ray sweep says so (sweep.json "interrupted",
    exit 143), as the local sweep does; it used to print "sweep done" and exit 0. The sweep's lines
    reach the log file at once (`say`), so the signal comes while its 2000-round run is on the cluster."""
    import signal
    import time

    results, log_path = tmp_path / "lending", tmp_path / "sweep.log"
    args = ["sweep", "--clients", "10", "--rounds", "2000", "--seeds", "1", "--methods", "fedavg-clean",
            "--results", str(results), "--ray", ray_address]
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, APE, "run", "experiment", *args], cwd=ROOT, env=ENV,
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while "Ray cluster:" not in log_path.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.1)
    time.sleep(2)

    assert proc.poll() is None, "the sweep ended before the signal:\n" + log_path.read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)

    output = log_path.read_text()
    assert code == 143, output[-3000:]
    assert "sweep done" not in output and "interrupted" in output
    session = json.loads((results / "sweep.json").read_text())["sessions"][-1]
    assert session["interrupted"] is True and "finished" in session
    assert not (results / "fedavg-clean" / "ratio-0" / "seed-0" / "summary.json").exists()
