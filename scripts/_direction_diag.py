"""Where does the direction test's threshold belong on Fashion-MNIST? (docs/REVIEW_STUDY.md,
"Fashion-MNIST: the threshold")

No chain, no voting: a clean FedAvg trajectory (6 random proposers a round, the benchmark's
fmnist setting: 30 clients, 200 images each, Dirichlet 0.5, lr 0.003, 1 local epoch). At each
checkpoint round every client computes, from the same global model, its honest update, a
label-flipped update (the project's attack), a backdoored update (the benchmark's pixel trigger)
and an ALIE update (from 4 other clients' honest updates, z for 6 proposers / 2 attackers); every
other client, as a voter, scores each with:

- cos20 / cos1: cosine with the voter's own update from 20 local epochs (the review rules'
  reference) / from 1 epoch; cos20_last, cos20_body: the same over the last layer / the rest;
- dloss_train / dloss_val: the voter's mean cross-entropy before minus after applying the update
  (its training / validation split).

Writes one CSV row per (round, kind, proposer, voter) and prints, per score, the pair AUC honest
vs each attack, and, per threshold t of cos20, the share of honest pairs at or below t and the
share of proposals a majority of honest voters would reject (the benchmark's voters are honest).

    python scripts/_direction_diag.py --seed 0 --checkpoints 1,5,10,20
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _review_study import GenericTrainer  # noqa: E402

from fl.attacks import catalogue  # noqa: E402
from fl.attacks.behaviours import HONEST, attack_seed, make_proposal  # noqa: E402
from fl.defences.review import cosine_similarities, stacked_logits  # noqa: E402
from fl.learning.tasks import task_of  # noqa: E402
from fl.simulation.rounds import SimulationConfig, derived_seed, load_federated_data  # noqa: E402

KINDS = ("honest", "label_flip", "backdoor", "alie")
THRESHOLDS = (-0.1, -0.05, -0.03, -0.02, -0.01, 0.0, 0.01, 0.02, 0.03, 0.05)
OUT = Path(__file__).resolve().parents[1] / "results" / "review-study" / "fmnist-threshold"


def run(seed: int, checkpoints: list[int], clients: int = 30, proposers: int = 6) -> list[dict]:
    config = SimulationConfig(clients=clients, malicious_ratio=0.0, rounds=max(checkpoints), seed=seed, task="fmnist",
                              dirichlet_alpha=0.5, lr=0.003, samples_per_client=200)
    data = load_federated_data(config)
    task = task_of(config)
    template = task.make_model(data, seed)
    trainer = GenericTrainer(template, data, config, task)
    names, sizes = trainer.names, trainer.sizes
    last_start = sum(sizes[:-2])  # the last layer: weight and bias
    flat = torch.cat([p.detach().reshape(-1) for p in template.parameters()])
    everyone = list(range(clients))
    X = {s: torch.cat([getattr(c, s).X for c in data.clients]) for s in ("train", "val")}
    y = {s: torch.cat([getattr(c, s).y for c in data.clients]) for s in ("train", "val")}
    bounds = {s: np.cumsum([0] + [len(getattr(c, s)) for c in data.clients]) for s in ("train", "val")}

    def losses(models: torch.Tensor, split: str) -> torch.Tensor:  # (M, rows)
        logits = stacked_logits(template, models, X[split])
        return torch.stack([torch.nn.functional.cross_entropy(lg, y[split], reduction="none") for lg in logits])

    def per_client_mean(row: torch.Tensor, split: str) -> torch.Tensor:
        b = bounds[split]
        return torch.stack([row[b[v]:b[v + 1]].mean() for v in everyone])

    def backdoored(r: int) -> torch.Tensor:
        state, out = trainer.state(flat), []
        for c in everyone:
            split = data.clients[c].train
            images, labels = catalogue.backdoor(split.X, split.y, torch.Generator().manual_seed(attack_seed(derived_seed(seed, r, c))))
            new = make_proposal(state, type(split)(images, labels), HONEST, epochs=1, lr=config.lr,
                                seed=derived_seed(seed, r, c), num_features=data.num_features, template=template,
                                train=task.train)
            out.append(torch.cat([new[n].reshape(-1) for n in names]) - flat)
        return torch.stack(out)

    rows, rng = [], random.Random(seed)
    for r in range(1, max(checkpoints) + 1):
        if r in checkpoints:
            started = time.time()
            honest = trainer.updates(flat, everyone, [False] * clients, (seed, r))
            pick = random.Random(derived_seed(seed, r, 7))
            updates = {
                "honest": honest,
                "label_flip": trainer.updates(flat, everyone, [True] * clients, (seed, r)),
                "backdoor": backdoored(r),
                "alie": torch.stack([catalogue.alie([honest[q] for q in pick.sample([x for x in everyone if x != p], 4)],
                                                    proposers, 2) for p in everyone]),
            }
            own20 = trainer.multi_step_updates(flat, everyone, 20, (seed, r))
            base = {s: per_client_mean(losses(flat.unsqueeze(0), s)[0], s) for s in ("train", "val")}
            for kind, ups in updates.items():
                after = {s: torch.stack([per_client_mean(row, s) for row in losses(flat + ups, s)]) for s in ("train", "val")}
                scores = {  # (voters, proposals)
                    "cos20": torch.stack([cosine_similarities(ups, own20[v]) for v in everyone]),
                    "cos1": torch.stack([cosine_similarities(ups, honest[v]) for v in everyone]),
                    "cos20_last": torch.stack([cosine_similarities(ups[:, last_start:], own20[v][last_start:]) for v in everyone]),
                    "cos20_body": torch.stack([cosine_similarities(ups[:, :last_start], own20[v][:last_start]) for v in everyone]),
                    "dloss_train": (base["train"].unsqueeze(0) - after["train"]).T,
                    "dloss_val": (base["val"].unsqueeze(0) - after["val"]).T,
                }
                for p in everyone:
                    for v in everyone:
                        if v != p:
                            rows.append({"seed": seed, "round": r, "kind": kind, "proposer": p, "voter": v,
                                         **{k: round(float(s[v, p]), 6) for k, s in scores.items()}})
            print(f"seed {seed} round {r}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
        chosen = rng.sample(everyone, proposers)  # advance the clean FedAvg trajectory
        ups = trainer.updates(flat, chosen, [False] * proposers, (seed, r))
        w = torch.tensor([len(data.clients[c].train) for c in chosen], dtype=torch.float64)
        flat = flat + ((w.unsqueeze(1) * ups.double()).sum(0) / w.sum()).float()
    return rows


def report(rows: list[dict]) -> str:
    lines = []
    scores = [k for k in rows[0] if k not in ("seed", "round", "kind", "proposer", "voter")]
    for (seed, r) in sorted({(row["seed"], row["round"]) for row in rows}):
        at = [row for row in rows if (row["seed"], row["round"]) == (seed, r)]
        lines.append(f"\n== seed {seed}, round {r}: pair AUC honest vs attack (1 = separable; < 0.5 = looks more honest)")
        for score in scores:
            h = np.array([row[score] for row in at if row["kind"] == "honest"])
            cells = []
            for kind in KINDS[1:]:
                a = np.array([row[score] for row in at if row["kind"] == kind])
                cells.append(f"{kind} {roc_auc_score(np.r_[np.ones(len(h)), np.zeros(len(a))], np.r_[h, a]):.3f}")
            lines.append(f"  {score:12s} honest median {np.median(h):+.3f} | " + " | ".join(cells))
        lines.append("  cos20 threshold t: honest pairs <= t, honest / label_flip / backdoor / alie proposals a majority rejects")
        for t in THRESHOLDS:
            shares = []
            for kind in KINDS:
                by_proposer: dict[int, list[bool]] = {}
                for row in at:
                    if row["kind"] == kind:
                        by_proposer.setdefault(row["proposer"], []).append(row["cos20"] <= t)
                shares.append((np.mean([x for xs in by_proposer.values() for x in xs]),
                               np.mean([np.mean(xs) > 0.5 for xs in by_proposer.values()])))
            lines.append(f"  {t:+.2f}: {shares[0][0]:.3f} | " + " / ".join(f"{s[1]:.2f}" for s in shares))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoints", default="1,5,10,20", help="rounds to score at, comma-separated")
    parser.add_argument("--out", default=str(OUT), help="folder for pairs-seed<N>.csv and report-seed<N>.txt")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = run(args.seed, [int(x) for x in args.checkpoints.split(",")])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"pairs-seed{args.seed}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = report(rows)
    (out / f"report-seed{args.seed}.txt").write_text(text.lstrip() + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
