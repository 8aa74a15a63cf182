"""Compare two run folders (or sweep folders) for identical behaviour: every update blob's name and
sha256, the update hashes in events.jsonl, and metrics.csv with the wall-time column left out.

    python tools/compare_runs.py /tmp/ref/lending /tmp/new/lending

Exit status 0 when they match, 1 otherwise (the first differences are printed).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from pathlib import Path

WALL_TIME_COLUMNS = {"seconds"}  # metrics.csv columns that measure this machine, not the run
HASH = re.compile(r"0x[0-9a-f]{64}")


def blobs(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every stored update blob below `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("updates/*")) if p.is_file()}


def metrics(folder: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(folder.rglob("metrics.csv")):
        with open(path, newline="") as file:
            out[str(path.relative_to(folder))] = [
                {k: v for k, v in row.items() if k not in WALL_TIME_COLUMNS} for row in csv.DictReader(file)]
    return out


def event_hashes(folder: Path) -> dict[str, list[str]]:
    """Per events.jsonl: every 32-byte hash in the event arguments (update, aggregate and model hashes), in order."""
    out = {}
    for path in sorted(folder.rglob("events.jsonl")):
        found = []
        for line in path.read_text().splitlines():
            if line.strip():
                found += HASH.findall(json.dumps(json.loads(line).get("args", {}), sort_keys=True))
        out[str(path.relative_to(folder))] = found
    return out


def compare(a: Path, b: Path) -> list[str]:
    """What differs between the two folders (empty: identical, or both lack a kind of record)."""
    problems = []
    for name, get in (("update blobs", blobs), ("metrics.csv (less wall time)", metrics), ("event hashes", event_hashes)):
        left, right = get(a), get(b)
        if left != right:
            keys = sorted(set(left) | set(right))
            first = next(k for k in keys if left.get(k) != right.get(k))
            problems.append(f"{name} differ, first at {first}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    a, b = map(Path, argv)
    problems = compare(a, b)
    counts = f"{len(blobs(a))} blobs, {sum(len(v) for v in metrics(a).values())} metric rows, " \
             f"{sum(len(v) for v in event_hashes(a).values())} event hashes"
    print(f"{a} vs {b}: " + ("identical (" + counts + ")" if not problems else "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
