"""Offline check of the relative direction test (`cosine_floor_rel`) on the threshold study's
pairs (docs/REVIEW_STUDY.md, "Fashion-MNIST: the backdoor").

Reads results/review-study/fmnist-threshold/pairs-seed<S>.csv (scripts/_direction_diag.py: every
voter's cosine with every client's honest / label-flipped / backdoored / ALIE update along a clean
FedAvg trajectory) and replays random rounds: 6 of the 30 clients propose, a fixed random 40% (or
--ratio) of the clients are malicious and propose the attack's update, the other 24 vote honestly.
Each voter's verdicts come from fl.defences.review's `cosine` policy itself, fed 2-D updates
with the recorded cosines (unit norms: inside the norm bounds). Prints, per seed, round and attack,
the share of honest / malicious proposals a majority rejects, for threshold 0 alone
(`cosine_floor_t0`) and with each --median-ratio.

    python scripts/_relative_rule_offline.py --ratio 0.4 --median-ratios 0.5,0.75
"""
from __future__ import annotations

import argparse
import csv
import math
import random
from collections import defaultdict
from pathlib import Path

import torch

from fl.defences.review import ReviewInputs, review
from fl.defences.voter_review import rule_named

PAIRS = Path(__file__).resolve().parents[1] / "results" / "review-study" / "fmnist-threshold"
CLIENTS, PROPOSERS = 30, 6


def load(seed: int) -> dict:
    cos = defaultdict(dict)  # (round, kind) -> {(proposer, voter): cos20}
    with open(PAIRS / f"pairs-seed{seed}.csv", newline="") as f:
        for row in csv.DictReader(f):
            cos[(int(row["round"]), row["kind"])][(int(row["proposer"]), int(row["voter"]))] = float(row["cos20"])
    return cos


def verdicts(cosines: list[float], median_ratio: float | None) -> list[bool]:
    updates = torch.tensor([[c, math.sqrt(max(0.0, 1 - c * c))] for c in cosines], dtype=torch.float64)
    inputs = ReviewInputs(proposal_count=len(cosines), proposal_updates=updates,
                          own_update=torch.tensor([1.0, 0.0], dtype=torch.float64), reference_norm=1.0)
    rule = rule_named("cosine_floor_t0")  # threshold 0 and the norm bounds, as the voters use them
    extra = {} if median_ratio is None else {"median_ratio": median_ratio}
    return review(rule.policy, inputs, **{**rule.parameters, **extra})


def rejected(cos, rnd, attack, ratio, median_ratio, trials, rng) -> tuple[float, float]:
    counts = {"honest": [0, 0], "malicious": [0, 0]}
    for _ in range(trials):
        malicious = set(rng.sample(range(CLIENTS), round(ratio * CLIENTS)))
        proposers = rng.sample(range(CLIENTS), PROPOSERS)
        kinds = [attack if p in malicious else "honest" for p in proposers]
        voters = [v for v in range(CLIENTS) if v not in proposers]
        accepts = [0] * PROPOSERS
        for v in voters:
            for i, ok in enumerate(verdicts([cos[(rnd, k)][(p, v)] for p, k in zip(proposers, kinds)], median_ratio)):
                accepts[i] += ok
        for i, kind in enumerate(kinds):
            side = counts["honest" if kind == "honest" else "malicious"]
            side[0] += 2 * accepts[i] <= len(voters)  # no majority to accept
            side[1] += 1
    return tuple(n / d if d else math.nan for n, d in (counts["honest"], counts["malicious"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--median-ratios", default="0.5,0.75")
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    rules = [None] + [float(r) for r in args.median_ratios.split(",")]
    print(f"ratio {args.ratio}: rejected honest / malicious proposals; t0 = threshold 0 alone, m = median ratio")
    for seed in map(int, args.seeds.split(",")):
        cos = load(seed)
        rounds = sorted({r for r, _ in cos})
        for attack in ("none", "backdoor", "label_flip", "alie"):
            for m in rules:
                cells = []
                for rnd in rounds:
                    honest, bad = rejected(cos, rnd, "honest" if attack == "none" else attack,
                                           0.0 if attack == "none" else args.ratio, m, args.trials, random.Random(seed))
                    cells.append(f"r{rnd} {honest:.2f}" + ("" if attack == "none" else f"/{bad:.2f}"))
                print(f"seed {seed} {attack:10s} {'t0' if m is None else f'm={m:g}':6s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
