"""The image tasks' rules under the paper's attack: malicious clients poison their proposals AND
vote against the evidence (`--malicious-roles both`; results/review-study/fmnist-paper-attack/<rule>/),
beside the same cell with malicious proposers only (the per-proposal column of
results/benchmark-fmnist, or of results/review-study/fmnist-t0 for `cosine_floor_t0`: same rule,
seed, data split and malicious clients). Per run: test AUROC over the last half of the rounds,
backdoor attack success rate, proposals rejected, clients removed. docs/REVIEW_STUDY.md,
"Fashion-MNIST: the backdoor".

    python scripts/_paper_attack_compare.py > results/review-study/fmnist-paper-attack/compare.txt
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from fl.experiments.benchmark_report import last_half_mean, load_cells, rejected_counts
from fl.simulation.recorder import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def describe(auroc: float, asr: float, counts: tuple[int, int, int, int]) -> str:
    scores = f"AUROC {auroc:.3f}" + ("" if math.isnan(asr) else f", ASR {asr:.3f}")
    return f"{scores}, rejected malicious {counts[1]}/{counts[0]} honest {counts[3]}/{counts[2]}"


def main(root: Path = ROOT) -> None:
    both_root = root / "results/review-study/fmnist-paper-attack"
    proposer_only = {(c.review, c.attack, c.ratio, c.seed): c  # the default's column and the former t0 column
                     for folder in ("results/benchmark-fmnist", "results/review-study/fmnist-t0")
                     for c in load_cells(root / folder) if c.defence == "protocol-per-proposal"}
    print("malicious roles both (the paper's attack) | proposer only (the benchmark's cell)")
    for summary_path in sorted(both_root.glob("*/*/ratio-*/seed-*/summary.json")):  # <rule>/<attack>/...
        folder = summary_path.parent
        config = json.loads((folder / "config.json").read_text())["simulation"]
        summary = json.loads(summary_path.read_text())
        rows = read_metrics(folder)
        key = (config["review"], config["attack"], float(config["malicious_ratio"]), int(config["seed"]))
        line = (f"{key[0]} {key[1]:10s} r={key[2]:g} s={key[3]}, {len(rows)} rounds: "
                f"{describe(last_half_mean(rows, 'test_auroc'), last_half_mean(rows, 'attack_success_rate'), rejected_counts(rows))}, "
                f"removed malicious {summary['removed_malicious']}/{summary['malicious_clients']} "
                f"honest {summary['removed_honest']}/{summary['honest_clients']}")
        other = proposer_only.get(key)
        if other is not None:
            counts = (other.malicious_proposals, other.malicious_rejected, other.honest_proposals, other.honest_rejected)
            line += f" | {describe(other.auroc, other.asr, counts)}"
        print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
