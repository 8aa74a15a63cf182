"""The defence benchmark's section of docs/RESULTS.md: tables, a heatmap, the wall time.

Reads the run folders ``ape run experiment benchmark`` wrote (``experiment.json`` with
``"benchmark": true``, ``metrics.csv``) and writes, per task, one table of test AUROC and one of
accuracy (attacks x ratio as rows, defences as columns; each cell the mean over seeds of the
mean over the last half of the rounds, +- the standard deviation over seeds), the backdoor's
attack success rate, the share of malicious and honest proposals the protocol rejected, a
heatmap of the AUROC table, the cells where a protocol column is behind the best chainless
robust aggregator, and the sweep's wall time. Nothing is typed by hand.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fl.experiments.benchmark import (
    CHAINLESS_DEFENCES,
    EXPERIMENT_FILE,
    NO_ATTACK,
    PROTOCOL_AGGREGATE,
    PROTOCOL_PER_PROPOSAL,
    PROTOCOL_PLUS_PREFIX,
    SUMMARY_FILE,
    is_done,
    is_protocol,
)
from fl.experiments.sweep import busy_seconds, recorded_draw, session_outcome

DEFENCE_NAMES = {
    "fedavg": "FedAvg", "median": "Median", "trimmed_mean": "Trimmed mean", "krum": "Krum",
    "multi_krum": "Multi-Krum", "bulyan": "Bulyan", "centered_clipping": "Centered clipping",
    PROTOCOL_AGGREGATE: "Protocol (paper rule)", PROTOCOL_PER_PROPOSAL: "Protocol (per-proposal)",
}
NOTES_FILE = "NOTES.md"  # authored reading of a grid (what was run and why), included verbatim
TARGET_POINTS = 0.02  # issue 12: per-proposal review within 2 points of clean FedAvg at ratio 0.2


def defence_name(defence: str) -> str:
    if defence.startswith(PROTOCOL_PLUS_PREFIX):
        return f"Per-proposal + {DEFENCE_NAMES.get(defence[len(PROTOCOL_PLUS_PREFIX):], defence)}"
    return DEFENCE_NAMES.get(defence, defence)


def defence_order(defence: str) -> tuple:
    if defence in CHAINLESS_DEFENCES:
        return (0, CHAINLESS_DEFENCES.index(defence), defence)
    if defence == PROTOCOL_AGGREGATE:
        return (1, 0, defence)
    if defence == PROTOCOL_PER_PROPOSAL:
        return (1, 1, defence)
    return (1, 2, defence)


@dataclass
class Cell:
    """One finished run, reduced to what the tables show."""

    task: str
    defence: str
    attack: str
    ratio: float
    seed: int
    rounds: int
    auroc: float
    accuracy: float
    asr: float
    malicious_proposals: int
    malicious_rejected: int
    honest_proposals: int
    honest_rejected: int
    review: str | None
    num_byzantine: int
    network: str = ""  # the protocol run's Ape network (summary.json); "" for chainless runs
    draw: str = ""  # a chainless run's proposer draw (config.json: "contract", or "seeded" before the replay)
    wall_seconds: float = math.nan  # the run's own wall time (summary.json)


def _float(value) -> float:
    try:
        return float(value) if value not in (None, "", "None") else math.nan
    except ValueError:
        return math.nan


def last_half_mean(rows: Sequence[dict], column: str) -> float:
    """Mean of ``column`` over the last half of the rounds (the second half; all of one round)."""
    tail = rows[len(rows) // 2:]
    values = [_float(r.get(column)) for r in tail]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def task_label(config: dict) -> str:
    if config.get("task", "lending") == "lending":
        return "lending"
    return f"{config['task']} (Dirichlet alpha {config.get('dirichlet_alpha', 0.5):g})"


def rejected_counts(rows: Sequence[dict]) -> tuple[int, int, int, int]:
    """(malicious proposals, of them rejected, honest proposals, of them rejected) over the run."""
    if rows and "malicious_rejected" in rows[0]:
        total = {k: sum(int(_float(r[k]) or 0) for r in rows)
                 for k in ("malicious_accepted", "malicious_rejected", "honest_accepted", "honest_rejected")}
        return (total["malicious_accepted"] + total["malicious_rejected"], total["malicious_rejected"],
                total["honest_accepted"] + total["honest_rejected"], total["honest_rejected"])
    malicious = sum(int(r["malicious_proposers"]) for r in rows)
    honest = sum(int(r["proposers"]) - int(r["malicious_proposers"]) for r in rows)
    rejected = [r for r in rows if r["decision"] != "accepted"]
    return (malicious, sum(int(r["malicious_proposers"]) for r in rejected), honest,
            sum(int(r["proposers"]) - int(r["malicious_proposers"]) for r in rejected))


def load_cells(results: Path) -> list[Cell]:
    """Every finished benchmark run under ``results`` (an interrupted one is not finished)."""
    cells = []
    for marker in sorted(Path(results).rglob(EXPERIMENT_FILE)):
        folder = marker.parent
        spec = json.loads(marker.read_text())
        if not spec.get("benchmark") or not is_done(folder):
            continue
        with open(folder / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        counts = rejected_counts(rows)
        summary = json.loads((folder / SUMMARY_FILE).read_text() or "{}")
        cells.append(Cell(
            task=task_label(spec["config"]), defence=spec["defence"], attack=spec["attack"],
            ratio=float(spec["malicious_ratio"]), seed=int(spec["seed"]), rounds=len(rows),
            auroc=last_half_mean(rows, "test_auroc"), accuracy=last_half_mean(rows, "test_accuracy"),
            asr=last_half_mean(rows, "attack_success_rate"), malicious_proposals=counts[0],
            malicious_rejected=counts[1], honest_proposals=counts[2], honest_rejected=counts[3],
            review=spec.get("review"), num_byzantine=int(spec.get("num_byzantine", 0)),
            network=str(summary.get("network") or ""), wall_seconds=_float(summary.get("wall_seconds")),
            draw="" if is_protocol(spec["defence"]) else (recorded_draw(folder) or ""),
        ))
    return cells


def is_benchmark_folder(folder: Path) -> bool:
    """A results folder written by ``ape run experiment benchmark`` (its sweep.json says so)."""
    path = Path(folder) / "sweep.json"
    if not path.is_file():
        return False
    return any(s.get("benchmark") for s in json.loads(path.read_text()).get("sessions", []))


# ----------------------------------------------------------------------------------------
# Tables


Key = tuple[str, float]  # (attack, ratio)


def grid(cells: Sequence[Cell], value: str) -> dict[tuple[Key, str], list[float]]:
    """(row, defence) -> the per-seed values of ``value``."""
    out: dict[tuple[Key, str], list[float]] = defaultdict(list)
    for cell in cells:
        out[((cell.attack, cell.ratio), cell.defence)].append(getattr(cell, value))
    return out


def row_order(cells: Sequence[Cell]) -> list[Key]:
    from fl.attacks.behaviours import PROPOSER_ATTACKS

    order = [NO_ATTACK, *PROPOSER_ATTACKS]
    keys = {(c.attack, c.ratio) for c in cells}
    return sorted(keys, key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[0], k[1]))


def row_label(key: Key) -> str:
    attack, ratio = key
    return "none (no attackers)" if attack == NO_ATTACK else f"{attack} @ {ratio:g}"


def fmt_cell(values: Sequence[float], seeds_expected: int) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "—"
    text = f"{np.mean(finite):.3f}"
    if len(finite) > 1:
        text += f" ± {np.std(finite, ddof=1):.3f}"
    if len(finite) < seeds_expected:
        text += f" (n={len(finite)})"
    return text


def mean_of(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def value_table(cells: Sequence[Cell], value: str, defences: Sequence[str], seeds: int) -> list[str]:
    table = grid(cells, value)
    rows = [[row_label(k)] + [fmt_cell(table.get((k, d), []), seeds) for d in defences] for k in row_order(cells)]
    return md_table(["attack @ ratio", *(defence_name(d) for d in defences)], rows)


def rejection_table(cells: Sequence[Cell], defences: Sequence[str]) -> list[str]:
    protocol = [d for d in defences if is_protocol(d)]
    if not protocol:
        return []
    sums: dict[tuple[Key, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for c in cells:
        if c.defence in protocol:
            s = sums[((c.attack, c.ratio), c.defence)]
            s[0] += c.malicious_proposals
            s[1] += c.malicious_rejected
            s[2] += c.honest_proposals
            s[3] += c.honest_rejected

    def share(part, whole):
        return f"{100 * part / whole:.0f}%" if whole else "—"

    rows = []
    for key in row_order([c for c in cells if c.defence in protocol]):
        rows.append([row_label(key)] + [
            f"{share(s[1], s[0])} / {share(s[3], s[2])}" if (s := sums.get((key, d))) else "—" for d in protocol
        ])
    return md_table(["attack @ ratio", *(defence_name(d) for d in protocol)], rows)


def draw_share_table(cells: Sequence[Cell], defences: Sequence[str]) -> list[str]:
    """Malicious proposals / all proposals per attacked row and column, over its seeds: the draw
    a cell's score depends on (chainless columns draw their proposers without the contract)."""
    sums: dict[tuple[Key, str], list[int]] = defaultdict(lambda: [0, 0])
    for c in cells:
        if c.attack != NO_ATTACK:
            s = sums[((c.attack, c.ratio), c.defence)]
            s[0] += c.malicious_proposals
            s[1] += c.malicious_proposals + c.honest_proposals
    rows = [[row_label(key)] + [f"{100 * s[0] / s[1]:.0f}%" if (s := sums.get((key, d))) and s[1] else "—"
                                for d in defences]
            for key in row_order([c for c in cells if c.attack != NO_ATTACK])]
    return md_table(["attack @ ratio", *(defence_name(d) for d in defences)], rows) if rows else []


def draw_caption(cells: Sequence[Cell]) -> str:
    """How the chainless columns drew their proposers, from what their runs recorded."""
    chainless = [c for c in cells if not is_protocol(c.defence)]
    former = sum(c.draw != "contract" for c in chainless)
    if not former:
        return ("the chainless columns replay the contract's draw, so every column of a seed faces the same "
                "proposers until the protocol removes a client whose stake ran out")
    return (f"{former} of {len(chainless)} chainless runs drew their proposers with the former seeded generator, "
            "not the contract's draw, so their columns need not face the protocol columns' share")


def heatmap(cells: Sequence[Cell], defences: Sequence[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = row_order(cells)
    table = grid(cells, "auroc")
    values = np.array([[mean_of(table.get((k, d), [])) for d in defences] for k in keys])
    fig, ax = plt.subplots(figsize=(1.2 * len(defences) + 3, 0.42 * len(keys) + 1.8))
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(defences)), [defence_name(d) for d in defences], rotation=35, ha="right")
    ax.set_yticks(range(len(keys)), [row_label(k) for k in keys])
    for i in range(len(keys)):
        for j in range(len(defences)):
            if math.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] < (vmin + vmax) / 2 else "black")
    fig.colorbar(image, ax=ax, label="test AUROC, mean of the last half of the rounds")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def seed_values(cells: Sequence[Cell], key: Key, defence: str, value: str = "auroc") -> dict[int, float]:
    """Seed -> the finite ``value`` of column ``defence`` on row ``key``."""
    return {c.seed: getattr(c, value) for c in cells
            if (c.attack, c.ratio) == key and c.defence == defence and math.isfinite(getattr(c, value))}


def paired_difference(cells: Sequence[Cell], key: Key, mine: str, other: str, value: str = "auroc") -> tuple[float, float, int]:
    """Mean and standard deviation over seeds of ``mine - other`` on row ``key``, seed by seed
    (both columns share each seed's data split, initial model and malicious clients), and the
    number of seeds both have; (nan, nan, 0) if none."""
    mine_by_seed, other_by_seed = seed_values(cells, key, mine, value), seed_values(cells, key, other, value)
    differences = [mine_by_seed[s] - other_by_seed[s] for s in sorted(set(mine_by_seed) & set(other_by_seed))]
    if not differences:
        return math.nan, math.nan, 0
    return float(np.mean(differences)), float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0, len(differences)


def _paired_text(cells: Sequence[Cell], key: Key, mine: str, other: str) -> str:
    mean, sd, n = paired_difference(cells, key, mine, other)
    if n < 2:
        return ""
    return f" (paired by seed: {mean * 100:+.1f} ± {sd * 100:.1f} points, {n} seeds)"


def over_shared_seeds(mine: dict[int, float], other: dict[int, float]) -> tuple[float, float, str]:
    """Both columns' means over the seeds both have (nan if none), and " over seeds ..." when that
    drops a seed of either: a verdict never sets one column's 2-seed mean against another's
    3-seed mean (the seeds are different data splits)."""
    shared = sorted(set(mine) & set(other))
    if not shared:
        return math.nan, math.nan, ""
    note = "" if set(mine) == set(other) else " over seeds " + ", ".join(map(str, shared))
    return float(np.mean([mine[s] for s in shared])), float(np.mean([other[s] for s in shared])), note


def protocol_losses(cells: Sequence[Cell], defences: Sequence[str]) -> list[str]:
    """Each (protocol column, attack row) whose mean AUROC is below a chainless robust
    aggregator's over the seeds both have (with the seed-by-seed difference), the count at the
    largest ratio (issue 12: ahead under at least 6 of the 8 proposer attacks at 0.4), and the
    per-proposal target against clean FedAvg at ratio 0.2."""
    robust = [d for d in defences if d in CHAINLESS_DEFENCES and d != "fedavg"]
    lines = []
    clean = seed_values(cells, (NO_ATTACK, 0.0), "fedavg")
    largest = max((c.ratio for c in cells if c.attack != NO_ATTACK), default=math.nan)
    for defence in [d for d in defences if is_protocol(d)]:
        losses, wins, compared = [], 0, 0
        largest_wins, largest_compared = 0, 0
        for key in row_order(cells):
            if key[0] == NO_ATTACK:
                continue
            mine = seed_values(cells, key, defence)
            # (margin of the aggregator over the protocol, the protocol's mean, the aggregator, its mean, note)
            margins = []
            for other in robust:
                my_mean, other_mean, note = over_shared_seeds(mine, seed_values(cells, key, other))
                if math.isfinite(my_mean):
                    margins.append((other_mean - my_mean, my_mean, other, other_mean, note))
            if not margins:
                continue
            margin, my_mean, best, best_mean, note = max(margins, key=lambda m: m[0])
            compared += 1
            largest_compared += key[1] == largest
            if margin > 0:
                losses.append(f"{row_label(key)}: {my_mean:.3f} vs {defence_name(best)} {best_mean:.3f}{note}"
                              + _paired_text(cells, key, defence, best))
            else:
                wins += 1
                largest_wins += key[1] == largest
        if compared:
            lines.append(f"- **{defence_name(defence)}** ahead of (or level with) the best chainless robust aggregator in "
                         f"{wins} of {compared} attacked cells; at ratio {largest:g}, under {largest_wins} of "
                         f"{largest_compared} attacks." + (" Behind in: " + "; ".join(losses) + "." if losses else ""))
        rows_02 = [k for k in row_order(cells) if k[0] != NO_ATTACK and k[1] == 0.2 and seed_values(cells, k, defence)]
        if clean and rows_02:
            misses, clean_means = [], set()
            for key in rows_02:
                my_mean, clean_mean, note = over_shared_seeds(seed_values(cells, key, defence), clean)
                if math.isfinite(my_mean):
                    clean_means.add(f"{clean_mean:.3f}{note}")
                    if my_mean < clean_mean - TARGET_POINTS:
                        misses.append(f"{row_label(key)} {my_mean:.3f}")
            lines.append(f"  - At ratio 0.2, more than {TARGET_POINTS * 100:.0f} points below clean FedAvg "
                         f"({'; '.join(sorted(clean_means))}): " + (", ".join(misses) if misses else "none") + ".")
    return lines


def backdoor_target_lines(cells: Sequence[Cell], defences: Sequence[str]) -> list[str]:
    """Issue 12's backdoor target: each protocol column's attack success rate at most a third of
    FedAvg's, per ratio, over the seeds both have."""
    lines = []
    for ratio in sorted({c.ratio for c in cells if c.attack == "backdoor"}):
        key = ("backdoor", ratio)
        fedavg = seed_values(cells, key, "fedavg", "asr")
        for defence in [d for d in defences if is_protocol(d)]:
            mine, theirs, note = over_shared_seeds(seed_values(cells, key, defence, "asr"), fedavg)
            if math.isfinite(mine):
                met = "met" if mine <= theirs / 3 else "missed"
                lines.append(f"- ratio {ratio:g}, {defence_name(defence)}: {mine:.3f} vs FedAvg {theirs:.3f}{note} "
                             f"(target at most a third, {theirs / 3:.3f}: {met})")
    return lines


def wall_time_lines(results: Path) -> list[str]:
    path = Path(results) / "sweep.json"
    if not path.is_file():
        return ["- not recorded"]
    sessions = json.loads(path.read_text())["sessions"]
    lines = [f"- {len(sessions)} session(s), {busy_seconds(sessions) / 60:.0f} min of wall-clock time while any ran "
             "(2 shared CPU cores, other jobs running: pessimistic)."]
    for s in sessions:
        lines.append(f"  - `{s.get('command')}`: started {s.get('started')}, {s.get('wall_seconds', 0) / 60:.0f} min, "
                     f"{s.get('made', 0)} runs made" + session_outcome(s))
    return lines


def run_time_table(cells: Sequence[Cell], defences: Sequence[str]) -> list[str]:
    """Per column: runs, median and longest seconds a run, and the sum of the runs' own wall times in minutes."""
    rows = []
    for defence in defences:
        column = [c for c in cells if c.defence == defence]
        seconds = [c.wall_seconds for c in column if math.isfinite(c.wall_seconds)]
        rows.append([defence_name(defence), str(len(column)),
                     *([f"{np.median(seconds):.0f}", f"{max(seconds):.0f}", f"{sum(seconds) / 60:.0f}"]
                       if seconds else ["-", "-", "-"])])
    return md_table(["Defence", "Runs", "Median s a run", "Longest s", "Total min"], rows)


def benchmark_section(results: Path, figures: Path, out: Path) -> list[str]:
    """The Markdown lines of the benchmark section for the runs under ``results``."""
    cells = load_cells(results)
    if not cells:
        return []
    lines = []
    by_task: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        by_task[cell.task].append(cell)
    for task, task_cells in sorted(by_task.items(), key=lambda kv: (kv[0] != "lending", kv[0])):
        defences = sorted({c.defence for c in task_cells}, key=defence_order)
        seeds = len({c.seed for c in task_cells})
        rounds = sorted({c.rounds for c in task_cells})
        reviews = sorted({c.review for c in task_cells if c.review and c.defence != PROTOCOL_AGGREGATE})
        networks = sorted({c.network for c in task_cells if c.network})
        label = f"{task}, {max(rounds)} rounds"  # one task may have grids of several horizons
        slug = re.sub(r"[^0-9a-z]+", "-", label.lower()).strip("-")
        figure = heatmap(task_cells, defences, Path(figures) / f"benchmark-{slug}.png", f"Defence benchmark: {label}")
        lines += [
            f"## Defence benchmark (issue 12): {label}",
            "",
            f"Generated from `{results}` ({len(task_cells)} runs, {seeds} seed(s), {'/'.join(map(str, rounds))} rounds). "
            "Malicious clients attack as proposers only; votes are honest. Chainless columns: every proposal "
            "accepted, the new model the named aggregator over them (f = floor(ratio x proposers), lowered to "
            "the rule's precondition). Protocol columns: the stake protocol on "
            + (" and ".join(f"`{n}`" for n in networks) if networks else "a chain") + ", the paper's "
            "vote on the FedAvg of all proposals, or per-proposal review"
            + (f" (`--review {', '.join(reviews)}`)" if reviews else "") + " then FedAvg (or the named "
            "aggregator) over the accepted proposals. Cells: mean over seeds of the mean over the last half "
            "of the rounds, ± the standard deviation over seeds; (n=k) marks cells with fewer seeds.",
            "",
            *([(Path(results) / NOTES_FILE).read_text().strip(), ""] if (Path(results) / NOTES_FILE).is_file() else []),
            "Test AUROC:",
            "",
            *value_table(task_cells, "auroc", defences, seeds),
            "",
            "Test accuracy:",
            "",
            *value_table(task_cells, "accuracy", defences, seeds),
            "",
        ]
        backdoor = [c for c in task_cells if c.attack == "backdoor" or (c.attack == NO_ATTACK and math.isfinite(c.asr))]
        if backdoor:
            lines += ["Backdoor attack success rate (triggered test images classified as the target class):", "",
                      *value_table(backdoor, "asr", defences, seeds), ""]
            target = backdoor_target_lines(task_cells, defences)
            if target:
                lines += ["Backdoor target (issue 12: the protocol's success rate at most a third of FedAvg's):", "",
                          *target, ""]
        rejection = rejection_table(task_cells, defences)
        if rejection:
            lines += ["Proposals rejected by the protocol (malicious / honest):", "", *rejection, ""]
        shares = draw_share_table(task_cells, defences)
        if shares:
            lines += [f"Attackers' share of the proposals (malicious / all proposals over the seeds; {draw_caption(task_cells)}):",
                      "", *shares, ""]
        relative = figure.relative_to(out).as_posix() if figure.is_relative_to(out) else figure.as_posix()
        lines += [f"![Defence benchmark heatmap, {label}]({relative})", ""]
        losses = protocol_losses(task_cells, defences)
        if losses:
            lines += ["Where the protocol is behind:", "", *losses, ""]
        lines += ["Run time per column (the sum of the runs' own wall times, from their summary.json; runs copied "
                  "in from another folder count here and not in the sessions below; two runs at a time on 2 shared "
                  "cores):", "", *run_time_table(task_cells, defences), ""]
    lines += ["Benchmark wall time:", "", *wall_time_lines(results), ""]
    return lines
