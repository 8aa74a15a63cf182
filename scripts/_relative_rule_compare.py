"""Run by run: `cosine_floor_rel` (the per-proposal column of results/benchmark-fmnist, the image
tasks' default since session 18) against `cosine_floor_t0` (that column before,
results/review-study/fmnist-t0) and chainless FedAvg in the same cell (same seed, data split,
malicious clients and, until a removal, proposers): test AUROC over the last half of the rounds,
backdoor attack success rate, malicious and honest proposals rejected; then the mean over the
seeds that all three have. docs/REVIEW_STUDY.md, "Fashion-MNIST: the backdoor".

    python scripts/_relative_rule_compare.py > results/review-study/fmnist-relative/compare.txt
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from fl.experiments.benchmark_report import Cell, load_cells

ROOT = Path(__file__).resolve().parents[1]


def scores(cell: Cell) -> str:
    return f"{cell.auroc:.3f}" + ("" if math.isnan(cell.asr) else f" / ASR {cell.asr:.3f}")


def rejected(cell: Cell) -> str:
    malicious = f"{cell.malicious_rejected}/{cell.malicious_proposals}" if cell.malicious_proposals else "-"
    return f"malicious {malicious}, honest {cell.honest_rejected}/{cell.honest_proposals}"


def main(root: Path = ROOT) -> None:
    grid = load_cells(root / "results/benchmark-fmnist")
    relative = {(c.attack, c.ratio, c.seed): c for c in grid if c.defence == "protocol-per-proposal"}
    assert {c.review for c in relative.values()} <= {"cosine_floor_rel"}, "the column is not cosine_floor_rel's"
    columns = {
        "cosine_floor_t0": {(c.attack, c.ratio, c.seed): c for c in load_cells(root / "results/review-study/fmnist-t0")},
        "FedAvg": {(c.attack, c.ratio, c.seed): c for c in grid if c.defence == "fedavg"},
    }
    print("run by run: test AUROC (last half of the rounds) / backdoor attack success rate (proposals rejected)")
    for key in sorted(relative):
        cell = relative[key]
        line = f"{key[0]:10s} r={key[1]:g} s={key[2]}: rel {scores(cell)} ({rejected(cell)})"
        for name, column in columns.items():
            if key in column:
                other = column[key]
                line += f" | {name} {scores(other)}" + (
                    f" ({rejected(other)})" if other.review else "")
        print(line)
    print("\nmean over the seeds all three columns have: AUROC / attack success rate")
    for attack, ratio in sorted({(a, r) for a, r, _ in relative}):
        seeds = [s for a, r, s in relative if (a, r) == (attack, ratio)
                 and all((a, r, s) in column for column in columns.values())]
        if not seeds:
            continue
        parts = []
        for name, column in (("rel", relative), *columns.items()):
            cells = [column[(attack, ratio, s)] for s in seeds]
            auroc = sum(c.auroc for c in cells) / len(cells)
            asr = sum(c.asr for c in cells) / len(cells)
            parts.append(f"{name} {auroc:.3f}" + ("" if math.isnan(asr) else f" / ASR {asr:.3f}"))
        print(f"{attack:10s} r={ratio:g} seeds {','.join(map(str, seeds))}: " + " | ".join(parts))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
