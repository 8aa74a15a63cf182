"""docs/RESULTS.md, its tables and figures, generated from recorded sweep runs (never by hand).

``write_report([results folders], out)`` reads every run folder below the given folders
(``experiment.json``, ``metrics.csv``, ``summary.json`` and, for protocol runs,
``onchain.json``; see ``fl.experiments.sweep``), groups the runs by task and writes one section per
task: the paper's Table 3 (Table 4 for image tasks), learning curves, proposer tokens,
accepted and rejected rounds, survival against the slash size, malicious voters, cost, and
the paper's claims checked against the numbers.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fl.experiments.report_figures import (
    plot_cost,
    plot_decisions,
    plot_learning_curves,
    plot_proposer_tokens,
    plot_survival,
    plot_variant,
    plot_voters,
)
from fl.experiments.report_images import image_task_lines, sweep_label, voter_score
from fl.experiments.runs import (
    LAST_ROUNDS,
    METHOD_NAMES,
    METRIC_NAMES,
    METRICS,
    Run,
    Sweep,
    _float,
    all_removed_round,
    fmt,
    load_runs,
    mean_std,
    mean_survival,
    removal_rounds,
    tail_mean,
)
from fl.experiments.sweep import SWEEP_FILE, busy_seconds, session_outcome

CLAIM_TOLERANCE = 0.01  # "within 1 point"
NOTES_FILE = "NOTES.md"


def variant_section(sweep: Sweep, figures: Path, out: Path) -> list[str]:
    """Protocol runs whose voters score with another metric, next to the main methods at that ratio."""
    variants: dict[str, list[Run]] = defaultdict(list)
    for run in sweep.runs:
        if run.group == "variant":
            variants[run.method].append(run)
    lines = []
    for method, runs in sorted(variants.items()):
        ratio, score = runs[0].ratio, runs[0].config["score"]
        window = min(LAST_ROUNDS, runs[0].rounds)
        lines += [f"### Variant: voters score with `{score}` (ratio {ratio:g})", "",
                  f"The same protocol run at malicious ratio {ratio:g}, except that the voters compare "
                  f"`{score}` on their validation split instead of "
                  f"`{voter_score(sweep.cell('protocol', ratio)[0].config) if sweep.cell('protocol', ratio) else 'accuracy'}`. "
                  f"Not one of the paper's settings: it tests whether the vote can see this attack when its "
                  f"score is not stuck at the class-share floor. Last {window} rounds:", ""]
        rows = []
        for label, cell in [(METHOD_NAMES[m], sweep.cell(m, ratio)) for m in sweep.methods] + [
                (f"protocol, voters score `{score}`", runs)]:
            if not cell:
                continue
            metrics = [fmt(*mean_std([tail_mean(r, m) for r in cell])[:2]) for m in ("test_auroc", "test_balanced_accuracy", "test_accuracy")]
            chain = ["", "", ""]
            if cell[0].method.startswith("protocol"):
                rejected = mean_std([sum(row["decision"] == "rejected" for row in r.rows) for r in cell])[0]
                removed = np.mean([1 - r.column("active_malicious")[-1] / max(1, r.summary.get("malicious_clients") or 1) for r in cell])
                tokens = mean_std([r.column("mean_tokens_malicious_proposers")[-1] for r in cell])[0]
                chain = [f"{rejected:.1f} of {cell[0].rounds}", f"{removed:.0%}", f"{tokens:.1f}"]
            rows.append([label, *metrics, *chain, len(cell)])
        lines += [_md_table(["method", "AUROC", "balanced acc.", "accuracy", "rejected rounds",
                             "malicious removed", "malicious proposers' tokens (end)", "seeds"], rows), ""]
        path = plot_variant(sweep, runs, figures / f"{sweep.task}-{method}.png")
        lines += [f"![Variant {score}]({path.relative_to(out).as_posix()})", ""]
    return lines


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def table_markdown(sweep: Sweep, metric: str) -> str:
    values = sweep.table(metric)
    rows = []
    for method in sweep.methods:
        cells = []
        for ratio in sweep.ratios:
            mean, std, n = values[(method, ratio)]
            cells.append(f"{fmt(mean, std)} (n={n})" if n else "n/a")
        rows.append([METHOD_NAMES[method], *cells])
    return _md_table(["method", *[f"ratio {r:g}" for r in sweep.ratios]], rows)


def write_table_csv(sweeps: Sequence[Sweep], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "method", "malicious_ratio", "metric", "last_rounds", "mean", "std", "seeds"])
        for sweep in sweeps:
            for metric in METRICS:
                for (method, ratio), (mean, std, n) in sweep.table(metric).items():
                    writer.writerow([sweep.task, method, ratio, METRIC_NAMES[metric],
                                     min(LAST_ROUNDS, sweep.rounds), f"{mean:.6f}", f"{std:.6f}", n])
    return path


def headline_metric(task: str) -> str:
    """AUROC everywhere: Lending Club is 95% negative (accuracy saturates), image tasks follow Table 4."""
    return "test_auroc"


def claim_a(sweep: Sweep, metric: str, method: str = "protocol") -> tuple[bool | None, list[str]]:
    values = sweep.table(metric)
    if not {method, "fedavg-clean", "fedavg-attack"} <= set(sweep.methods):
        return None, [f"needs the {method}, fedavg-clean and fedavg-attack runs"]
    holds, missing, lines = True, False, []
    for ratio in sweep.ratios:
        if not values[(method, ratio)][2]:
            missing = True
            lines.append(f"ratio {ratio:g}: no {method} run (not tested at this ratio)")
            continue
        # the baselines on the protocol cell's own seeds: like with like when a cell has fewer seeds
        seeds = {r.seed for r in sweep.cell(method, ratio)}
        protocol, clean, attack = (mean_std([tail_mean(r, metric) for r in sweep.cell(m, ratio) if r.seed in seeds])[0]
                                   for m in (method, "fedavg-clean", "fedavg-attack"))
        within = clean - protocol <= CLAIM_TOLERANCE  # at most 1 point below (above is fine)
        behind = attack < protocol
        holds &= within and behind
        lines.append(
            f"ratio {ratio:g} (seeds {sorted(seeds)}, baselines on the same seeds): w/o mal {clean:.3f}, protocol {protocol:.3f} (gap {clean - protocol:+.3f}, "
            f"{'not more than' if within else 'MORE than'} 1 point below), w/ mal {attack:.3f} "
            f"({'below' if behind else 'NOT below'} the protocol by {protocol - attack:+.3f})"
        )
    if missing and holds:
        lines.append("holds at every ratio that has runs; not tested at the others")
        return None, lines
    return holds, lines


def claim_b(sweep: Sweep, method: str = "protocol") -> tuple[bool | None, list[str]]:
    holds, lines = True, []
    any_runs = False
    for ratio in sweep.ratios:
        runs = sweep.cell(method, ratio)
        if not runs:
            continue
        any_runs = True
        stake, initial = runs[0].config["proposer_stake"], runs[0].config["stake"]
        malicious_tokens = mean_std([r.column("mean_tokens_malicious_proposers")[-1] for r in runs])[0]
        honest_tokens = mean_std([r.column("mean_tokens_honest_proposers")[-1] for r in runs])[0]
        removed = [1 - r.column("active_malicious")[-1] / r.summary["malicious_clients"]
                   for r in runs if r.summary.get("malicious_clients")]
        removed_share = float(np.mean(removed)) if removed else math.nan
        honest_removed = float(np.mean([1 - r.column("active_honest")[-1] / r.summary["honest_clients"]
                                        for r in runs if r.summary.get("honest_clients")]))
        ok = malicious_tokens < stake and removed_share > 0.5 and honest_tokens > initial
        holds &= ok
        lines.append(
            f"ratio {ratio:g} (n={len(runs)}): after {runs[0].rounds} rounds malicious proposers hold "
            f"{malicious_tokens:.1f} tokens on average ({'below' if malicious_tokens < stake else 'NOT below'} "
            f"the proposer stake {stake:g}), {removed_share:.0%} of malicious clients removed "
            f"({honest_removed:.0%} of honest ones); honest proposers hold {honest_tokens:.2f} "
            f"({'more' if honest_tokens > initial else 'NOT more'} than the initial {initial:g})"
        )
    return (holds if any_runs else None), lines


def claim_c(sweep: Sweep, method: str = "protocol") -> tuple[bool | None, list[str]]:
    runs = sweep.voter_runs(method)
    if not runs:
        return None, ["no malicious-voter runs"]
    lines, holds = [], True
    for run in sorted(runs, key=lambda r: r.seed):
        r = all_removed_round(run)
        holds &= r is not None
        lines.append(
            f"seed {run.seed}: {run.summary.get('malicious_clients')} malicious voters, "
            + (f"all removed by round {r}" if r is not None else
               f"{int(run.column('active_malicious')[-1])} still active after {run.rounds} rounds")
        )
    return holds, lines


def _share(numerator: int, denominator: int) -> str:
    return f"{100 * numerator / denominator:.1f}% ({numerator:,} of {denominator:,})" if denominator else "n/a"


def decisions_section(sweep: Sweep) -> list[str]:
    """Per review rule and ratio: rejected rounds, proposals rejected (malicious / honest), removals."""
    if not sweep.protocol_methods:
        return []
    rows = []
    for ratio in sweep.ratios:
        for method in sweep.protocol_methods:
            cell = sweep.cell(method, ratio)
            if not cell:
                rows.append([f"{ratio:g}", f"`{method}`", *["n/a"] * 8, 0])
                continue
            rejected = [sum(row["decision"] == "rejected" for row in r.rows) for r in cell]
            with_mal = [sum(int(row["malicious_proposers"]) > 0 for row in r.rows) for r in cell]
            total = lambda name: sum(int(_float(row.get(name)) or 0) for r in cell for row in r.rows  # noqa: E731
                                     if not math.isnan(_float(row.get(name))))
            mal_rej, mal_acc = total("malicious_rejected"), total("malicious_accepted")
            hon_rej, hon_acc = total("honest_rejected"), total("honest_accepted")
            mal_removed = [len(removal_rounds(r, "malicious")[0]) / max(1, r.summary.get("malicious_clients") or 1)
                           for r in cell]
            all_gone = [all_removed_round(r) for r in cell]
            gone = [g for g in all_gone if g is not None]
            hon_removed = sum(len(removal_rounds(r, "honest")[0]) for r in cell)
            rows.append([f"{ratio:g}", f"`{method}`", fmt(*mean_std(rejected)[:2], digits=1),
                         fmt(*mean_std(with_mal)[:2], digits=1),
                         _share(mal_rej, mal_rej + mal_acc), _share(hon_rej, hon_rej + hon_acc),
                         f"{np.mean(mal_removed):.0%}",
                         (f"{len(gone)} of {len(cell)} runs, round {', '.join(str(g) for g in gone)}" if gone
                          else f"0 of {len(cell)} runs"),
                         f"{hon_removed} (total over runs)", len(cell)])
    return ["### Decisions: rejected rounds, rejected proposals, removed clients", "",
            "Per review rule. A round counts as rejected when the chain rejected its proposals (for per-proposal "
            "review, when none was accepted). Proposals rejected are summed over all rounds and seeds of the cell. "
            "Malicious removed: mean share of malicious clients removed by the last round; all removed: the runs "
            "in which every malicious client was removed, and at which round.", "",
            _md_table(["ratio", "rule", "rejected rounds", "rounds with a malicious proposer",
                       "malicious proposals rejected", "honest proposals rejected", "malicious removed",
                       "all malicious removed", "honest removed", "seeds"], rows), ""]


def _verdict(holds: bool | None) -> str:
    return {True: "**holds**", False: "**does not hold**", None: "**not tested**"}[holds]


def cost_section(sweep: Sweep, method: str = "protocol") -> list[str]:
    runs = [r for r in sweep.main if r.method == method and r.onchain]
    if not runs:
        return [f"No `{method}` runs with on-chain records."]
    update = next((r.onchain.get("update_bytes") for r in runs if r.onchain.get("update_bytes")), None)
    if update is None:
        update = next((r.summary.get("update_bytes") for r in sweep.main if r.summary.get("update_bytes")), None)
    proposers = float(np.mean([np.nanmean(r.column("proposers")) for r in runs]))
    voters = float(np.mean([np.nanmean(r.column("voters")) for r in runs]))
    per_round = [c for r in runs for c in r.onchain["rounds"]]
    gas = float(np.mean([c["gas"] for c in per_round]))
    calldata = float(np.mean([c["calldata_bytes"] for c in per_round]))
    events = float(np.mean([c["event_bytes"] for c in per_round]))
    txs = float(np.mean([c["transactions"] for c in per_round]))
    u = update or 0
    lines = [
        f"**{METHOD_NAMES[method]}.** Measured over {len(runs)} `{method}` runs ({len(per_round)} rounds). One model update is a "
        f"safetensors blob of **{u:,} bytes** ({u / 1024:.1f} KiB); on average {proposers:.1f} proposers "
        f"and {voters:.1f} voters per round.",
        "",
        _md_table(["per round", "bytes", "how"], [
            ["a proposer sends", f"{u:,}", "its update, to the update store (the hash goes on chain)"],
            ["a proposer receives", f"{u:,}", "the new global model (or the proposals, to rebuild it)"],
            ["a voter sends", "0 (model bytes)", "only its commit and reveal transactions"],
            ["a voter receives", f"{proposers * u:,.0f}", f"every proposal ({proposers:.1f} x {u:,})"],
            ["FedAvg client (server based), for comparison", f"{u:,} up, {u:,} down", "update up, model down"],
            ["on chain: transaction arguments (calldata)", f"{calldata:,.0f}",
             f"{txs:.1f} protocol transactions: selectors + ABI words of open, propose, commit, reveal, settle"],
            ["on chain: event logs", f"{events:,.0f}", "topics + data of every event (32 bytes per word)"],
            ["on chain: gas", f"{gas:,.0f}", "sum of the round's protocol transactions (metrics.csv `gas`)"],
        ]),
        "",
        f"Over {sweep.rounds} rounds the chain takes about {(calldata + events) * sweep.rounds / 1024 / 1024:.2f} MiB "
        f"of calldata and logs and {gas * sweep.rounds / 1e9:.2f} billion gas; model bytes never go on chain.",
    ]
    by_call = defaultdict(list)
    for run in runs:
        for call, stats in run.summary.get("gas_by_call", {}).items():
            by_call[call].append(stats["mean"])
    if by_call:
        lines += ["", "Mean gas per call (all protocol runs):", "",
                  _md_table(["call", "mean gas"], [[c, f"{np.mean(v):,.0f}"] for c, v in sorted(by_call.items())])]
    return lines


def task_section(sweep: Sweep, figures: Path, out: Path) -> list[str]:
    task = sweep.task
    rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
    headline = headline_metric(task)
    protocol_runs = sweep.cell("protocol", sweep.ratios[0]) if sweep.ratios else []
    config = (protocol_runs or sweep.main)[0].config
    lines = [f"## Task `{task}`", ""]
    seeds = sorted({r.seed for r in sweep.main})
    lines += [
        f"{len(sweep.runs)} runs: {config['clients']} clients, {sweep.rounds} rounds, seeds {seeds}, malicious ratios "
        f"{', '.join(f'{r:g}' for r in sweep.ratios)}; stake {config['stake']:g}, proposer stake "
        f"{config['proposer_stake']:g}, voter stake {config['voter_stake']:g}, proposer reward "
        f"{config['proposer_reward']:g}, proposer fraction {config['proposer_fraction']:g}, epsilon "
        f"{config['epsilon']:g}, voters' score `{voter_score(config)}`, malicious roles `{config.get('malicious_roles', config['attack'])}`, "
        f"{config['local_epochs']} local epoch(s), lr {config['lr']:g}"
        + (f", Dirichlet alpha {config['dirichlet_alpha']:g}" if task != "lending" else "") + ".",
        "",
    ]
    roots = sorted({r.folder.parents[2] for r in sweep.runs})  # <results>/<method>/ratio-<r>/seed-<s>
    for root in roots:  # authored notes kept beside the runs (what was run and why), included verbatim
        if (root / NOTES_FILE).is_file():
            lines += [(root / NOTES_FILE).read_text().strip(), ""]
    window = min(LAST_ROUNDS, sweep.rounds)
    table_name = "Table 3" if task == "lending" else "Table 4"
    lines += [f"### Scores of the last {window} rounds (the paper's {table_name})", ""]
    order = [headline] + [m for m in METRICS if m != headline]
    for metric in order:
        lines += [f"Test {METRIC_NAMES[metric]}, mean ± std over seeds of each run's mean over its last "
                  f"{window} rounds:", "", table_markdown(sweep, metric), ""]

    figs = []
    figs.append(("Learning curves (AUROC)", plot_learning_curves(sweep, "test_auroc", figures / f"{task}-learning-auroc.png")))
    figs.append(("Learning curves (accuracy)", plot_learning_curves(sweep, "test_accuracy", figures / f"{task}-learning-accuracy.png")))
    for method in sweep.protocol_methods:
        suffix = "" if method == "protocol" else f"-{method}"
        figs.append((f"Tokens of honest vs malicious proposers ({method})",
                     plot_proposer_tokens(sweep, figures / f"{task}-proposer-tokens{suffix}.png", method)))
        figs.append((f"Accepted vs rejected rounds ({method})",
                     plot_decisions(sweep, figures / f"{task}-decisions{suffix}.png", method)))
    lines += ["### Learning curves, tokens and decisions", ""]
    for title, path in figs:
        lines += [f"**{title}**", "", f"![{title}]({rel(path)})", ""]

    lines += decisions_section(sweep)
    lines += variant_section(sweep, figures, out)

    lines += ["### Survival against the slash size", ""]
    for method in sweep.protocol_methods:
        suffix = "" if method == "protocol" else f"-{method}"
        survival = plot_survival(sweep, figures / f"{task}-survival{suffix}.png", method)
        if not survival:
            lines += [f"No survival runs of `{method}` in this results folder.", ""]
            continue
        by_stake = sweep.survival_runs(method)
        rows = []
        for stake, runs in by_stake.items():
            h, m = mean_std([mean_survival(r, "honest") for r in runs]), mean_std([mean_survival(r, "malicious") for r in runs])
            hr = np.mean([len(removal_rounds(r, "honest")[0]) / max(1, r.summary.get("honest_clients") or 1) for r in runs])
            mr = np.mean([len(removal_rounds(r, "malicious")[0]) / max(1, r.summary.get("malicious_clients") or 1) for r in runs])
            rows.append([f"{stake:g}", f"{fmt(h[0], h[1], 1)}", f"{hr:.0%}", f"{fmt(m[0], m[1], 1)}", f"{mr:.0%}", h[2]])
        first = next(iter(by_stake.values()))[0]
        lines += [f"**{METHOD_NAMES[method]}**: runs at malicious ratio {first.ratio:g}, {first.rounds} rounds, with "
                  f"different proposer stakes (the amount a rejected proposer loses). Mean rounds until removal (a "
                  f"client never removed counts as surviving to the last round) and the share removed by the end:", "",
                  _md_table(["proposer stake", "honest: rounds", "honest removed", "malicious: rounds",
                             "malicious removed", "seeds"], rows), "",
                  f"![Survival {method}]({rel(survival)})", ""]

    lines += ["### Malicious voters (honest proposers only)", ""]
    for method in sweep.protocol_methods:
        suffix = "" if method == "protocol" else f"-{method}"
        voters = plot_voters(sweep, figures / f"{task}-voters{suffix}.png", method)
        if not voters:
            lines += [f"No malicious-voter runs of `{method}` in this results folder.", ""]
            continue
        held, vlines = claim_c(sweep, method)
        lines += [f"**{METHOD_NAMES[method]}**: malicious clients vote against their own validation; proposals "
                  f"are honest. Voter stake {sweep.voter_runs(method)[0].config['voter_stake']:g}.", ""]
        lines += [f"- {line}" for line in vlines] + ["", f"![Malicious voters {method}]({rel(voters)})", ""]

    lines += ["### Cost", ""]
    for method in sweep.protocol_methods or ["protocol"]:
        lines += cost_section(sweep, method) + [""]
        suffix = "" if method == "protocol" else f"-{method}"
        cost = plot_cost(sweep, figures / f"{task}-cost{suffix}.png", method)
        if cost:
            lines += [f"![Cost per round {method}]({rel(cost)})", ""]

    lines += ["### The paper's claims, checked", ""]
    for method in sweep.protocol_methods or ["protocol"]:
        if len(sweep.protocol_methods) > 1:
            lines += [f"#### {METHOD_NAMES[method]} (`{method}`)", ""]
        for metric in ("test_accuracy", headline) if headline != "test_accuracy" else ("test_accuracy",):
            held, alines = claim_a(sweep, metric, method)
            lines += [f"**(a) With the protocol, FedAvg stays within 1 point of FedAvg without attackers at every "
                      f"ratio up to 0.4, while FedAvg with attackers falls behind** (test {METRIC_NAMES[metric]}, "
                      f"last {window} rounds): {_verdict(held)}.", ""] + [f"- {a}" for a in alines] + [""]
        held, blines = claim_b(sweep, method)
        lines += ["**(b) Malicious proposers end below the stake and are removed, while honest ones gain** "
                  f"(the last round of the protocol runs): {_verdict(held)}.", ""] + [f"- {b}" for b in blines] + [""]
        held, clines = claim_c(sweep, method)
        lines += ["**(c) Dishonest voters are removed within a bounded number of rounds**: "
                  f"{_verdict(held)}.", ""] + [f"- {c}" for c in clines] + [""]
    lines += saturation_notes(sweep)
    return lines


def saturation_notes(sweep: Sweep) -> list[str]:
    """What the class skew does to accuracy and to accuracy-scored votes, in this sweep's numbers."""
    rows = [row for r in sweep.main for row in r.rows]
    if not rows:
        return []
    constant = [row for row in rows if abs(_float(row["test_balanced_accuracy"]) - 0.5) < 1e-9]
    accuracies = sorted({round(_float(row["test_accuracy"]), 4) for row in constant})
    protocol = [row for r in sweep.main if r.method in sweep.protocol_methods for row in r.rows]
    lines = ["### Reading these numbers", ""]
    if sweep.main[0].task == "lending":  # the one-class floor below is the binary task's
        lines.append(
            f"- In {len(constant) / len(rows):.0%} of all {len(rows):,} recorded rounds (all methods) the global model "
            "predicted one class for every test row (balanced accuracy exactly 0.5)"
            + (f"; its test accuracy is then the share of that class, {', '.join(f'{a:.3f}' for a in accuracies[:3])}."
               if accuracies else ".")
            + " Plain accuracy cannot separate the methods when it sits at that floor; AUROC (threshold-free) and "
            "balanced accuracy can."
        )
    score = voter_score(sweep.main[0].config) if sweep.main else "accuracy"
    if protocol:
        rejected = sum(row["decision"] == "rejected" for row in protocol)
        poisoned = sum(int(row["malicious_proposers"]) > 0 for row in protocol)
        lines.append(
            f"- The voters score with `{score}` on their private validation split. Of {len(protocol):,} protocol "
            f"rounds, {poisoned:,} had at least one malicious proposer and {rejected:,} were rejected. "
            + ("A voter accepts when the aggregate's score is at least its current model's score minus epsilon; "
               "with a model that predicts all-negative before and after the poisoned update, a voter's validation "
               "accuracy does not move, so the poisoned aggregate passes."
               if score == "accuracy" else "")
        )
    attacked = [r for r in sweep.main if r.method == "fedavg-attack"]
    if attacked:
        epsilon = float(attacked[0].config.get("epsilon", 0.0))
        cells = []
        for ratio in sweep.ratios:
            runs = [r for r in attacked if abs(r.ratio - ratio) < 1e-9]
            drops = {m: [] for m in ("test_accuracy", "test_auroc")}
            for run in runs:
                for m in drops:
                    values = run.column(m)
                    drops[m].append(float(np.mean(np.diff(values) < -epsilon)) if len(values) > 1 else math.nan)
            cells.append(f"ratio {ratio:g}: AUROC {np.nanmean(drops['test_auroc']):.0%}, "
                         f"accuracy {np.nanmean(drops['test_accuracy']):.0%}")
        lines.append(
            f"- How often an attack is visible to a vote that compares with the previous round: in FedAvg w/ mal "
            f"(every aggregate adopted), the share of rounds in which the global model's *test* score fell by more "
            f"than epsilon = {epsilon:g} from the round before — " + "; ".join(cells) + ". The attack slows "
            "learning more than it reverses it, so most poisoned aggregates are not worse than the model before "
            "them, even on the 1,971-row test set; a voter's ~32-row validation split is noisier still."
        )
    return lines + [""]


def sweep_time_lines(folders: Sequence[Path]) -> list[str]:
    lines = []
    for folder in folders:
        path = Path(folder) / SWEEP_FILE
        if not path.is_file():
            continue
        sessions = json.loads(path.read_text())["sessions"]
        busy = busy_seconds(sessions)
        lines.append(f"- `{folder}`: {len(sessions)} session(s) (some ran at the same time), "
                     f"{busy / 60:.0f} min of wall-clock time while any of them ran.")
        for s in sessions:
            lines.append(f"  - `{s['command']}` — started {s['started']}, {s.get('wall_seconds', 0) / 60:.0f} min, "
                         f"{s.get('made', 0)} runs made" + session_outcome(s))
    return lines


def write_report(folders: Sequence[Path], out: Path, preamble: str | None = None,
                 benchmarks: Sequence[Path] = (), voter_attacks: Path | None = None) -> Path:
    """Write <out>/RESULTS.md and <out>/figures/*.png (+ the tables as CSV) from the runs under `folders`,
    then the defence benchmark's section for each folder of `benchmarks` (fl.experiments.benchmark_report)
    and the voter-attack section from the `voter_attacks` folder (fl.experiments.voter_attacks)."""
    from fl.experiments.benchmark_report import benchmark_section
    from fl.experiments.voter_attacks import render_voter_attacks_section

    out = Path(out)
    figures = out / "figures"
    runs = load_runs(folders)
    if not runs:
        raise ValueError(f"no finished runs under {', '.join(str(f) for f in folders)}: run `ape run experiment sweep` first")
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_task[sweep_label(run.task, run.config)].append(run)  # image tasks: one sweep per Dirichlet alpha
    order = sorted(by_task, key=lambda t: (t != "lending", t))
    sweeps = [Sweep(by_task[t]) for t in order]
    for sweep, label in zip(sweeps, order):
        sweep.task = label
    results_args = " ".join(f"--results {f}" for f in folders)
    lines = [
        "# Results: reproducing Dong et al. (IEEE TAI 2024)",
        "",
        "Generated by `ape run experiment report " + results_args + f" --out {out}` from the recorded runs "
        "(never edited by hand). The runs were made with `ape run experiment sweep` (see `ape run experiment "
        "sweep --help`); every protocol run's own `ape run simulate` command is in its `experiment.json`.",
        "",
        "Methods: **Oracle** (centralised training of the same model on all clients' training rows, no attackers; "
        "one round = the local epochs over a random proposer-fraction share of the pooled rows, i.e. as many "
        "samples as a FedAvg round's proposers train on), **FedAvg w/o mal** (no attackers), "
        "**FedAvg w/ mal** (malicious proposers, no protocol: every aggregate is accepted), **FedAvg w/ block** "
        "(the stake protocol on a chain), in protocol v2 (per-proposal bitmask ballots, issue 11) under two review "
        "rules side by side: **paper's rule** (`protocol-aggregate`, `--review aggregate`: every voter judges the "
        "round's aggregate and casts a uniform ballot, the paper's Algorithm 2) and **per-proposal review** "
        "(`protocol-cosine`, `--review cosine`, the default: each proposal judged on its own, docs/REVIEW_STUDY.md). "
        "Columns named `protocol` (v1, stale) are runs of the v1 contracts and proposer draw, kept only where no "
        "v2 run exists yet (image tasks); `n=` in a cell is its number of seeds. "
        "The three FedAvg methods draw proposers the same way "
        "(the same fraction of the active clients), start from the same model and train with the same code "
        "and the same malicious behaviour; only the protocol differs.",
        "",
    ]
    if preamble:
        lines += [preamble, ""]

    lines += ["Sweep time:", ""] + (sweep_time_lines(folders) or ["- not recorded"]) + [""]
    for sweep in sweeps:
        lines += task_section(sweep, figures, out)
        if sweep.main and sweep.main[0].task != "lending":
            lines += image_task_lines(sweep, sweeps)
    csv_path = write_table_csv(sweeps, figures / "tables.csv")
    lines += [f"All table cells as CSV: [{csv_path.relative_to(out).as_posix()}]({csv_path.relative_to(out).as_posix()}).", ""]
    for folder in benchmarks:
        lines += benchmark_section(Path(folder), figures, out)
    if voter_attacks is not None:
        lines += [render_voter_attacks_section(Path(voter_attacks)).rstrip("\n"), ""]
    lines += [f"_Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC._", ""]
    path = out / "RESULTS.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
