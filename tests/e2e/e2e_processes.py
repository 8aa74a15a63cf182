"""What the multi-process e2e tests share: a free port, waiting for a node, the processes a
scenario starts (killed whatever happens), contracts read through web3, and polling with a
failure message that shows the chain and every log's tail.

Imported by basename (`from e2e_processes import ...`): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from ape import project
from web3 import Web3

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APE = str(BIN / "ape")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_rpc(uri: str, timeout: float = 30, poll: float = 0.2) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            requests.post(uri, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            return
        except requests.RequestException:
            time.sleep(poll)
    raise RuntimeError(f"anvil did not answer at {uri}")


class Processes:
    """Every process a scenario starts, each logging to its own file, so a failure never leaves one behind."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, list[Path]] = {}

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = self.folder / f"{name}.{len(self.logs.get(name, []))}.log"
        self.logs.setdefault(name, []).append(log)
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)

    def log_text(self, name: str) -> str:
        return "\n".join(p.read_text() for p in self.logs.get(name, []) if p.exists())

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def contract(w3: Web3, name: str, address: str):
    """The project's contract `name` at `address`, read through web3 (the test session's Ape provider is another chain)."""
    abi = [item.model_dump(by_alias=True, mode="json") for item in getattr(project, name).contract_type.abi]
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)


def wait_until(predicate, timeout: float, what: str, procs: Processes, poll: float = 0.25, state=None):
    """Poll `predicate` until truthy; on timeout fail with the chain's state (`state()`) and every log's tail."""
    started = time.time()
    while time.time() - started < timeout:
        try:
            value = predicate()
        except (requests.RequestException, OSError):  # the node is restarting
            value = None
        if value:
            return value
        time.sleep(poll)
    try:
        chain = state() if state else "n/a"
    except (requests.RequestException, OSError) as exc:
        chain = f"node unreachable: {exc}"
    exited = {n: p.returncode for n, p in procs.procs.items() if p.poll() is not None}
    tails = "\n".join(f"--- {n}\n{procs.log_text(n)[-1500:]}" for n in procs.procs)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; chain: {chain}; "
                         f"exited: {exited}; logs in {procs.folder}\n{tails}")
