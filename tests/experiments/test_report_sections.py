"""The report puts the voter-attack section (results/voter-attacks) after the sweeps' sections."""

from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


def test_report__voter_attacks_folder__gets_its_own_section(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("experiment_script", ROOT / "scripts" / "experiment.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "docs"
    result = CliRunner().invoke(script.cli, ["report", "--results", "results/fmnist-iid",
                                             "--results", "results/voter-attacks", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "RESULTS.md").read_text()
    assert text.index("## Task") < text.index("## Voter attacks (issue 12)")
    assert "colluding_bloc" in text and "lazy" in text
