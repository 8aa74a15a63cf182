"""The defence benchmark of issue 12: attacks x defences x malicious ratios x seeds.

Each run is one folder ``<results>/<defence>/<attack>/ratio-<r>/seed-<s>`` with the files of
every run (config.json, metrics.csv, summary.json, experiment.json), so the skip-finished rule
of the paper's sweep applies (a folder with a finished summary.json is not run again).

Defences (the table's columns):

- chainless (no chain, no Ape: the round loop of ``fl.simulation.rounds.run_protocol`` over
  ``fl.simulation.baselines.AcceptAllLedger``, every proposal accepted, the new global model
  ``--aggregator NAME`` over them, i.e. ``fl.defences.aggregators.AGGREGATORS[name]``):
  ``fedavg``, ``median``, ``trimmed_mean``, ``krum``, ``multi_krum``, ``bulyan``,
  ``centered_clipping`` (centred at zero, tau 10);
- the protocol on chain (one ``ape run simulate`` process per run, as the paper's sweep):
  ``protocol-aggregate`` (the paper's rule: one vote on the FedAvg of all proposals),
  ``protocol-per-proposal`` (per-proposal review: the voters' bitmask ballots, FedAvg of the
  accepted proposals), ``protocol-per-proposal+<aggregator>`` (per-proposal review, then the
  robust aggregator over the accepted proposals).

Attacks (the rows): the proposer attacks of ``fl.attacks.behaviours.PROPOSER_ATTACKS`` (the
backdoor only on image tasks), and ``none``: no attackers (ratio 0, one run per defence and
seed), the reference every cell is compared with.

The f a robust rule is told to tolerate (the round loop's ``aggregate_accepted``): the
expected number of malicious proposers among the n it aggregates, ``floor(ratio * n)``,
lowered to what the rule allows (Krum and Multi-Krum n > 2f + 2, Bulyan n >= 4f + 3,
trimmed mean n - 2f >= 1). With 10 proposers: f = 2 at ratio 0.2 for every rule but Bulyan
(1); at ratio 0.4 f = 4 for the trimmed mean, 3 for (Multi-)Krum and 1 for Bulyan; 0 in the
``none`` runs. ``assumed_byzantine`` restates it for the report.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from fl.defences.voter_review import recommended_rule
from fl.experiments.sweep import compile_contracts
from fl.simulation.rounds import SimulationConfig

CHAINLESS_DEFENCES = ("fedavg", "median", "trimmed_mean", "krum", "multi_krum", "bulyan", "centered_clipping")
PROTOCOL_AGGREGATE = "protocol-aggregate"
PROTOCOL_PER_PROPOSAL = "protocol-per-proposal"
PROTOCOL_PLUS_PREFIX = "protocol-per-proposal+"
NO_ATTACK = "none"
GRID_RATIOS = (0.2, 0.4)
EXPERIMENT_FILE = "experiment.json"
SUMMARY_FILE = "summary.json"
# Review rules of the round loop (`--review`), as the review branch names them.
REVIEW_AGGREGATE = "aggregate"


def is_protocol(defence: str) -> bool:
    return defence.startswith("protocol")


def proposers_per_round(config: SimulationConfig) -> int:
    """The n proposers of a round with every client active (the contract's selection size)."""
    from fl.protocol.draw import selection_sizes
    from fl.protocol.params import ProtocolParams

    return selection_sizes(config.clients, ProtocolParams(proposer_fraction=config.proposer_fraction))[0]


def assumed_byzantine(rule: str, num_proposers: int, ratio: float) -> int:
    """The f a robust rule is run with: ``floor(ratio * n)`` capped at the rule's precondition
    (what ``fl.simulation.rounds.aggregate_accepted`` does when all n proposals are accepted)."""
    n = num_proposers
    expected = int(ratio * n)
    caps = {
        "krum": (n - 3) // 2,  # n > 2f + 2
        "multi_krum": (n - 3) // 2,
        "bulyan": (n - 3) // 4,  # n >= 4f + 3
        "trimmed_mean": (n - 1) // 2,  # n - 2f >= 1
    }
    return max(0, min(expected, caps.get(rule, expected)))


@dataclass(frozen=True)
class BenchSpec:
    """One run of the grid."""

    defence: str
    attack: str
    config: SimulationConfig
    num_byzantine: int = 0  # the f told to the robust rule (0 when the rule has none)

    @property
    def ratio(self) -> float:
        return self.config.malicious_ratio

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def aggregator(self) -> str:
        """The aggregation rule over the accepted proposals."""
        if is_protocol(self.defence):
            return self.defence[len(PROTOCOL_PLUS_PREFIX):] if self.defence.startswith(PROTOCOL_PLUS_PREFIX) else "fedavg"
        return self.defence

    @property
    def review(self) -> str | None:
        """The review rule of a protocol cell (the config's for per-proposal cells), None chainless."""
        if not is_protocol(self.defence):
            return None
        return REVIEW_AGGREGATE if self.defence == PROTOCOL_AGGREGATE else self.config.review

    def folder(self, results: Path) -> Path:
        return Path(results) / self.defence / self.attack / f"ratio-{self.ratio:g}" / f"seed-{self.seed}"

    def label(self) -> str:
        return f"{self.defence} {self.attack} r={self.ratio:g} s={self.seed}"


def attacks_for(task: str, attacks: Iterable[str] | None = None) -> list[str]:
    """The grid's attack rows for ``task``: every proposer attack but min_max (not in the issue's
    list; pass it explicitly) and, off image tasks, the backdoor; plus ``none``."""
    from fl.attacks.behaviours import IMAGE_ONLY_ATTACKS, PROPOSER_ATTACKS

    if attacks is None:
        chosen = [a for a in PROPOSER_ATTACKS if a != "min_max"]
        if task == "lending":
            chosen = [a for a in chosen if a not in IMAGE_ONLY_ATTACKS]
        return [NO_ATTACK, *chosen]
    chosen = list(attacks)
    unknown = [a for a in chosen if a != NO_ATTACK and a not in PROPOSER_ATTACKS]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; choose from {NO_ATTACK}, {', '.join(PROPOSER_ATTACKS)}")
    if task == "lending" and any(a in IMAGE_ONLY_ATTACKS for a in chosen):
        raise ValueError(f"attacks {', '.join(IMAGE_ONLY_ATTACKS)} need an image task, not lending")
    return chosen


def check_defences(defences: Iterable[str]) -> list[str]:
    from fl.defences.aggregators import AGGREGATORS

    defences = list(defences)
    for defence in defences:
        if defence in CHAINLESS_DEFENCES or defence in (PROTOCOL_AGGREGATE, PROTOCOL_PER_PROPOSAL):
            continue
        if defence.startswith(PROTOCOL_PLUS_PREFIX) and defence[len(PROTOCOL_PLUS_PREFIX):] in AGGREGATORS:
            continue
        raise ValueError(
            f"unknown defence {defence!r}; choose from {', '.join(CHAINLESS_DEFENCES)}, {PROTOCOL_AGGREGATE}, "
            f"{PROTOCOL_PER_PROPOSAL}, {PROTOCOL_PLUS_PREFIX}<aggregator>"
        )
    return defences


def plan_benchmark(
    base: SimulationConfig,
    defences: Sequence[str],
    attacks: Sequence[str],
    ratios: Sequence[float],
    seeds: Sequence[int],
    per_proposal_review: str | None = None,
) -> list[BenchSpec]:
    """Every run, seed by seed (a grid cut short has whole seeds), chainless defences first.

    ``none`` is one run per (defence, seed) at ratio 0; every other attack one per ratio. The
    malicious clients attack as proposers only (``malicious_roles="proposer"``): the vote is
    the defence under test. ``per_proposal_review`` (a rule of fl.defences.voter_review.RULES)
    defaults to the task's recommended rule (``recommended_rule``).
    """
    check_defences(defences)
    base = replace(base, malicious_roles="proposer")
    per_proposal_review = per_proposal_review or recommended_rule(base.task)
    n = proposers_per_round(base)
    ordered = [d for d in defences if not is_protocol(d)] + [d for d in defences if is_protocol(d)]
    specs = []
    for seed in seeds:
        for defence in ordered:
            probe = BenchSpec(defence, NO_ATTACK, replace(base, review=per_proposal_review))
            rule = probe.aggregator
            for attack in attacks:
                for ratio in ([0.0] if attack == NO_ATTACK else ratios):
                    f = assumed_byzantine(rule, n, ratio)
                    config = replace(base, malicious_ratio=ratio, seed=seed, aggregator=rule,
                                     review=probe.review or base.review,
                                     attack="label_flip" if attack == NO_ATTACK else attack)
                    specs.append(BenchSpec(defence, attack, config, f if rule in _RULES_WITH_F else 0))
    return specs


_RULES_WITH_F = ("trimmed_mean", "krum", "multi_krum", "bulyan")


def is_done(folder: Path) -> bool:
    summary = Path(folder) / SUMMARY_FILE
    if not summary.is_file():
        return False
    try:
        return not json.loads(summary.read_text()).get("interrupted", False)
    except json.JSONDecodeError:
        return False


def check_recorded_runs(specs: Sequence[BenchSpec], results: Path) -> None:
    """Refuse to resume a column whose finished runs were made another way (they would count as
    done and the column would mix two methods under one name): a protocol column's review rule
    (experiment.json), a chainless column's proposer draw (config.json "draw"; none recorded: the
    former seeded draw, before the contract's draw was replayed)."""
    from fl.experiments.sweep import recorded_draw
    from fl.simulation.baselines import CHAINLESS_DRAW

    other = []
    for spec in specs:
        folder = spec.folder(results)
        if not is_done(folder):
            continue
        if spec.review is not None:
            recorded = _recorded(folder / EXPERIMENT_FILE, "review")
            if recorded is not None and recorded != spec.review:
                other.append((folder, f"review rule {recorded}", f"review rule {spec.review}",
                              f"pass --per-proposal-review {recorded}"))
        else:
            recorded = recorded_draw(folder)
            if recorded is not None and recorded != CHAINLESS_DRAW:
                other.append((folder, f"draw {recorded}", CHAINLESS_DRAW, "rerun them into another --results folder"))
    if other:
        folder, recorded, wanted, hint = other[0]
        raise ValueError(f"{len(other)} finished run(s) under {results} were made another way (e.g. {folder}: "
                         f"{recorded}, this grid: {wanted}); move them away or {hint}")


def _recorded(path: Path, key: str) -> str | None:
    """``key`` of a run's JSON record (None: no readable record or no such key)."""
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, json.JSONDecodeError):
        return None


def spec_record(spec: BenchSpec, command: list[str] | None = None) -> dict:
    return {
        "benchmark": True,
        "defence": spec.defence,
        "attack": spec.attack,
        "aggregator": spec.aggregator,
        "review": spec.review,
        "num_byzantine": spec.num_byzantine,
        "task": spec.config.task,
        "malicious_ratio": spec.ratio,
        "seed": spec.seed,
        "config": asdict(spec.config),
        "command": " ".join(["ape", *command[1:]]) if command else None,
    }


# ----------------------------------------------------------------------------------------
# Chainless runs


_DATA_CACHE: dict[tuple, object] = {}


def _data_for(config: SimulationConfig):
    from fl.simulation.rounds import load_federated_data

    key = (config.task, config.clients, config.seed, config.data_file, config.dirichlet_alpha, config.samples_per_client)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set at a time per worker
        _DATA_CACHE[key] = load_federated_data(config)
    return _DATA_CACHE[key]


def run_chainless(spec: BenchSpec, folder: Path) -> dict:
    """Run one chainless cell into ``folder`` (removed first if unfinished). Returns its summary."""
    import platform

    import torch

    from fl.learning.store import UpdateStore
    from fl.simulation.baselines import CHAINLESS_DRAW, AcceptAllLedger, chainless_addresses, initial_model_hash
    from fl.simulation.recorder import RunRecorder
    from fl.simulation.rounds import make_clients, run_protocol

    torch.set_num_threads(1)
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    config = spec.config
    data = _data_for(config)
    recorder = RunRecorder(folder, {"simulation": asdict(config), "method": spec.defence, "attack": spec.attack,
                                    "num_byzantine": spec.num_byzantine, "draw": CHAINLESS_DRAW,
                                    "python": platform.python_version()})
    store = UpdateStore(str(folder / "updates"))
    addresses = chainless_addresses(config.clients)
    clients = make_clients(data, addresses, config)
    ledger = AcceptAllLedger(addresses, config.proposer_fraction, config.seed, initial_model_hash(config, data),
                             store=store)
    records, _ = run_protocol(config, data, clients, ledger, store, opener=None,
                              on_round=lambda record, extra: recorder.record_round(record))
    shutil.rmtree(folder / "updates", ignore_errors=True)
    last = records[-1] if records else None
    summary = {
        "method": spec.defence,
        "attack": spec.attack,
        "rounds_requested": config.rounds,
        "rounds_completed": len(records),
        "interrupted": False,
        "final_test_accuracy": last.test_accuracy if last else math.nan,
        "final_test_auroc": last.test_auroc if last else math.nan,
        "malicious_clients": round(config.malicious_ratio * config.clients),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    (folder / EXPERIMENT_FILE).write_text(json.dumps(spec_record(spec), indent=2, sort_keys=True) + "\n")
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")  # no plots: 300+ runs
    return summary


class RunBusy(RuntimeError):
    """Another benchmark process is making this run right now."""


def _locked(folder: Path):
    """An exclusive lock file beside ``folder`` (two grids into one results folder never make
    the same run at once); raises ``RunBusy`` if another process holds it."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def lock():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{folder.name}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(f"{folder} is being made by another benchmark; rerun when it is done") from None
            yield

    return lock()


def run_chainless_in_worker(spec: BenchSpec, results: str) -> dict:
    """Process-pool entry point: run ``spec`` unless its folder is done."""
    folder = spec.folder(Path(results))
    with _locked(folder):
        if is_done(folder):
            return json.loads((folder / SUMMARY_FILE).read_text())
        return run_chainless(spec, folder)


# ----------------------------------------------------------------------------------------
# Protocol runs (ape run simulate)


def run_protocol_cell(spec: BenchSpec, results: Path, network: str | None, simulate_params: set[str]) -> dict:
    """One protocol cell: ``ape run simulate --review ... --aggregator ...`` into its folder."""
    missing = {"review", "aggregator"} - simulate_params
    if missing:
        raise RuntimeError(f"ape run simulate has no --{' --'.join(sorted(missing))}: merge the review branch first")
    folder = spec.folder(results)
    with _locked(folder):
        if is_done(folder):
            return json.loads((folder / SUMMARY_FILE).read_text())
        if folder.exists():
            shutil.rmtree(folder)
        return _simulate_cell(spec, folder, network, simulate_params)


def _simulate_cell(spec: BenchSpec, folder: Path, network: str | None, simulate_params: set[str]) -> dict:
    import os
    import subprocess

    from fl.experiments.sweep import LOG_FILE, condense_run, simulate_command

    command = simulate_command(spec.config, folder, network, simulate_params)  # --review, --aggregator from config
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_path = folder.parent / f"{folder.name}.{LOG_FILE}"
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if completed.returncode != 0 or not (folder / SUMMARY_FILE).is_file():
        raise RuntimeError(f"{' '.join(command)} failed (exit {completed.returncode}):\n{log_path.read_text()[-2000:]}")
    shutil.move(str(log_path), folder / LOG_FILE)
    (folder / EXPERIMENT_FILE).write_text(json.dumps(spec_record(spec, command), indent=2, sort_keys=True) + "\n")
    condense_run(folder)
    return json.loads((folder / SUMMARY_FILE).read_text())


# ----------------------------------------------------------------------------------------
# The grid


def expand_defences(defences: Sequence[str], best_aggregator: str, results: Path, task: str) -> list[str]:
    """``all`` -> every chainless defence, both protocol rules and per-proposal + the best aggregator."""
    out: list[str] = []
    for defence in defences:
        if defence != "all":
            out.append(defence)
            continue
        best = best_aggregator if best_aggregator != "auto" else best_chainless_aggregator(results)
        if best is None:
            raise ValueError("--best-aggregator auto needs finished chainless runs in --results; run them first "
                             "or name the aggregator")
        out += [*CHAINLESS_DEFENCES, PROTOCOL_AGGREGATE, PROTOCOL_PER_PROPOSAL, PROTOCOL_PLUS_PREFIX + best]
    return list(dict.fromkeys(out))


def best_chainless_aggregator(results: Path) -> str | None:
    """The robust chainless aggregator (not FedAvg) with the best mean test AUROC over the last
    half of the rounds at the largest ratio recorded, over every attack and seed."""
    from fl.experiments.benchmark_report import load_cells

    cells = load_cells(Path(results))
    robust = [c for c in cells if c.defence in CHAINLESS_DEFENCES and c.defence != "fedavg" and c.attack != NO_ATTACK]
    if not robust:
        return None
    top = max(c.ratio for c in robust)
    means: dict[str, list[float]] = {}
    for cell in robust:
        if cell.ratio == top and math.isfinite(cell.auroc):
            means.setdefault(cell.defence, []).append(cell.auroc)
    if not means:
        return None
    return max(sorted(means), key=lambda d: sum(means[d]) / len(means[d]))


def run_benchmark(
    base: SimulationConfig,
    defences: Sequence[str],
    attacks: Sequence[str],
    ratios: Sequence[float],
    seeds: Sequence[int],
    results: Path,
    *,
    jobs: int = 1,
    network: str | None = None,
    best_aggregator: str = "auto",
    per_proposal_review: str | None = None,
    simulate_params: set[str] = frozenset(),
    command: str = "",
    echo=print,
) -> list[str]:
    """Run every cell not yet done; chainless ones first (``jobs`` worker processes that import
    no Ape), then the protocol ones (``jobs`` ``ape run simulate`` processes). Returns the failures.
    Every session is logged in ``<results>/sweep.json`` (its wall time goes to the report)."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    from fl.experiments.sweep import SessionLog, say

    results = Path(results)
    defences = expand_defences(defences, best_aggregator, results, base.task)
    specs = plan_benchmark(base, defences, attacks, ratios, seeds, per_proposal_review)
    check_recorded_runs(specs, results)
    todo = [s for s in specs if not is_done(s.folder(results))]
    results.mkdir(parents=True, exist_ok=True)
    echo(f"{len(specs)} runs planned, {len(specs) - len(todo)} already done, {len(todo)} to run -> {results}")
    log = SessionLog(results, command, len(specs), len(specs) - len(todo), benchmark=True)
    started = time.perf_counter()
    failures: list[str] = []
    bar = tqdm(total=len(todo), desc="benchmark", unit="run", dynamic_ncols=True)

    def done(spec: BenchSpec, summary: dict | None = None, error: Exception | None = None) -> None:
        if error is not None:
            failures.append(spec.label())
            say(f"FAILED {spec.label()}: {error}")
        log.ran(spec.label(), failed=error is not None)
        bar.update(1)
        bar.set_postfix_str(spec.label())

    chainless = [s for s in todo if not is_protocol(s.defence)]
    on_chain = [s for s in todo if is_protocol(s.defence)]
    by_label = {s.label(): s for s in chainless}
    try:
        if chainless:
            for label, error in run_chainless_processes(chainless, results, jobs):
                done(by_label[label], error=None if error is None else RuntimeError(error))
        if on_chain:
            compile_contracts()
            pool = ThreadPoolExecutor(max_workers=jobs)
            try:
                futures = {pool.submit(run_protocol_cell, s, results, network, set(simulate_params)): s
                           for s in on_chain}
                for future in as_completed(futures):
                    try:
                        done(futures[future], future.result())
                    except Exception as exc:  # noqa: BLE001 - record it, go on with the others
                        done(futures[future], error=exc)
            finally:  # stopped: the running simulations write their folders, the queued ones never start
                pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        log.entry["interrupted"] = True
        echo("\ninterrupted: finished runs are kept; run the same command to resume")
        raise
    finally:
        bar.close()
        log.save(final=True)
    if failures:
        raise RuntimeError(f"{len(failures)} runs failed: {', '.join(failures[:10])}; rerun to retry them")
    echo(f"benchmark done in {time.perf_counter() - started:.0f} s -> {results}")
    return failures


def _loaded_ape_modules() -> list[str]:
    """Ape's modules loaded in this process (a chainless worker should have none)."""
    import sys

    return sorted(m for m in sys.modules if m == "ape" or m.startswith(("ape.", "ape_")))


def run_chainless_processes(specs: Sequence[BenchSpec], results: Path, jobs: int):
    """Run ``specs`` in a plain ``python -m fl.experiments.benchmark`` process (``jobs`` worker
    processes; none imports Ape, and `ape run`'s own process cannot spawn workers). Yields
    ``(label, error or None)`` as each run ends."""
    import os
    import subprocess
    import sys

    import fl

    plan = Path(results) / f".chainless-plan-{os.getpid()}.json"
    plan.write_text(json.dumps([_spec_to_json(s) for s in specs]))
    root = str(Path(fl.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "fl.experiments.benchmark", str(plan), str(results), str(jobs)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
        try:
            for line in child.stdout:
                status, _, rest = line.rstrip("\n").partition("\t")
                label, _, error = rest.partition("\t")
                if status in ("DONE", "FAIL"):
                    yield label, (error or "failed") if status == "FAIL" else None
        finally:
            if child.poll() is None:
                child.terminate()
            plan.unlink(missing_ok=True)
    if child.returncode not in (0, None, -15):
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}")


def _spec_to_json(spec: BenchSpec) -> dict:
    return {"defence": spec.defence, "attack": spec.attack, "num_byzantine": spec.num_byzantine,
            "config": asdict(spec.config)}


def _spec_from_json(record: dict) -> BenchSpec:
    return BenchSpec(record["defence"], record["attack"], SimulationConfig(**record["config"]), record["num_byzantine"])


def _chainless_main(plan: str, results: str, jobs: int) -> None:
    """The child of ``run_chainless_processes``: one line per finished run on stdout."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import signal

    specs = [_spec_from_json(r) for r in json.loads(Path(plan).read_text())]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        def stop(signum, frame):  # the parent stopped: end the workers too, not only this process
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            raise SystemExit(1)

        signal.signal(signal.SIGTERM, stop)
        futures = {pool.submit(run_chainless_in_worker, s, results): s for s in specs}
        for future in as_completed(futures):
            label = futures[future].label()
            try:
                future.result()
                print(f"DONE\t{label}", flush=True)
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which lists failures
                print(f"FAIL\t{label}\t{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True)


if __name__ == "__main__":
    import sys

    _chainless_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
