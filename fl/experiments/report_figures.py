"""The report's figures (PNG, matplotlib without a display), drawn from a task's ``Sweep``."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fl.experiments.runs import (  # noqa: E402
    METHOD_NAMES, METRIC_NAMES, Run, Sweep, mean_std, mean_survival, stack,
)

METHOD_COLORS = {"fedavg-attack": "tab:red", "protocol": "tab:blue", "fedavg-clean": "tab:green", "oracle": "black",
                 "protocol-aggregate": "tab:orange", "protocol-cosine": "tab:blue"}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _band(ax, x, matrix, color, label, ls="-"):
    with warnings.catch_warnings():  # all-NaN columns (e.g. no malicious proposer yet) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(matrix, axis=0)
        std = np.nanstd(matrix, axis=0)
    ax.plot(x, mean, color=color, label=label, lw=1.4, ls=ls)
    if matrix.shape[0] > 1:
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)


def _axes_row(n: int, height: float = 3.2):
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.4, height), squeeze=False, sharey=True)
    return fig, axes[0]


def plot_learning_curves(sweep: Sweep, metric: str, path: Path) -> Path:
    fig, axes = _axes_row(len(sweep.ratios))
    for ax, ratio in zip(axes, sweep.ratios):
        for method in sweep.methods:
            runs = sweep.cell(method, ratio)
            if runs:
                matrix = stack(runs, metric)
                _band(ax, np.arange(1, matrix.shape[1] + 1), matrix, METHOD_COLORS[method], METHOD_NAMES[method])
        ax.set(title=f"malicious ratio {ratio:g}", xlabel="round")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {METRIC_NAMES[metric]}")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{sweep.task}: learning curves (mean ± std over seeds)", fontsize=10)
    return _save(fig, path)


def plot_proposer_tokens(sweep: Sweep, path: Path, method: str = "protocol") -> Path:
    fig, axes = _axes_row(len(sweep.ratios))
    stake = initial = None
    for ax, ratio in zip(axes, sweep.ratios):
        runs = sweep.cell(method, ratio)
        if not runs:
            continue
        stake, initial = runs[0].config["proposer_stake"], runs[0].config["stake"]
        x = np.arange(1, max(r.rounds for r in runs) + 1)
        _band(ax, x, stack(runs, "mean_tokens_honest_proposers"), "tab:blue", "honest proposers")
        _band(ax, x, stack(runs, "mean_tokens_malicious_proposers"), "tab:red", "malicious proposers")
        ax.axhline(stake, ls="--", color="gray", lw=1, label=f"proposer stake ({stake:g})")
        ax.axhline(initial, ls=":", color="gray", lw=1, label=f"initial tokens ({initial:g})")
        ax.set(title=f"malicious ratio {ratio:g}", xlabel="round")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean tokens")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{sweep.task}: tokens of clients that have proposed ({method}; mean ± std over seeds)", fontsize=10)
    return _save(fig, path)


def plot_decisions(sweep: Sweep, path: Path, method: str = "protocol") -> Path:
    n = len(sweep.ratios)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n + 0.4, 5.2), squeeze=False)
    for col, ratio in enumerate(sweep.ratios):
        runs = sorted(sweep.cell(method, ratio), key=lambda r: r.seed)
        top, bottom = axes[0][col], axes[1][col]
        if not runs:
            continue
        longest = max(r.rounds for r in runs)
        raster = np.full((len(runs), longest), np.nan)
        for i, run in enumerate(runs):
            raster[i, :run.rounds] = [1.0 if row["decision"] == "accepted" else 0.0 for row in run.rows]
        top.imshow(raster, aspect="auto", cmap=matplotlib.colors.ListedColormap(["tab:red", "tab:green"]),
                   vmin=0, vmax=1, interpolation="nearest", extent=(0.5, longest + 0.5, len(runs) - 0.5, -0.5))
        top.set(title=f"ratio {ratio:g}: green accepted, red rejected", xlabel="round", ylabel="seed",
                yticks=range(len(runs)), yticklabels=[r.seed for r in runs])
        top.title.set_fontsize(8)
        x = np.arange(1, longest + 1)
        accepted = np.nan_to_num(raster, nan=0.0).cumsum(axis=1)
        rejected = np.nan_to_num(1 - raster, nan=0.0).cumsum(axis=1)
        _band(bottom, x, accepted, "tab:green", "accepted (reward)")
        _band(bottom, x, rejected, "tab:red", "rejected (slash)")
        bottom.set(xlabel="round", ylabel="cumulative rounds")
        bottom.grid(alpha=0.3)
    axes[1][-1].legend(fontsize=7)
    fig.suptitle(f"{sweep.task}: {method} decisions per round (top) and cumulative (bottom, mean ± std)", fontsize=10)
    return _save(fig, path)


def plot_survival(sweep: Sweep, path: Path, method: str = "protocol") -> Path | None:
    by_stake = sweep.survival_runs(method)
    if not by_stake:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.5))
    stakes = list(by_stake)
    for kind, color in (("honest", "tab:blue"), ("malicious", "tab:red")):
        stats = [mean_std([mean_survival(r, kind) for r in by_stake[s]]) for s in stakes]
        left.errorbar(stakes, [m for m, _, _ in stats], yerr=[s for _, s, _ in stats], marker="o", color=color,
                      capsize=3, label=f"{kind} clients")
    left.set(xlabel="proposer stake (slash size, tokens)", ylabel="mean rounds until removal",
             title=f"{method}: survival vs slash size (survivors count at the last round)", xticks=stakes)
    left.title.set_fontsize(9)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    cmap = plt.get_cmap("viridis")
    for i, stake in enumerate(stakes):
        runs = by_stake[stake]
        color = cmap(i / max(1, len(stakes) - 1))
        for kind, ls in (("malicious", "-"), ("honest", "--")):
            totals = np.array([[r.summary.get(f"{kind}_clients") or 1] for r in runs], dtype=float)
            matrix = stack(runs, f"active_{kind}") / totals
            x = np.arange(1, matrix.shape[1] + 1)
            right.plot(x, np.nanmean(matrix, axis=0), ls=ls, color=color,
                       label=f"stake {stake:g}, {kind}")
    right.set(xlabel="round", ylabel="fraction still active", title="Active clients (solid malicious, dashed honest)")
    right.title.set_fontsize(9)
    right.legend(fontsize=6, ncol=2)
    right.grid(alpha=0.3)
    return _save(fig, path)


def plot_voters(sweep: Sweep, path: Path, method: str = "protocol") -> Path | None:
    runs = sweep.voter_runs(method)
    if not runs:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.5))
    x = np.arange(1, max(r.rounds for r in runs) + 1)
    _band(left, x, stack(runs, "mean_tokens_honest"), "tab:blue", "honest clients")
    _band(left, x, stack(runs, "mean_tokens_malicious"), "tab:red", "malicious voters")
    left.axhline(runs[0].config["voter_stake"], ls="--", color="gray", lw=1, label="voter stake")
    left.set(xlabel="round", ylabel="mean tokens", title="Tokens (mean ± std over seeds)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for run in sorted(runs, key=lambda r: r.seed):
        right.step(run.column("round"), run.column("active_malicious"), where="post", label=f"seed {run.seed}")
    right.set(xlabel="round", ylabel="active malicious voters", title="Malicious voters still in the system")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(f"{sweep.task}: {method}, malicious voters only (honest proposals), ratio {runs[0].ratio:g}", fontsize=10)
    return _save(fig, path)


def plot_variant(sweep: Sweep, runs: list[Run], path: Path) -> Path:
    """One variant (voters' score) against the main methods at its ratio: AUROC, tokens, decisions."""
    ratio, score = runs[0].ratio, runs[0].config["score"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.4))
    for method in sweep.methods:
        cell = sweep.cell(method, ratio)
        if cell:
            matrix = stack(cell, "test_auroc")
            _band(left, np.arange(1, matrix.shape[1] + 1), matrix, METHOD_COLORS[method], METHOD_NAMES[method])
    matrix = stack(runs, "test_auroc")
    _band(left, np.arange(1, matrix.shape[1] + 1), matrix, "tab:purple", f"protocol, voters score {score}")
    left.set(xlabel="round", ylabel="test AUROC", title=f"ratio {ratio:g}")
    left.legend(fontsize=7, loc="lower right")
    x = np.arange(1, max(r.rounds for r in runs) + 1)
    _band(middle, x, stack(runs, "mean_tokens_honest_proposers"), "tab:blue", "honest proposers")
    _band(middle, x, stack(runs, "mean_tokens_malicious_proposers"), "tab:red", "malicious proposers")
    middle.axhline(runs[0].config["proposer_stake"], ls="--", color="gray", lw=1, label="proposer stake")
    middle.set(xlabel="round", ylabel="mean tokens", title=f"tokens (voters score {score})")
    middle.legend(fontsize=7)
    for run in runs:
        decisions = [1 if row["decision"] == "accepted" else 0 for row in run.rows]
        right.plot(run.column("round"), np.cumsum(decisions), color="tab:green", label="accepted" if run is runs[0] else None)
        right.plot(run.column("round"), np.cumsum([1 - d for d in decisions]), color="tab:red",
                   label="rejected" if run is runs[0] else None)
        right.plot(run.column("round"), run.column("active_malicious"), color="black", ls=":",
                   label="active malicious" if run is runs[0] else None)
    right.set(xlabel="round", ylabel="rounds / clients", title="cumulative decisions, active malicious")
    right.legend(fontsize=7)
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_cost(sweep: Sweep, path: Path, method: str = "protocol") -> Path | None:
    runs = [r for r in sweep.main if r.method == method and r.onchain]
    if not runs:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.3))
    for ratio in sweep.ratios:
        cell = [r for r in runs if abs(r.ratio - ratio) < 1e-9]
        if not cell:
            continue
        gas = stack(cell, "gas") / 1e6
        x = np.arange(1, gas.shape[1] + 1)
        left.plot(x, np.nanmean(gas, axis=0), label=f"ratio {ratio:g}")
        written = np.full_like(gas, np.nan)
        for i, run in enumerate(cell):
            values = [(c["calldata_bytes"] + c["event_bytes"]) / 1024 for c in run.onchain["rounds"]]
            written[i, :len(values)] = values
        right.plot(x, np.nanmean(written, axis=0), label=f"ratio {ratio:g}")
    left.set(xlabel="round", ylabel="gas per round (millions)", title="Gas per round")
    right.set(xlabel="round", ylabel="KiB per round", title="Calldata + event bytes per round")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


# ----------------------------------------------------------------------------- markdown
