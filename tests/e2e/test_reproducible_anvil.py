"""Same seed, same run on anvil, the default chain of `ape run simulate` (issue 13).

Two `ape run simulate` processes with one seed, started together, each on a fresh anvil of its own
(ape-foundry starts it on a random port: APE_FOUNDRY_HOST=auto). Keys come from the client index,
salts from the seed, the clock is pinned and the contracts draw from the revealed salts, so the
two runs must agree on everything but wall time. Running them at the same time also shows that
parallel runs (`ape run experiment sweep --jobs N`) neither share nor collide on a node, and that
nothing depends on how fast each process happens to go.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from fl.simulation.recorder import read_metrics

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).parent / "ape")
WALL_TIME_COLUMNS = {"seconds"}
RUN = ("--clients", "8", "--rounds", "3", "--malicious-ratio", "0.25", "--seed", "5")


def _simulate_twice_at_once(tmp_path: Path) -> list[Path]:
    folders = [tmp_path / "a", tmp_path / "b"]
    env = {k: v for k, v in os.environ.items() if k != "APE_FOUNDRY_HOST"}  # the command's own default
    env["NO_COLOR"] = "1"
    logs = [open(tmp_path / f"{f.name}.log", "w") for f in folders]
    processes = [
        subprocess.Popen([APE, "run", "simulate", *RUN, "--output", str(f)], cwd=ROOT, env=env,
                         stdout=log, stderr=subprocess.STDOUT)
        for f, log in zip(folders, logs)
    ]
    try:
        codes = [p.wait(timeout=900) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    for folder, code in zip(folders, codes):
        assert code == 0, (tmp_path / f"{folder.name}.log").read_text()[-3000:]
    return folders


def _metrics_less_wall_time(folder: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in WALL_TIME_COLUMNS} for row in read_metrics(folder)]


def _blobs(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "updates").iterdir())}


def test_simulate_on_anvil__same_seed_on_fresh_nodes__identical_runs(tmp_path):
    # Execute
    first, second = _simulate_twice_at_once(tmp_path)

    # Assert
    summaries = [json.loads((f / "summary.json").read_text()) for f in (first, second)]
    for summary in summaries:
        assert summary["network"] == "ethereum:local:foundry"  # the default chain
        assert summary["clock_pinned"] is True  # each run started its own node
        assert summary["rounds_completed"] == 3
        assert summary["global_model_hash_matches"] is True
    rows = _metrics_less_wall_time(first)
    assert len(rows) == 3
    assert _metrics_less_wall_time(second) == rows
    assert [r["global_model_hash"] for r in read_metrics(second)] == [r["global_model_hash"] for r in rows]
    assert summaries[0]["global_model_hash_onchain"] == summaries[1]["global_model_hash_onchain"]
    assert _blobs(second) == _blobs(first)
    # every event in order: the draw (ParticipantSelected), blocks, transaction hashes, token moves
    assert (second / "events.jsonl").read_text() == (first / "events.jsonl").read_text()
