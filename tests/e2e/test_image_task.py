"""The image task (Fashion-MNIST, non-IID, CNN, AUROC votes) end to end on the embedded chain,
at a tiny size: the real `ape run simulate` command and `run_simulation`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fl.learning.cnn import torchvision_available
from fl.learning.data import DataError
from fl.learning.images import load_fashion_mnist
from fl.simulation.recorder import read_metrics
from fl.simulation.runner import run_simulation
from fl.simulation.rounds import SimulationConfig

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).parent / "ape")

try:
    load_fashion_mnist()
    HAVE_FMNIST = True
except DataError:
    HAVE_FMNIST = False

needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="dataset-fashion-mnist is not installed (tools/setup.sh)")


def simulate(*args, timeout=900):
    return subprocess.run(
        [APE, "run", "simulate", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
    )


@needs_fmnist
def test_simulate_cli__fmnist__runs_rounds_on_chain_with_auroc_votes(tmp_path):
    # Prepare
    folder = tmp_path / "fmnist"

    # Execute
    result = simulate(
        "--task", "fmnist", "--clients", "6", "--rounds", "2", "--samples-per-client", "30",
        "--dirichlet-alpha", "0.3", "--malicious-ratio", "0.2", "--seed", "2", "--output", str(folder),
    )

    # Assert
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    rows = read_metrics(folder)
    assert summary["rounds_completed"] == 2
    assert summary["global_model_hash_matches"] is True
    assert summary["tokens_conserved"] is True
    assert config["simulation"]["task"] == "fmnist" and config["simulation"]["dirichlet_alpha"] == 0.3
    assert config["voter_score"] == "auroc"
    assert config["simulation"]["review"] == "cosine_floor_rel"  # the image tasks' default rule (no --review)
    assert all(0.0 <= float(r["test_auroc"]) <= 1.0 for r in rows)
    assert {"accuracy.png", "tokens.png", "decisions.png"} <= {p.name for p in folder.iterdir()}


@needs_fmnist
def test_run_simulation__fmnist_iid__same_seed_same_models(tmp_path):
    config = SimulationConfig(
        task="fmnist", dirichlet_alpha=float("inf"), clients=5, rounds=2, samples_per_client=20,
        malicious_ratio=0.2, proposer_fraction=0.4, seed=4,
    )

    first = run_simulation(config, tmp_path / "a", progress=False)
    second = run_simulation(config, tmp_path / "b", progress=False)

    assert first["rounds_completed"] == 2 and first["global_model_hash_matches"] is True
    assert first["global_model_hash_onchain"] == second["global_model_hash_onchain"]
    assert first["final_test_auroc"] == second["final_test_auroc"]


def test_simulate_cli__fmnist_missing_files__one_line_error(tmp_path):
    result = simulate("--task", "fmnist", "--rounds", "1", "--data-file", str(tmp_path), "--output", str(tmp_path / "run"))

    assert result.returncode != 0
    assert "dataset-fashion-mnist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torchvision_available(), reason="torchvision is installed")
@needs_fmnist
def test_simulate_cli__densenet_without_torchvision__clear_message(tmp_path):
    result = simulate(
        "--task", "fmnist", "--model", "densenet121", "--clients", "4", "--rounds", "1",
        "--samples-per-client", "10", "--output", str(tmp_path / "run"),
    )

    assert result.returncode != 0
    assert "torchvision" in result.stderr and "--model cnn" in result.stderr
    assert "Traceback" not in result.stderr
