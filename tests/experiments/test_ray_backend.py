"""The Ray backend's driver-side pieces that need no cluster (the sweep through Ray: tests/e2e/test_experiment_ray.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from fl.experiments.ray_backend import write_run_folder

ROOT = Path(__file__).resolve().parents[2]


def test_write_run_folder__replaces_the_folder_with_the_returned_files(tmp_path):
    folder = tmp_path / "fedavg-clean" / "ratio-0" / "seed-0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("left by an interrupted run")

    write_run_folder(folder, {"summary.json": b"{}\n", "metrics.csv": b"round\n1\n", "plots/a.png": b"\x89PNG"})

    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == {
        "summary.json": b"{}\n", "metrics.csv": b"round\n1\n", "plots/a.png": b"\x89PNG"}
    assert [p.name for p in folder.parent.iterdir()] == ["seed-0"]  # no staging folder left


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../escape.txt", ""])
def test_write_run_folder__refuses_paths_outside_the_run_folder(tmp_path, name):
    folder = tmp_path / "run"

    with pytest.raises(ValueError, match="refusing run file path"):
        write_run_folder(folder, {"summary.json": b"{}", name: b"x"})

    assert not (tmp_path / "escape.txt").exists() and not folder.exists()


def test_sweep_modules__do_not_import_ray():
    code = ("import sys, fl.experiments.sweep, fl.experiments.ray_backend; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")

    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "[]"
