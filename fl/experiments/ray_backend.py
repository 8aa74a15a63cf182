"""`ape run experiment sweep --ray ADDRESS`: the sweep's pending runs as Ray tasks.

Each run is one task (``--ray-cpus-per-run`` CPUs, 1 by default). The task makes the run on its
worker with ``run_one`` into a temporary folder (a protocol run starts its own chain there: the
embedded chain in its ``ape run simulate`` process, or anvil on a free port), then returns the
run folder's files as bytes; the driver writes them into ``<results>/<method>/ratio-<r>/seed-<s>``.
No disk is shared, so each node needs the project and its data (see the README).

The driver keeps the sweep's rules: the per-run lock beside the folder is held while the run's
task is out; a run whose folder is already finished is skipped; a failed run comes back with its
log (written beside its folder as ``seed-<s>.run.log``) and the sweep goes on; a task whose
worker is lost is retried once by Ray (``max_retries=1``; errors raised by the run itself are
not retried). Ray is imported only here, and only when a sweep runs with ``--ray``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from fl.experiments.sweep import (EXPERIMENT_FILE, LOG_FILE, RunBusy, RunSpec, _spec_record, is_done, run_one,
                                  simulate_command)

LOG_TAIL_CHARS = 4000
MAX_RETRIES_ON_LOST_WORKER = 1


class RayUnavailable(RuntimeError):
    """`--ray` was asked for but Ray is not installed or no cluster answers at the address."""


@dataclass(frozen=True)
class TaskResult:
    """What a task sends back: the run folder's files (relative path -> bytes), or the error and log."""

    host: str
    summary: dict | None = None
    files: dict[str, bytes] | None = None
    error: str | None = None
    log: str = ""


def project_root() -> Path:
    """The checkout this process imports `fl` from (`ape run simulate` runs there)."""
    import fl

    return Path(fl.__file__).resolve().parent.parent


def make_run_on_worker(spec: RunSpec, recorded_folder: str, network: str | None,
                       simulate_params: set[str], cpus: int) -> TaskResult:
    """The task body: run `spec` in a temporary folder on this node and return its files.

    `recorded_folder` is the run's folder on the driver: a protocol run's experiment.json
    records the `ape run simulate --output` command for that folder, as a local sweep does.
    """
    import torch

    _crash_once_for_tests()
    torch.set_num_threads(max(1, cpus))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpus)))
    if network and "foundry" in network:
        os.environ.setdefault("APE_FOUNDRY_HOST", "auto")  # runs sharing a node each take a free port
    host = socket.gethostname()
    os.chdir(project_root())
    scratch = Path(tempfile.mkdtemp(prefix="stakefl-ray-"))
    try:
        folder = spec.folder(scratch)
        try:
            summary = run_one(spec, scratch, network, simulate_params)
        except Exception as exc:  # noqa: BLE001 - the driver reports it; the sweep goes on
            log_path = folder.parent / f"{folder.name}.{LOG_FILE}"
            log = log_path.read_text(errors="replace") if log_path.is_file() else traceback.format_exc()
            return TaskResult(host=host, error=f"{type(exc).__name__}: {exc}", log=log[-LOG_TAIL_CHARS:])
        if spec.is_protocol:
            command = simulate_command(spec.config, Path(recorded_folder), network, simulate_params)
            (folder / EXPERIMENT_FILE).write_text(
                json.dumps(_spec_record(spec, command), indent=2, sort_keys=True) + "\n")
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return TaskResult(host=host, summary=summary, files=files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _crash_once_for_tests() -> None:
    """With STAKEFL_RAY_CRASH_ONCE=<path> (tests only): the first task on the cluster kills its
    worker process, as a lost node would, and leaves <path> so that its retry runs."""
    marker = os.environ.get("STAKEFL_RAY_CRASH_ONCE")
    if marker:
        try:
            Path(marker).touch(exist_ok=False)
        except FileExistsError:
            return
        os._exit(1)


def write_run_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Replace `folder` with `files`, summary.json last, through a staging folder beside it."""
    staging = folder.parent / f".{folder.name}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in sorted(files, key=lambda n: n == "summary.json"):
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise ValueError(f"refusing run file path {name!r} from a worker")
            target = staging.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[name])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def connect(address: str):
    """ray.init at `address` (auto, HOST:PORT, ray://HOST:PORT, or local). Returns the ray module."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--ray needs Ray: pip install -e .[ray]") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Ray's tip about GPU variables
            ray.init(address=address, log_to_driver=False, logging_level="WARNING", configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayUnavailable(f"no Ray cluster at {address!r} ({first}); start one with `ray start --head`") from None
    return ray


def run_on_ray(todo: list[RunSpec], results: Path, address: str, cpus_per_run: int, network: str | None,
               simulate_params: set[str], on_done: Callable[..., None],
               echo: Callable[[str], None] = print, after_connect: Callable[[], None] | None = None) -> None:
    """Run every spec of `todo` as a Ray task at `address`; call `on_done(spec, summary)` or
    `on_done(spec, error=exc)` as each one ends (in completion order). `after_connect` runs once
    connected (Ray installs its own SIGTERM handler then: the caller's goes back on top)."""
    ray = connect(address)
    if after_connect is not None:
        after_connect()
    try:
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < cpus_per_run:
            raise RayUnavailable(f"the Ray cluster at {address!r} has {cpus:g} CPUs; --ray-cpus-per-run is {cpus_per_run}")
        slots = max(1, int(cpus // cpus_per_run))
        echo(f"Ray cluster: {len(ray.nodes())} node(s), {cpus:g} CPUs -> {slots} runs at a time")
        task = ray.remote(make_run_on_worker).options(
            num_cpus=cpus_per_run, max_retries=MAX_RETRIES_ON_LOST_WORKER, retry_exceptions=False)
        _drive(ray, task, todo, Path(results), network, simulate_params, cpus_per_run, 2 * slots, on_done)
    finally:
        ray.shutdown()


def _drive(ray, task, todo, results, network, simulate_params, cpus_per_run, window, on_done) -> None:
    pending: dict = {}  # object ref -> (spec, open lock file)
    queue = list(todo)  # plan order: whole seeds first
    try:
        while queue or pending:
            while queue and len(pending) < window:
                spec = queue.pop(0)
                folder = spec.folder(results)
                folder.parent.mkdir(parents=True, exist_ok=True)
                lock = open(folder.parent / f".{folder.name}.lock", "w")
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    lock.close()
                    on_done(spec, error=RunBusy(f"{folder} is being made by another sweep; rerun when it is done"))
                    continue
                if is_done(folder):  # finished by another sweep since this one planned
                    lock.close()
                    on_done(spec, json.loads((folder / "summary.json").read_text()))
                    continue
                ref = task.remote(spec, str(folder), network, simulate_params, cpus_per_run)
                pending[ref] = (spec, lock)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                spec, lock = pending.pop(ref)
                try:
                    _receive(ray, ref, spec, results, on_done)
                finally:
                    lock.close()
    finally:
        for ref, (_, lock) in pending.items():
            ray.cancel(ref, force=True)
            lock.close()


def _receive(ray, ref, spec: RunSpec, results: Path, on_done) -> None:
    folder = spec.folder(results)
    try:
        result: TaskResult = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a worker lost twice, or Ray's own failure
        on_done(spec, error=RuntimeError(f"Ray task failed after {MAX_RETRIES_ON_LOST_WORKER} retry: "
                                         f"{type(exc).__name__}: {str(exc).strip()[:500]}"))
        return
    if result.error is not None:
        log_path = folder.parent / f"{folder.name}.{LOG_FILE}"
        log_path.write_text(result.log)
        on_done(spec, error=RuntimeError(f"on {result.host}: {result.error}\n(log tail in {log_path})"))
        return
    try:
        write_run_folder(folder, result.files)
    except (OSError, ValueError) as exc:
        on_done(spec, error=exc)
        return
    on_done(spec, result.summary)
