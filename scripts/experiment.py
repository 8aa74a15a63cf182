"""ape run experiment: the paper's sweep (Oracle, FedAvg with/without attackers, the protocol) and its report."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import click
from click.core import ParameterSource



def _load_simulate():
    """scripts/simulate.py as a module (not `import scripts.simulate`: `ape run` executes each
    script itself, and a second import under the same name makes runpy warn)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_stakefl_simulate", Path(__file__).with_name("simulate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_simulate = _load_simulate()
config_from_options = _simulate.config_from_options
CHAINLESS_DEFENCES_DEFAULT = ("fedavg", "median", "trimmed_mean", "krum", "multi_krum", "bulyan", "centered_clipping")


def sweep_options(command, without=("malicious_ratio",)):
    """simulate's options, less --malicious-ratio (the sweep takes --ratios)."""
    holder = _simulate.simulation_options(lambda **kwargs: None)
    for param in holder.__click_params__:
        if param.name not in without:
            command.__click_params__ = getattr(command, "__click_params__", []) + [param]
    return command


class _SweepStop:
    """SIGINT/SIGTERM during a sweep: raise KeyboardInterrupt in the main thread (Ape's own
    handler would sys.exit(130) past the sweep's bookkeeping) and pass the signal on to the
    running `ape run simulate` processes, which finish their round and write their folders.
    A Ctrl-C typed in the terminal already reached them (same process group): not sent twice."""

    def __init__(self):
        self.signum = None

    def handle(self, signum, frame):
        first = self.signum is None
        self.signum = signum
        if not _terminal_delivered(signum):
            for pid in _child_pids():
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        if first:
            raise KeyboardInterrupt

    def install(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self.handle)


def _terminal_delivered(signum) -> bool:
    if signum != signal.SIGINT:
        return False
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _child_pids() -> list[int]:
    """This process's child processes (Linux /proc; none elsewhere)."""
    pids = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise click.BadParameter("expected at least one number")
    return values


@click.group()
def cli():
    """Reproduce the paper's experiments: `sweep` records the runs, `report` turns them into
    docs/RESULTS.md, its tables and figures."""


@cli.command(short_help="Run the sweep of methods x malicious ratios x seeds (resumable)")
@sweep_options
@click.option("--results", default="results/lending", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the sweep's run folders (<method>/ratio-<r>/seed-<s>).")
@click.option("--ratios", default="0.1,0.2,0.3,0.4", show_default=True, help="Malicious ratios, comma-separated.")
@click.option("--seeds", "num_seeds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Number of seeds per configuration (seeds --seed .. --seed + N - 1).")
@click.option("--methods", default="oracle,fedavg-clean,fedavg-attack,protocol-aggregate,protocol-cosine",
              show_default=True,
              help="Methods to run, comma-separated: the baselines, and the protocol under the paper's rule "
                   "(protocol-aggregate) and per-proposal review (protocol-cosine); `protocol` is the protocol "
                   "with simulate's default review, in a folder of that name. `extras` alone runs only the "
                   "survival, voter and variant runs.")
@click.option("--survival-stakes", default="4,8,16", show_default=True,
              help="Proposer stakes (slash sizes) for the survival runs; empty for none.")
@click.option("--survival-ratio", default=0.3, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Malicious ratio of the survival runs.")
@click.option("--voter-ratio", default=0.3, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Malicious ratio of the malicious-voter runs (0: none).")
@click.option("--extra-seeds", default=None, type=click.IntRange(min=0),
              help="Seeds for the survival and voter runs (default: all seeds).")
@click.option("--extra-rounds", default=None, type=click.IntRange(min=1),
              help="Rounds of the survival and voter runs (default: --rounds).")
@click.option("--variant-scores", default="", show_default=True,
              help="Voter scores for extra protocol runs at --variant-ratio (e.g. auroc), comma-separated.")
@click.option("--variant-ratio", default=0.4, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Malicious ratio of the variant runs.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Protocol runs (ape run simulate processes) at a time.")
@click.option("--network", default=None,
              help="Ape network for the protocol runs (default: simulate's, a fresh anvil per run on a port of "
                   "its own, so --jobs runs never collide; ethereum:local:test: the embedded chain).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run each pending run as a task on a Ray cluster: auto (the cluster this node belongs to), "
                   "HOST:PORT, ray://HOST:PORT (Ray Client) or local (a cluster of this machine alone). "
                   "Needs pip install -e .[ray]; --jobs is then unused. See the README.")
@click.option("--ray-cpus-per-run", default=1, show_default=True, type=click.IntRange(min=1),
              help="CPUs each run's Ray task asks for (with --ray).")
@click.pass_context
def sweep(ctx, results, ratios, num_seeds, methods, survival_stakes, survival_ratio, voter_ratio, extra_seeds,
          extra_rounds, variant_scores, variant_ratio, jobs, network, ray_address, ray_cpus_per_run, **options):
    """Run every (method, malicious ratio, seed) of the paper's comparison into --results, plus the
    survival runs (other proposer stakes) and the malicious-voter runs. Baselines run in this
    process; each protocol run is one `ape run simulate` process on a fresh chain.

    Unless --malicious-roles is given, malicious clients only poison proposals (the paper's Sec. 5.2.2
    setting); the voter runs use --malicious-roles voter. Runs whose folder holds a finished summary.json
    are skipped, so the same command resumes an interrupted sweep. With --ray each run is a Ray
    task on the cluster instead, its files written here when it ends.
    """
    import torch
    from tqdm import tqdm

    import fl.experiments.sweep
    from fl.experiments.sweep import (SessionLog, compile_contracts, finalize_orphan, former_draw_runs, is_done,
                                      other_rule_runs, plan_sweep, run_one, say)

    if ray_address is None and ctx.get_parameter_source("ray_cpus_per_run") != ParameterSource.DEFAULT:
        raise click.UsageError("--ray-cpus-per-run needs --ray")
    if ctx.get_parameter_source("malicious_roles") == ParameterSource.DEFAULT:
        options["malicious_roles"] = "proposer"
    base = config_from_options(options)
    seeds = list(range(base.seed, base.seed + num_seeds))
    extra = seeds if extra_seeds is None else seeds[:extra_seeds]
    try:
        specs = plan_sweep(
            base, _floats(ratios), seeds, [m.strip() for m in methods.split(",") if m.strip()],
            _floats(survival_stakes) if survival_stakes.strip() else [], survival_ratio, voter_ratio, extra,
            extra_rounds, [v.strip() for v in variant_scores.split(",") if v.strip()], variant_ratio,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    fl.experiments.sweep._ALL_OPTIONS.update(p.opts[0].lstrip("-") for p in _simulate.cli.params if p.opts)
    other_rule = other_rule_runs(specs, results)  # before finalize_orphan records a run under this sweep's spec
    if other_rule:
        folder, recorded, planned = other_rule[0]
        raise click.UsageError(
            f"{len(other_rule)} finished protocol run(s) under {results} used another review rule than this sweep's "
            f"(e.g. {folder}: review rule {recorded}, this sweep: {planned}); move them away, choose another "
            f"--results, or pass --review {recorded}")
    for spec in specs:
        if finalize_orphan(spec, results):
            click.echo(f"finalized {spec.folder(results)} (finished after its sweep stopped)")
    stale = former_draw_runs(specs, results)
    if stale:
        raise click.UsageError(
            f"{len(stale)} finished FedAvg run(s) under {results} drew their proposers the former way, not as the "
            f"contract does (e.g. {stale[0]}); move them away (or choose another --results) to rerun them")
    todo = [s for s in specs if not is_done(s.folder(results))]
    click.echo(f"{len(specs)} runs planned, {len(specs) - len(todo)} already done, {len(todo)} to run -> {results}")
    simulate_params = {p.opts[0].lstrip("-") for p in _simulate.cli.params if p.opts}

    log = SessionLog(results, _command_line(), len(specs), len(specs) - len(todo))
    started = time.perf_counter()
    failures = []

    bar = tqdm(total=len(todo), desc="runs", unit="run", dynamic_ncols=True)

    def done(spec, summary=None, error=None):
        label = f"{spec.method} r={spec.ratio:g} s={spec.seed}"
        if error is not None:
            failures.append(label)
            say(f"FAILED {label}: {error}")
        else:
            auroc = summary.get("final_test_auroc")
            say(f"done {label}: auroc={auroc if auroc is None else round(auroc, 3)} "
                       f"in {summary.get('wall_seconds')} s")
        log.ran(label, failed=error is not None)
        bar.update(1)
        bar.set_postfix(last=label)

    stop = _SweepStop()
    if ray_address is not None and todo:
        from fl.experiments.ray_backend import RayUnavailable, run_on_ray

        try:
            run_on_ray(todo, results, ray_address, ray_cpus_per_run, network, simulate_params, done, say,
                       after_connect=stop.install)
        except RayUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            log.entry["interrupted"] = True
            click.echo("\ninterrupted: finished runs are kept; run the same command to resume")
        finally:
            bar.close()
            log.save(final=True)
        if log.entry.get("interrupted"):
            raise SystemExit(128 + (stop.signum or signal.SIGINT))  # 130 SIGINT, 143 SIGTERM
        if failures:
            raise click.ClickException(f"{len(failures)} runs failed: {', '.join(failures)}; rerun to retry them")
        click.echo(f"sweep done in {time.perf_counter() - started:.0f} s -> {results}")
        return
    torch.set_num_threads(1)  # tiny models: one thread is several times faster on a shared machine
    stop.install()
    if any(s.is_protocol for s in todo):
        compile_contracts()  # once, not in every parallel `ape run simulate` at the same time
    # Protocol runs (each its own `ape run simulate` process, the slow part) go to `jobs` workers;
    # the baselines run meanwhile in one worker thread of this process. Both in plan order (seed by
    # seed), so a sweep cut short has whole seeds.
    pool = ThreadPoolExecutor(max_workers=jobs)
    baseline_pool = ThreadPoolExecutor(max_workers=1)
    try:
        futures = {pool.submit(run_one, s, results, network, simulate_params): s for s in todo if s.is_protocol}
        futures |= {baseline_pool.submit(run_one, s, results): s for s in todo if not s.is_protocol}
        for future in as_completed(futures):
            spec = futures[future]
            try:
                done(spec, future.result())
            except Exception as exc:  # noqa: BLE001 - record it, go on with the other runs
                done(spec, error=exc)
    except KeyboardInterrupt:
        log.entry["interrupted"] = True
        click.echo("\ninterrupted: the running simulations finish their round and write their folders; "
                   "finished runs are kept; run the same command to resume")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        baseline_pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
        log.save(final=True)
    if log.entry.get("interrupted"):
        raise SystemExit(128 + (stop.signum or signal.SIGINT))  # 130 SIGINT, 143 SIGTERM
    if failures:
        raise click.ClickException(f"{len(failures)} runs failed: {', '.join(failures)}; rerun to retry them")
    click.echo(f"sweep done in {time.perf_counter() - started:.0f} s -> {results}")


def benchmark_options(command):
    """simulate's options less the ones the grid sets itself (ratio, attack, malicious roles)."""
    return sweep_options(command, without=("malicious_ratio", "attack", "malicious_roles", "review", "aggregator"))


@cli.command(short_help="Run the defence benchmark: attacks x defences x ratios x seeds (resumable)")
@benchmark_options
@click.option("--results", default=None, type=click.Path(file_okay=False),
              help="Folder of the grid's run folders (<defence>/<attack>/ratio-<r>/seed-<s>). "
                   "Default: results/benchmark-<task>.")
@click.option("--defences", default=",".join(CHAINLESS_DEFENCES_DEFAULT), show_default=True,
              help="Columns, comma-separated: fedavg, median, trimmed_mean, krum, multi_krum, bulyan, "
                   "centered_clipping (chainless, no Ape), protocol-aggregate (the paper's vote on the FedAvg "
                   "of all proposals), protocol-per-proposal, protocol-per-proposal+<aggregator> (on chain), "
                   "or `all`.")
@click.option("--attacks", "attack_names", default=None,
              help="Rows, comma-separated (default: none and every proposer attack the task allows, "
                   "min_max excepted).")
@click.option("--ratios", default="0.2,0.4", show_default=True, help="Malicious ratios, comma-separated.")
@click.option("--seeds", "num_seeds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Seeds per cell (--seed .. --seed + N - 1).")
@click.option("--best-aggregator", default="auto", show_default=True,
              help="The aggregator of `all`'s protocol-per-proposal+<aggregator> column; auto: the chainless "
                   "robust aggregator with the best mean test AUROC (last half of the rounds) at the largest "
                   "ratio in --results.")
@click.option("--per-proposal-review", default=None,
              help="The review rule of the protocol-per-proposal columns (a --review rule of ape run simulate; "
                   "default: the task's recommended rule, cosine_floor on lending, cosine_floor_rel on images).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Runs at a time (chainless runs in worker processes, protocol runs as ape run simulate).")
@click.option("--network", default=None, help="Ape network for the protocol runs (default: the embedded chain).")
def benchmark(results, defences, attack_names, ratios, num_seeds, best_aggregator, per_proposal_review, jobs, network,
              **options):
    """Run issue 12's grid: every attack (rows) against every defence (columns) at each malicious
    ratio, --seeds seeds each, plus the `none` row (no attackers). Malicious clients attack as
    proposers only; votes are honest. Chainless defences run the round loop over an accept-all
    ledger whose new model is the robust aggregator (no chain, no Ape imported in the workers);
    protocol defences are `ape run simulate` processes. Runs whose folder holds a finished
    summary.json are skipped: the same command resumes. The progress bar shows the time left.

    The f a robust rule tolerates is floor(ratio * proposers) capped at its precondition (Krum
    n > 2f + 2, Bulyan n >= 4f + 3); see fl/experiments/benchmark.py.
    """
    from fl.experiments.benchmark import attacks_for, run_benchmark

    base = config_from_options(options)
    names = [d.strip() for d in defences.split(",") if d.strip()]
    results = Path(results) if results else Path("results") / f"benchmark-{_task_folder(base)}"
    stop = _SweepStop()  # SIGTERM/SIGINT: the running simulations finish their round, sweep.json says "interrupted"
    stop.install()
    try:
        attacks = attacks_for(base.task, None if attack_names is None else
                              [a.strip() for a in attack_names.split(",") if a.strip()])
        run_benchmark(base, names, attacks, _floats(ratios), list(range(base.seed, base.seed + num_seeds)),
                      results, jobs=jobs, network=network, best_aggregator=best_aggregator,
                      per_proposal_review=per_proposal_review,
                      simulate_params={p.opts[0].lstrip("-") for p in _simulate.cli.params if p.opts},
                      command=_command_line(), echo=click.echo)
    except KeyboardInterrupt:
        raise SystemExit(128 + (stop.signum or signal.SIGINT)) from None  # 130 SIGINT, 143 SIGTERM
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


def _task_folder(config) -> str:
    if config.task == "fmnist":
        return f"fmnist-alpha{config.dirichlet_alpha:g}"
    return config.task


def _command_line() -> str:
    if "experiment" in sys.argv:
        return "ape run experiment " + " ".join(sys.argv[sys.argv.index("experiment") + 1:])
    return " ".join(sys.argv)


@cli.command(short_help="Write docs/RESULTS.md, its tables and figures from recorded runs")
@click.option("--results", "results", multiple=True, default=(),
              type=click.Path(exists=True, file_okay=False),
              help="Sweep folder(s) to read (repeat for several tasks); runs are grouped by their task. "
                   "Default: every folder under results/ that holds a sweep.json (lending, fmnist, ...); "
                   "benchmark folders (ape run experiment benchmark) become the defence benchmark's section, "
                   "and results/voter-attacks (the voter-attack runs) the voter-attack section.")
@click.option("--out", default="docs", show_default=True, type=click.Path(file_okay=False),
              help="Folder for RESULTS.md; figures go to <out>/figures.")
def report(results, out):
    """Read every run folder under --results (experiment.json, metrics.csv, summary.json,
    onchain.json) and write <out>/RESULTS.md with the tables inline and the figures as PNG files in
    <out>/figures, plus the tables as CSV. Nothing is drawn by hand: rerun after any sweep."""
    from fl.experiments.benchmark_report import is_benchmark_folder
    from fl.experiments.report import write_report
    from fl.experiments.voter_attacks import VOTER_ATTACKS_DIR

    if not results:
        results = sorted(str(p.parent) for p in Path("results").glob("*/sweep.json"))
        if not results:
            raise click.UsageError("no sweep folders under results/: run `ape run experiment sweep` first")
        if (Path("results") / VOTER_ATTACKS_DIR).is_dir():
            results.append(str(Path("results") / VOTER_ATTACKS_DIR))
    voter_attacks = next((Path(r) for r in results if Path(r).name == VOTER_ATTACKS_DIR), None)
    others = [Path(r) for r in results if Path(r).name != VOTER_ATTACKS_DIR]
    sweeps = [r for r in others if not is_benchmark_folder(r)]
    benchmarks = [r for r in others if is_benchmark_folder(r)]
    if not sweeps:
        raise click.UsageError("the report needs the paper's sweep folders too (ape run experiment sweep)")
    path = write_report(sweeps, Path(out), benchmarks=benchmarks, voter_attacks=voter_attacks)
    click.echo(f"wrote {path}")
