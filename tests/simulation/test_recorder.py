"""The run folder's per-round commit: a kill at any point leaves whole rounds only."""

import dataclasses
import json

import pytest

from fl.simulation import recorder as recorder_module
from fl.simulation.recorder import (
    ResumeMismatch,
    RunFolderExists,
    RunRecorder,
    committed_events,
    read_metrics,
)
from fl.simulation.rounds import RoundRecord


def record(number: int, accuracy: float = 0.5) -> RoundRecord:
    values = {f.name: 0 for f in dataclasses.fields(RoundRecord)}
    values.update(round=number, decision="accepted", test_accuracy=accuracy, seconds=0.1 * number,
                  global_model_hash="0x" + "ab" * 32)
    return RoundRecord(**values)


def events(number: int) -> list[dict]:
    return [{"event": "RoundOpened", "args": {"roundId": number}, "block": number},
            {"event": "RoundSettled", "args": {"roundId": number}, "block": number}]


def two_rounds(folder):
    recorder = RunRecorder(folder, {"simulation": {}})
    recorder.record_round(record(1), events(1))
    recorder.record_round(record(2), events(2))
    return recorder


class Killed(BaseException):
    pass


def test_kill_between_events_and_metrics__readers_see_whole_rounds_only(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    recorder = two_rounds(folder)
    real_open = open

    def open_then_die_on_metrics(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.csv") and "a" in mode:
            raise Killed  # the process dies after round 3's events, before its metrics row
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_then_die_on_metrics)
    with pytest.raises(Killed):
        recorder.record_round(record(3), events(3))
    monkeypatch.undo()

    assert [row["round"] for row in read_metrics(folder)] == ["1", "2"]
    assert [e["args"]["roundId"] for e in committed_events(folder)] == [1, 1, 2, 2]


def test_torn_metrics_line__ignored_and_cut_on_reopen(tmp_path):
    folder = tmp_path / "run"
    two_rounds(folder)
    with open(folder / "events.jsonl", "a") as fh:
        fh.write(json.dumps(events(3)[0]) + "\n")
    with open(folder / "metrics.csv", "a") as fh:
        fh.write("3,accep")  # killed in the middle of the row

    assert len(read_metrics(folder)) == 2
    reopened = RunRecorder.reopen(folder)

    assert len(reopened.replay_pending) == 2
    assert (folder / "metrics.csv").read_text().count("\n") == 3
    assert len((folder / "events.jsonl").read_text().splitlines()) == 4


def test_reopen__identical_rounds_replay_then_new_rounds_append(tmp_path):
    folder = tmp_path / "run"
    two_rounds(folder)
    reopened = RunRecorder.reopen(folder)

    reopened.record_round(dataclasses.replace(record(1), seconds=9.0), events(1))  # wall time may differ
    reopened.record_round(record(2), events(2))
    reopened.record_round(record(3), events(3))

    assert [row["round"] for row in read_metrics(folder)] == ["1", "2", "3"]
    assert read_metrics(folder)[0]["seconds"] == "0.1"
    assert len(committed_events(folder)) == 6


@pytest.mark.parametrize("change", ["metrics", "events"])
def test_reopen__a_differing_round__resume_mismatch_and_nothing_written(tmp_path, change):
    folder = tmp_path / "run"
    two_rounds(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    reopened = RunRecorder.reopen(folder)

    with pytest.raises(ResumeMismatch, match="round 1"):
        if change == "metrics":
            reopened.record_round(record(1, accuracy=0.75), events(1))
        else:
            reopened.record_round(record(1), events(1)[:1])

    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_non_empty_folder__refused_with_the_resume_hint(tmp_path):
    folder = tmp_path / "run"
    two_rounds(folder)

    with pytest.raises(RunFolderExists, match="--resume"):
        recorder_module.check_new_folder(folder)


def test_reopen__files_shorter_than_recorded__resume_mismatch(tmp_path):
    folder = tmp_path / "run"
    two_rounds(folder)
    (folder / "events.jsonl").write_text("")

    with pytest.raises(ResumeMismatch, match="altered"):
        RunRecorder.reopen(folder)
