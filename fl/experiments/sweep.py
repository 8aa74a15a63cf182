"""The reproduction sweep of Dong et al. (IEEE TAI 2024), Sec. 5: the plan and how each run is made.

A sweep is a list of ``RunSpec``s, each one folder ``<results>/<method>/ratio-<r>/seed-<s>``:

- ``oracle`` and ``fedavg-clean`` (no attackers) once per seed, filed under ratio 0.0 and
  compared at every ratio;
- ``fedavg-attack`` and ``protocol`` per (malicious ratio, seed);
- ``protocol-aggregate`` / ``protocol-cosine``: the protocol with the voters' review rule fixed
  (``--review aggregate``, the paper's rule; ``--review cosine``, per-proposal review), per
  (ratio, seed); their survival and voter runs are ``<method>-pstake<x>`` / ``<method>-voters``;
- ``protocol-pstake<x>``: the protocol at the survival ratio with another proposer stake
  (the slash size), for the survival analysis; the main ``protocol`` runs give the default
  stake's point;
- ``protocol-voters``: the protocol with malicious *voters* only (honest proposals), Sec. 5.2.1.

Baselines run in this process (``fl.simulation.baselines``). A protocol run is a fresh
``ape run simulate`` process, so every run of the sweep is reproducible on its own with the
command recorded in its ``experiment.json`` (the embedded chain's block hashes, hence the
proposer draws, depend on everything sent on that chain before).

After a protocol run its ``events.jsonl`` is condensed into ``onchain.json`` (per-round gas,
calldata and event-log bytes) and the update store is reduced to the size of one update, so
a results folder stays small enough to commit (``events.jsonl`` and ``updates/`` are
git-ignored). A run whose folder already holds a ``summary.json`` of a finished run is
skipped, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Iterable

from fl.simulation.rounds import SimulationConfig

EXPERIMENT_FILE = "experiment.json"
ONCHAIN_FILE = "onchain.json"
SWEEP_FILE = "sweep.json"
LOG_FILE = "run.log"
_PLOT_LOCK = threading.Lock()  # matplotlib's pyplot is not thread-safe; baselines run in threads

BASELINE_METHODS = ("oracle", "fedavg-clean", "fedavg-attack")
MAIN_METHODS = ("fedavg-attack", "protocol", "fedavg-clean", "oracle")  # the paper's table order
# The protocol under each voters' review rule (issue 11): the paper's rule and the per-proposal default.
REVIEW_METHODS = {"protocol-aggregate": "aggregate", "protocol-cosine": "cosine"}
PROTOCOL_MAIN = ("protocol", *REVIEW_METHODS)  # protocol methods of the main comparison
RATIO_FREE = ("oracle", "fedavg-clean")  # no attackers: one run per seed, filed under ratio 0

# The ABI size of each protocol call's arguments (32-byte words) and of each event's
# topics + data, for the bytes written on chain per round.
CALL_ARG_WORDS = {"openRound": 0, "propose": 3, "commitVote": 2, "revealVote": 4, "settle": 1}
CALL_FOR_EVENT = {"RoundOpened": "openRound", "ProposalSubmitted": "propose",
                  "VoteCommitted": "commitVote", "VoteRevealed": "revealVote", "RoundSettled": "settle"}


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: which method, under which configuration, into which folder."""

    method: str
    group: str  # main | survival | voters
    config: SimulationConfig

    @property
    def ratio(self) -> float:
        return self.config.malicious_ratio

    @property
    def seed(self) -> int:
        return self.config.seed

    def folder(self, results: Path) -> Path:
        return Path(results) / self.method / f"ratio-{self.ratio:g}" / f"seed-{self.seed}"

    @property
    def is_protocol(self) -> bool:
        return self.method.startswith("protocol")


def plan_sweep(
    base: SimulationConfig,
    ratios: Iterable[float],
    seeds: Iterable[int],
    methods: Iterable[str] = MAIN_METHODS,
    survival_stakes: Iterable[float] = (),
    survival_ratio: float = 0.3,
    voter_ratio: float = 0.3,
    extra_seeds: Iterable[int] = (),
    extra_rounds: int | None = None,
    variant_scores: Iterable[str] = (),
    variant_ratio: float = 0.4,
) -> list[RunSpec]:
    """Every run of the sweep, ordered seed by seed so a sweep cut short has whole seeds.

    `base` holds everything but ratio and seed (its `malicious_roles` is used for the main runs).
    Survival runs use `survival_stakes` other than `base.proposer_stake` at `survival_ratio`;
    voter runs use malicious roles "voter" at `voter_ratio`; both only for `extra_seeds`, only when
    "protocol" or "extras" (these runs alone) is among `methods`, and with `extra_rounds` rounds (default: `base.rounds`).
    Variant runs (``protocol-vote-<score>``, also for `extra_seeds`) are the main protocol run at
    `variant_ratio` with the voters scoring `score` instead of `base.score`, same rounds.
    """
    methods = list(methods)
    unknown = set(methods) - set(MAIN_METHODS) - set(REVIEW_METHODS) - {"extras"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from "
                         f"{', '.join([*MAIN_METHODS, *REVIEW_METHODS])}, extras")
    ratios, extra_seeds = list(ratios), set(extra_seeds)
    specs: list[RunSpec] = []
    for seed in seeds:
        # the cheap baselines of a seed first, then its chain runs
        for method in ("oracle", "fedavg-clean"):
            if method in methods:
                specs.append(RunSpec(method, "main", replace(base, malicious_ratio=0.0, seed=seed)))
        if "fedavg-attack" in methods:
            for ratio in ratios:
                specs.append(RunSpec("fedavg-attack", "main", replace(base, malicious_ratio=ratio, seed=seed)))
        # each protocol method: (its name, its base config); protocol-<rule> fixes the review rule
        protocols = [(m, base if m == "protocol" else replace(base, review=REVIEW_METHODS[m]))
                     for m in PROTOCOL_MAIN if m in methods]
        for ratio in ratios:
            for method, config in protocols:
                specs.append(RunSpec(method, "main", replace(config, malicious_ratio=ratio, seed=seed)))
        if seed in extra_seeds and (protocols or "extras" in methods):
            for method, config in protocols or [("protocol", base)]:
                extra = replace(config, rounds=extra_rounds or base.rounds)
                if voter_ratio > 0:
                    voters = replace(extra, malicious_ratio=voter_ratio, seed=seed, malicious_roles="voter")
                    specs.append(RunSpec(f"{method}-voters", "voters", voters))
                for stake in survival_stakes:
                    if stake != base.proposer_stake or method != "protocol":
                        survival = replace(extra, malicious_ratio=survival_ratio, seed=seed, proposer_stake=stake)
                        specs.append(RunSpec(f"{method}-pstake{stake:g}", "survival", survival))
            for score in variant_scores:
                if score != base.score:
                    config = replace(base, malicious_ratio=variant_ratio, seed=seed, score=score)
                    specs.append(RunSpec(f"protocol-vote-{score}", "variant", config))
    # baselines before chain runs within a seed keep the order above; nothing else to sort
    return specs


def is_done(folder: Path) -> bool:
    """A finished run: summary.json present and the run was not interrupted."""
    summary = Path(folder) / "summary.json"
    if not summary.is_file():
        return False
    try:
        return not json.loads(summary.read_text()).get("interrupted", False)
    except json.JSONDecodeError:
        return False


def recorded_draw(folder: Path) -> str | None:
    """The proposer draw a finished chainless run recorded in its config.json ("seeded" when it
    recorded none: made before the chainless ledger replayed the contract's draw; None: unreadable)."""
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("draw", "seeded")
    except (OSError, json.JSONDecodeError):
        return None


def former_draw_runs(specs, results: Path) -> list[Path]:
    """Finished FedAvg runs of ``specs`` whose proposers were drawn another way than the contract's
    (their rounds are not comparable with the protocol runs' any more: refuse to count them done)."""
    from fl.simulation.baselines import CHAINLESS_DRAW

    folders = [s.folder(results) for s in specs if s.method.startswith("fedavg")]
    return [f for f in folders if is_done(f) and recorded_draw(f) not in (None, CHAINLESS_DRAW)]


def recorded_review(folder: Path) -> str | None:
    """The review rule a finished protocol run used, from its config.json (None: not recorded)."""
    try:
        return json.loads((Path(folder) / "config.json").read_text())["simulation"].get("review")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def other_rule_runs(specs, results: Path) -> list[tuple[Path, str, str]]:
    """Finished protocol runs of ``specs`` made under another review rule than their spec's, as
    (folder, recorded rule, planned rule): ``protocol`` follows the task's default rule, so a
    resumed sweep would otherwise mix two rules under one method name."""
    stale = []
    for spec in specs:
        folder = spec.folder(results)
        if spec.is_protocol and is_done(folder):
            recorded = recorded_review(folder)
            if recorded is not None and recorded != spec.config.review:
                stale.append((folder, recorded, spec.config.review))
    return stale


def _spec_record(spec: RunSpec, command: list[str] | None) -> dict:
    return {
        "method": spec.method,
        "group": spec.group,
        "task": spec.config.task,
        "malicious_ratio": spec.ratio,
        "seed": spec.seed,
        "config": asdict(spec.config),
        "command": " ".join(["ape", *command[1:]]) if command else None,  # ape from the project's venv
    }


def simulate_command(config: SimulationConfig, folder: Path, network: str | None, simulate_params: set[str]) -> list[str]:
    """`ape run simulate` with every config field it has an option for (task etc. when it does)."""
    ape = str(Path(sys.executable).parent / "ape")
    command = [ape, "run", "simulate", "--output", str(folder)]
    defaults = SimulationConfig()
    for name, value in asdict(config).items():
        option = name.replace("_", "-")
        if option not in simulate_params:
            if value != getattr(defaults, name):
                raise ValueError(f"ape run simulate has no --{option} option; cannot run {name}={value!r} on chain")
            continue
        if value is None:
            continue
        command += [f"--{option}", str(value)]
    if network:
        command += ["--network", network]
    return command


def compile_contracts() -> None:
    """`ape compile` once, before parallel `ape run simulate` processes start: each would otherwise
    compile and fetch OpenZeppelin into contracts/.cache at the same time on a fresh checkout, and
    one could read the other's half-written cache. A no-op in seconds when nothing changed."""
    ape = str(Path(sys.executable).parent / "ape")
    completed = subprocess.run([ape, "compile"], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"ape compile failed (exit {completed.returncode}):\n{(completed.stdout + completed.stderr)[-2000:]}")


class RunBusy(RuntimeError):
    """Another sweep process is making this run right now."""


def run_one(spec: RunSpec, results: Path, network: str | None = None, simulate_params: set[str] | None = None) -> dict:
    """Run `spec` into its folder (removing an unfinished one first). Returns its summary.

    A lock file beside the folder keeps two sweeps into one results folder off the same run.
    """
    folder = spec.folder(results)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"{folder} is being made by another sweep; rerun when it is done") from None
        if is_done(folder):
            return json.loads((folder / "summary.json").read_text())
        if folder.exists():
            shutil.rmtree(folder)
        if spec.is_protocol:
            return _run_protocol(spec, folder, network, simulate_params or set())
        return _run_baseline(spec, folder)


def _run_protocol(spec: RunSpec, folder: Path, network: str | None, simulate_params: set[str]) -> dict:
    command = simulate_command(spec.config, folder, network, simulate_params)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_path = folder.parent / f"{folder.name}.{LOG_FILE}"
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if completed.returncode != 0 or not (folder / "summary.json").is_file():
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed (exit {completed.returncode}):\n{tail}")
    shutil.move(str(log_path), folder / LOG_FILE)
    (folder / EXPERIMENT_FILE).write_text(json.dumps(_spec_record(spec, command), indent=2, sort_keys=True) + "\n")
    condense_run(folder)
    return json.loads((folder / "summary.json").read_text())


def _run_baseline(spec: RunSpec, folder: Path) -> dict:
    import math
    import platform

    from fl.simulation.baselines import CHAINLESS_DRAW, run_fedavg, run_oracle
    from fl.simulation.recorder import RunRecorder
    from fl.simulation.rounds import load_federated_data
    from fl.learning.store import UpdateStore

    started = time.perf_counter()
    config = spec.config
    data = load_federated_data(config)
    header = {"simulation": asdict(config), "method": spec.method, "python": platform.python_version()}
    if spec.method != "oracle":  # the oracle draws no proposers
        header["draw"] = CHAINLESS_DRAW
    recorder = RunRecorder(folder, header)
    if spec.method == "oracle":
        run_oracle(config, data, on_round=lambda record, extra: recorder.record_round(record))
    else:
        store = UpdateStore(str(folder / "updates"))
        run_fedavg(config, data, store, on_round=lambda record, extra: recorder.record_round(record))
        update_bytes = _one_update_size(folder / "updates")
        shutil.rmtree(folder / "updates", ignore_errors=True)
    rows = recorder.rows
    summary = {
        "method": spec.method,
        "rounds_requested": config.rounds,
        "rounds_completed": len(rows),
        "interrupted": False,
        "final_test_accuracy": rows[-1]["test_accuracy"] if rows else math.nan,
        "final_test_balanced_accuracy": rows[-1]["test_balanced_accuracy"] if rows else math.nan,
        "final_test_auroc": rows[-1]["test_auroc"] if rows else math.nan,
        "malicious_clients": round(config.malicious_ratio * config.clients),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    if spec.method != "oracle":
        summary["update_bytes"] = update_bytes
    (folder / EXPERIMENT_FILE).write_text(json.dumps(_spec_record(spec, None), indent=2, sort_keys=True) + "\n")
    with _PLOT_LOCK:
        return recorder.finish(summary)


def _one_update_size(store_folder: Path) -> int | None:
    blobs = sorted(Path(store_folder).glob("*.safetensors"))
    return blobs[0].stat().st_size if blobs else None


def condense_run(folder: Path) -> dict:
    """Write onchain.json from events.jsonl and metrics.csv; shrink the update store to one blob size.

    Per round: gas (from metrics.csv), the ABI bytes of the protocol calls' arguments
    (one call per RoundOpened / ProposalSubmitted / VoteCommitted / VoteRevealed /
    RoundSettled event) and the bytes of all event logs (topics + data, 32 bytes per
    argument word plus the event signature topic).
    """
    from fl.simulation.recorder import read_metrics

    folder = Path(folder)
    rows = read_metrics(folder)
    block_round: list[tuple[int, int]] = []  # (first block, round), ascending
    events = []
    events_path = folder / "events.jsonl"
    if events_path.is_file():
        with open(events_path) as fh:
            events = [json.loads(line) for line in fh if line.strip()]
    for event in events:
        if event["event"] == "RoundOpened":
            block_round.append((int(event["block"]), int(event["args"]["roundId"])))
    calls: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    log_bytes: dict[int, int] = defaultdict(int)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for event in events:
        r = _round_of(int(event["block"]), block_round)
        if r is None:
            continue
        counts[r][event["event"]] += 1
        log_bytes[r] += 32 * (1 + len(event["args"]))
        call = CALL_FOR_EVENT.get(event["event"])
        if call:
            calls[r][call] += 1
    per_round = []
    for row in rows:
        r = int(row["round"])
        calldata = sum(4 + 32 * CALL_ARG_WORDS[c] for c, n in calls[r].items() for _ in range(n))
        per_round.append({
            "round": r,
            "gas": int(row["gas"]),
            "transactions": sum(calls[r].values()),
            "calldata_bytes": calldata,
            "event_bytes": log_bytes[r],
            "events": dict(counts[r]),
        })
    onchain = {
        "update_bytes": _one_update_size(folder / "updates"),
        "rounds": per_round,
    }
    (folder / ONCHAIN_FILE).write_text(json.dumps(onchain, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(folder / "updates", ignore_errors=True)
    if events_path.is_file():  # kept compressed for inspection, not committed (see results/.gitignore)
        with open(events_path, "rb") as src, gzip.open(f"{events_path}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        events_path.unlink()
    return onchain


def _round_of(block: int, block_round: list[tuple[int, int]]) -> int | None:
    current = None
    for first, r in block_round:
        if block >= first:
            current = r
        else:
            break
    return current


def say(line: str) -> None:
    """Print a line above the progress bar and flush it: a log file read while a sweep runs shows
    it at once (tqdm.write leaves it in stdout's buffer when stdout is a file)."""
    from tqdm import tqdm

    tqdm.write(line)
    sys.stdout.flush()


class SessionLog:
    """One sweep or benchmark session's entry in <results>/sweep.json, rewritten after every run.

    "finished" is written only when the session ends: done, failed, or stopped by a signal it
    handles (then also "interrupted": true). A session killed outright (kill -9) keeps only
    "last_saved", the time of its last run, so it never reads as finished.
    """

    def __init__(self, results: Path, command: str, planned: int, already_done: int, **extra):
        from datetime import datetime, timezone

        self._now = lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.results = Path(results)
        self._started = time.perf_counter()
        self.entry = {"started": self._now(), "command": command, "planned": planned, "already_done": already_done,
                      "made": 0, "failed": [], **extra}
        self.save()  # recorded from the start, so a session stopped before its first run is listed too

    def ran(self, label: str, failed: bool = False) -> None:
        if failed:
            self.entry["failed"].append(label)
        else:
            self.entry["made"] += 1
        self.save()

    def save(self, final: bool = False) -> None:
        self.entry["wall_seconds"] = round(time.perf_counter() - self._started, 1)
        self.entry["last_saved"] = self._now()
        if final:
            self.entry["finished"] = self.entry["last_saved"]
        update_sweep_log(self.results, self.entry)


def session_outcome(entry: dict) -> str:
    """How a sweep.json session ended, for the reports: ", 2 failed, interrupted" or ""."""
    return ((f", {len(entry['failed'])} failed" if entry.get("failed") else "")
            + (", interrupted" if entry.get("interrupted") else "")
            + (", killed (no end recorded)" if "finished" not in entry and "last_saved" in entry else ""))


def busy_seconds(sessions: Iterable[dict]) -> float:
    """Seconds covered by the union of the sessions' [started, started + wall_seconds] intervals."""
    intervals = sorted((start, start + s.get("wall_seconds", 0)) for s in sessions if s.get("started")
                       for start in [datetime.fromisoformat(s["started"]).timestamp()])
    total, end = 0.0, -math.inf
    for a, b in intervals:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def update_sweep_log(results: Path, entry: dict) -> None:
    """Add or update one session (command, start, end, runs made) in <results>/sweep.json.

    Sessions are keyed by (started, command); a lock file lets sweeps into one folder run at once.
    """
    path = Path(results) / SWEEP_FILE
    with open(Path(results) / f".{SWEEP_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log = json.loads(path.read_text()) if path.is_file() else {"sessions": []}
        key = (entry.get("started"), entry.get("command"))
        sessions = [s for s in log["sessions"] if (s.get("started"), s.get("command")) != key]
        sessions.append(entry)
        log["sessions"] = sorted(sessions, key=lambda s: s.get("started", ""))
        path.write_text(json.dumps(log, indent=2, sort_keys=True) + "\n")


def finalize_orphan(spec: RunSpec, results: Path) -> bool:
    """A protocol run that finished after its sweep process died (summary.json, no experiment.json):
    condense it and write its experiment.json now. Returns True if it did."""
    folder = spec.folder(results)
    if not spec.is_protocol or not is_done(folder) or (folder / EXPERIMENT_FILE).is_file():
        return False
    # the command the sweep ran, rebuilt from the spec (simulate_command is deterministic)
    command = simulate_command(spec.config, folder, None, _ALL_OPTIONS) if _ALL_OPTIONS else None
    log_path = folder.parent / f"{folder.name}.{LOG_FILE}"
    if log_path.is_file():
        shutil.move(str(log_path), folder / LOG_FILE)
    (folder / EXPERIMENT_FILE).write_text(json.dumps(_spec_record(spec, command), indent=2, sort_keys=True) + "\n")
    condense_run(folder)
    return True


_ALL_OPTIONS: set[str] = set()  # simulate's option names, set by the sweep command
