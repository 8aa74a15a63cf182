"""Figures of one run, drawn from its recorded metrics (never by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _column(rows: Sequence[dict], name: str) -> list[float]:
    return [float(r[name]) for r in rows]


def plot_accuracy(rows: Sequence[dict], path: Path) -> None:
    rounds = _column(rows, "round")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(rounds, _column(rows, "test_accuracy"), label="accuracy")
    ax.plot(rounds, _column(rows, "test_balanced_accuracy"), label="balanced accuracy")
    ax.plot(rounds, _column(rows, "test_auroc"), label="AUROC")
    ax.set(xlabel="round", ylabel="test score", title="Global model on the held-out test set")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tokens(rows: Sequence[dict], path: Path, stake_required: float | None = None) -> None:
    rounds = _column(rows, "round")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(rounds, _column(rows, "mean_tokens_honest"), label="honest clients", color="tab:blue")
    ax.plot(rounds, _column(rows, "mean_tokens_malicious"), label="malicious clients", color="tab:red")
    if stake_required is not None:
        ax.axhline(stake_required, ls="--", color="gray", lw=1, label="proposer stake")
    ax.set(xlabel="round", ylabel="mean tokens", title="Mean tokens of honest vs malicious clients")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_decisions(rows: Sequence[dict], path: Path) -> None:
    rounds = _column(rows, "round")
    accepted = [1 if r["decision"] == "accepted" else 0 for r in rows]
    rejected = [1 - a for a in accepted]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 4.5), sharex=True)
    top.bar(rounds, accepted, color="tab:green", label="accepted (reward)")
    top.bar(rounds, [-x for x in rejected], color="tab:red", label="rejected (slash)")
    top.set(ylabel="decision", yticks=[-1, 0, 1], title="Accepted vs rejected rounds")
    top.legend(loc="lower right", fontsize=8)
    cum_a, cum_r, a_total, r_total = [], [], 0, 0
    for a in accepted:
        a_total += a
        r_total += 1 - a
        cum_a.append(a_total)
        cum_r.append(r_total)
    bottom.plot(rounds, cum_a, color="tab:green", label="accepted")
    bottom.plot(rounds, cum_r, color="tab:red", label="rejected")
    bottom.set(xlabel="round", ylabel="cumulative")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_run(rows: Sequence[dict], folder: Path, stake_required: float | None = None) -> list[Path]:
    """Write accuracy.png, tokens.png and decisions.png into `folder`; return their paths."""
    if not rows:
        return []
    paths = [folder / "accuracy.png", folder / "tokens.png", folder / "decisions.png"]
    plot_accuracy(rows, paths[0])
    plot_tokens(rows, paths[1], stake_required)
    plot_decisions(rows, paths[2])
    return paths
