"""A run folder: config.json, participants.json (who is malicious), metrics.csv and events.jsonl
written as rounds finish, then summary.json and PNG plots.

Each round is committed in three steps: its events are appended to events.jsonl, then its row
to metrics.csv, then progress.json (written to a temp file and renamed) records both files'
byte lengths after the round. A kill at any point leaves whole rounds only: readers
(``read_metrics``, ``committed_events``) stop at the lengths progress.json records, and
``RunRecorder.reopen`` cuts any partial round off before a resume."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterable

from fl.simulation.plots import plot_run
from fl.simulation.rounds import RoundRecord

METRICS = "metrics.csv"
EVENTS = "events.jsonl"
PROGRESS = "progress.json"
CONFIG = "config.json"
PARTICIPANTS = "participants.json"
NOT_REPRODUCIBLE = ("seconds",)  # wall time: the only column a rerun may change


class RunFolderExists(FileExistsError):
    pass


class ResumeMismatch(RuntimeError):
    """A replayed round differs from the recorded one: the run cannot be continued honestly."""


def _clean(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def check_new_folder(folder: Path) -> None:
    """Raise ``RunFolderExists`` if ``folder`` holds anything (checked before any slow work)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise RunFolderExists(
            f"output folder {folder} is not empty: choose another --output"
            + (f", or continue it with --resume {folder}" if (folder / PROGRESS).is_file() else "")
        )


def _csv_line(values) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


class RunRecorder:
    def __init__(self, folder: Path, config: dict):
        self.folder = Path(folder)
        check_new_folder(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self._columns = [f.name for f in fields(RoundRecord)]
        header = _csv_line(self._columns)
        (self.folder / METRICS).write_text(header)
        (self.folder / EVENTS).touch()
        self.rows: list[dict] = []
        self._ends: list[list[int]] = [[len(header.encode()), 0]]  # [metrics bytes, events bytes] per round
        self._replay: list[tuple[str, str]] = []  # recorded (metrics line, events text) still to verify
        self._commit()

    @classmethod
    def reopen(cls, folder: Path) -> "RunRecorder":
        """The recorder of an existing run folder, cut back to its last committed round. The
        next ``len(recorder.replay_pending)`` rounds recorded are compared with the recorded
        ones (``ResumeMismatch`` if any differs) instead of being written again."""
        self = cls.__new__(cls)
        self.folder = Path(folder)
        self._columns = [f.name for f in fields(RoundRecord)]
        progress = read_progress(self.folder)
        self._ends = progress["ends"]
        metrics_end, events_end = self._ends[-1]
        metrics = (self.folder / METRICS).read_bytes()[:metrics_end]
        events = (self.folder / EVENTS).read_bytes()[:events_end]
        if len(metrics) < metrics_end or len(events) < events_end:
            raise ResumeMismatch(f"{self.folder}: {METRICS} or {EVENTS} is shorter than {PROGRESS} records: "
                                 "the folder was altered; rerun from scratch into a new --output")
        with open(self.folder / METRICS, "r+b") as fh:
            fh.truncate(metrics_end)  # drop a round written after the last commit
        with open(self.folder / EVENTS, "r+b") as fh:
            fh.truncate(events_end)
        self._replay = [
            (metrics[m0:m1].decode(), events[e0:e1].decode())
            for (m0, e0), (m1, e1) in zip(self._ends, self._ends[1:])
        ]
        self.rows = []
        self._recorded_rows = read_metrics(self.folder)
        return self

    @property
    def replay_pending(self) -> list:
        return self._replay

    def record_round(self, record: RoundRecord, events: Iterable[dict] = ()) -> None:
        row = asdict(record)
        line = _csv_line([row[c] for c in self._columns])
        events_text = "".join(json.dumps(event, sort_keys=True) + "\n" for event in events)
        if self._replay:
            self._verify(len(self.rows) + 1, line, events_text)
            self.rows.append({**row, **{c: self._recorded_rows[len(self.rows)][c] for c in NOT_REPRODUCIBLE}})
            return
        self.rows.append(row)
        with open(self.folder / EVENTS, "a") as fh:  # events first: the metrics row commits the round
            fh.write(events_text)
        with open(self.folder / METRICS, "a", newline="") as fh:
            fh.write(line)
        self._ends.append([self._ends[-1][0] + len(line.encode()), self._ends[-1][1] + len(events_text.encode())])
        self._commit()

    def _verify(self, number: int, line: str, events_text: str) -> None:
        recorded_line, recorded_events = self._replay.pop(0)
        masked = [self._columns.index(c) for c in NOT_REPRODUCIBLE]

        def reproducible(text):
            try:
                values = next(csv.reader(io.StringIO(text, newline="")))
            except (csv.Error, StopIteration):
                return None
            return [v for i, v in enumerate(values) if i not in masked]

        if reproducible(line) != reproducible(recorded_line) or events_text != recorded_events:
            what = "metrics" if reproducible(line) != reproducible(recorded_line) else "events"
            raise ResumeMismatch(
                f"round {number} rerun differs from the recorded one ({what}): {self.folder} cannot be "
                "continued; rerun it from scratch into a new --output"
            )

    def record_participants(self, clients: Iterable) -> None:
        """Write participants.json: each client's index, address, malicious flag and the roles it
        attacks in (``clients``: objects with ``index``, ``address``, ``malicious``, ``behaviour``).
        The events name clients by address only; this says which addresses are the attackers."""
        rows = [
            {"index": c.index, "address": c.address, "malicious": bool(c.malicious),
             "malicious_proposer": bool(c.behaviour.malicious_proposer),
             "malicious_voter": bool(c.behaviour.malicious_voter),
             "voter_attack": c.behaviour.voter_attack if c.behaviour.malicious_voter else None}
            for c in clients
        ]
        _write_atomic(self.folder / PARTICIPANTS, json.dumps({"clients": rows}, indent=1, sort_keys=True) + "\n")

    def _commit(self) -> None:
        _write_atomic(self.folder / PROGRESS, json.dumps({"rounds": len(self._ends) - 1, "ends": self._ends}) + "\n")

    def finish(self, summary: dict, stake_required: float | None = None) -> dict:
        plots = plot_run(self.rows, self.folder, stake_required)
        summary = {k: _clean(v) for k, v in summary.items()}
        summary["plots"] = [p.name for p in plots]
        _write_atomic(self.folder / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary


def read_progress(folder: Path) -> dict:
    """progress.json of a run folder: {"rounds": n, "ends": [[metrics bytes, events bytes], ...]}
    (the first pair is the empty run, then one per committed round)."""
    path = Path(folder) / PROGRESS
    if not path.is_file():
        raise ResumeMismatch(f"{folder} has no {PROGRESS} (not a run folder, or written before runs could resume)")
    return json.loads(path.read_text())


def read_metrics(folder: Path) -> list[dict]:
    """The committed rounds' rows (a round cut by a kill is left out)."""
    folder = Path(folder)
    data = (folder / METRICS).read_bytes()
    if (folder / PROGRESS).is_file():
        data = data[: read_progress(folder)["ends"][-1][0]]
    else:
        data = data[: data.rfind(b"\n") + 1]
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


def read_participants(folder: Path) -> list[dict]:
    """participants.json's rows (``RunRecorder.record_participants``); ``FileNotFoundError`` naming
    the folder if the run was recorded before participants were."""
    path = Path(folder) / PARTICIPANTS
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {PARTICIPANTS} (recorded before participants were): rerun it")
    return json.loads(path.read_text())["clients"]


def committed_events(folder: Path) -> list[dict]:
    """The committed rounds' events from events.jsonl."""
    folder = Path(folder)
    data = (folder / EVENTS).read_bytes()
    if (folder / PROGRESS).is_file():
        data = data[: read_progress(folder)["ends"][-1][1]]
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
