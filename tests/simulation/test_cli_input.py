"""Bad input to `ape run simulate` ends in one line that says what is wrong and what to do."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fl.learning.data import KAGGLE_CATEGORICAL_COLUMNS, KAGGLE_NUMERIC_COLUMNS
from fl.simulation import runner
from fl.simulation.recorder import RunFolderExists
from fl.simulation.rounds import SimulationConfig

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).parent / "ape")


def simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([APE, "run", "simulate", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def one_error_line(completed: subprocess.CompletedProcess) -> str:
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, output
    return errors[0]


def test_existing_folder__refused_before_the_data_is_loaded(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("round\n")

    def must_not_load(config):
        raise AssertionError("data loaded before the folder was checked")

    monkeypatch.setattr(runner, "load_federated_data", must_not_load)

    with pytest.raises(RunFolderExists, match="not empty"):
        runner.run_simulation(SimulationConfig(clients=3, rounds=1), folder, progress=False)


def test_data_file_with_too_few_loans__one_line(tmp_path):
    row = {c: 1.0 for c in KAGGLE_NUMERIC_COLUMNS} | {c: "x" for c in KAGGLE_CATEGORICAL_COLUMNS}
    rows = [row | {"loan_status": status} for status in ["Fully Paid", "Charged Off"] * 10]
    pd.DataFrame(rows).to_csv(tmp_path / "loans.csv", index=False)

    line = one_error_line(simulate("--data-file", str(tmp_path / "loans.csv"), "--rounds", "1",
                                   "--output", str(tmp_path / "run")))

    assert "--clients" in line and "more loans" in line
    assert not (tmp_path / "run").exists()


def test_resume_of_a_folder_that_is_no_run__one_line(tmp_path):
    (tmp_path / "empty").mkdir()

    line = one_error_line(simulate("--resume", str(tmp_path / "empty")))

    assert "not a run folder" in line
