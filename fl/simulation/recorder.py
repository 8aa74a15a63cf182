"""A run folder: config.json, metrics.csv and events.jsonl written as rounds finish, then
summary.json and PNG plots. Files are appended and flushed per round, so a run stopped at
any point leaves a valid folder for the rounds it finished."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterable

from fl.simulation.plots import plot_run
from fl.simulation.rounds import RoundRecord

METRICS = "metrics.csv"
EVENTS = "events.jsonl"


class RunFolderExists(FileExistsError):
    pass


def _clean(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


class RunRecorder:
    def __init__(self, folder: Path, config: dict):
        self.folder = Path(folder)
        if self.folder.exists() and any(self.folder.iterdir()):
            raise RunFolderExists(f"output folder {self.folder} is not empty: choose another --output")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self._columns = [f.name for f in fields(RoundRecord)]
        with open(self.folder / METRICS, "w", newline="") as fh:
            csv.writer(fh).writerow(self._columns)
        (self.folder / EVENTS).touch()
        self.rows: list[dict] = []

    def record_round(self, record: RoundRecord, events: Iterable[dict] = ()) -> None:
        row = asdict(record)
        self.rows.append(row)
        with open(self.folder / METRICS, "a", newline="") as fh:
            csv.writer(fh).writerow([row[c] for c in self._columns])
        with open(self.folder / EVENTS, "a") as fh:
            for event in events:
                fh.write(json.dumps(event, sort_keys=True) + "\n")

    def finish(self, summary: dict, stake_required: float | None = None) -> dict:
        plots = plot_run(self.rows, self.folder, stake_required)
        summary = {k: _clean(v) for k, v in summary.items()}
        summary["plots"] = [p.name for p in plots]
        (self.folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary


def read_metrics(folder: Path) -> list[dict]:
    with open(Path(folder) / METRICS, newline="") as fh:
        return list(csv.DictReader(fh))
