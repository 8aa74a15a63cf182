"""The measurements of `ape run bench`: how fast the on-chain simulation runs, next to the chain's own speed, and its gas.

Measures in one run, on this machine (docs/PERFORMANCE.md explains every figure):
  (a) raw capacity: tx/s of a plain JSON-RPC loop against an anvil node the bench starts;
  (b) protocol tx/s of the project's chain adapter (fl/chain/ledger.py + fl/chain/txpath.py) during a simulation;
  (c) rounds/s of the full protocol at --clients on that anvil and on the embedded provider;
  (d) rounds/s of the same federated rounds without the chain (plain FedAvg, same training);
  the ratios (b)/(a) and (c anvil)/(d); gas of every protocol call and of a whole round at
  --gas-clients registered clients (table and PNG); peak memory (RSS) of a simulation at
  --memory-clients clients. Writes bench.json, gas.png and rounds.png to --output.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from fl.experiments.bench_report import machine, plot_results, ratios, table

MNEMONIC = "test test test test test test test test test test test junk"  # ape-config.yaml's test mnemonic
PROTOCOL_CALLS = ("openRound", "propose", "commitVote", "revealVote", "settle")


class BenchError(RuntimeError):
    """The bench cannot run here (no anvil, or it did not start); the message says why."""


def run_bench(clients: int, rounds: int, embedded_rounds: int, raw_txs: int, gas_clients: list[int],
              memory_clients: list[int], memory_rounds: int, output: str | None,
              round_gas: Callable[[str, list[int]], list[dict]], echo: Callable[[str], None] = print) -> Path:
    """Start an anvil node, measure every figure on it and on the embedded chain, print a table and
    write bench.json + PNGs to `output` (default runs/bench-<time>). `round_gas(uri, sizes)` measures
    the gas of one round at each size on that node. Returns the folder."""
    folder = Path(output) if output else Path("runs") / f"bench-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)  # as fl.simulation.runner does: the models are tiny
    results: dict = {
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "command": "ape run bench " + " ".join(sys.argv[2:] if sys.argv[:2] == ["ape", "run"] else sys.argv[1:]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch, AnvilNode() as node:
        scratch = Path(scratch)
        echo(f"anvil {node.version} on {node.uri} (pid {node.process.pid})")
        echo(f"(a) plain JSON-RPC loop, {raw_txs} transfers ...")
        clock = CpuClock(node.process.pid)
        results["a_raw"] = raw_rpc_loop(node.uri, raw_txs, clock)
        echo(f"(b, c) simulation on anvil, {clients} clients, {rounds} rounds ...")
        results["c_anvil"] = timed_simulation("ethereum:local:foundry", node.uri, clients, rounds, scratch / "anvil", clock)
        results["review_rules"] = review_rule_rates(results["c_anvil"], node.uri, clients, rounds, scratch, clock, echo)
        echo(f"(c) simulation on the embedded chain, {clients} clients, {embedded_rounds} rounds ...")
        results["c_embedded"] = timed_simulation(
            "ethereum:local:test", None, clients, embedded_rounds, scratch / "embedded", CpuClock(None)
        )
        echo(f"(d) plain FedAvg, {clients} clients, {rounds} rounds ...")
        results["d_fedavg"] = timed_fedavg(clients, rounds, scratch / "fedavg")
        echo(f"gas of a round at {gas_clients} registered clients ...")
        results["gas"] = round_gas(node.uri, gas_clients)
        results["memory"] = []
        for n in memory_clients:
            echo(f"peak memory of a simulation at {n} clients ({memory_rounds} rounds, own process) ...")
            results["memory"].append(peak_memory(node.uri, n, memory_rounds, scratch / f"memory-{n}"))
        results["anvil_peak_rss_mb"] = node.peak_rss_mb()
    results["load_average_after"] = os.getloadavg()
    results["ratios"] = ratios(results)
    (folder / "bench.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    plots = plot_results(results, folder)
    echo(table(results))
    echo(f"written: {folder / 'bench.json'}, " + ", ".join(str(p) for p in plots))
    return folder


# ---------------------------------------------------------------------- the node
class AnvilNode:
    """anvil from PATH on a free local port, with ape-config's mnemonic and hardfork (cancun).

    Unlike ape-foundry's own start it omits `--steps-tracing` (recording every EVM step makes a
    50-client openRound take ~0.3 s instead of ~0.02 s). Stopped (and waited for) on exit."""

    def __init__(self, accounts: int = 20):
        self.accounts = accounts
        self.process = None

    def __enter__(self) -> "AnvilNode":
        anvil = shutil.which("anvil")
        if anvil is None:
            raise BenchError("anvil not found on PATH: run `make setup` (it links anvil into .venv/bin)")
        self.version = subprocess.run([anvil, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[0]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [anvil, "--port", str(port), "--hardfork", "cancun", "--mnemonic", MNEMONIC,
             "--accounts", str(self.accounts), "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"anvil exited at start with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise BenchError("anvil did not start listening within 20 s")

    def peak_rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process `pid` (from /proc)."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class CpuClock:
    """CPU seconds of this process plus the node's: on a loaded machine wall time mostly measures
    the others; the CPU the work itself took does not (the pipeline is serial: one waits for the other)."""

    def __init__(self, node_pid: int | None):
        self.node_pid = node_pid

    def now(self) -> tuple[float, float]:
        return cpu_seconds(), (cpu_seconds(self.node_pid) if self.node_pid else 0.0)


def dev_keys(count: int) -> list:
    """The first `count` accounts of the test mnemonic (anvil funds them), as eth_account accounts."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


# ---------------------------------------------------------------------- (a)
def raw_rpc_loop(uri: str, count: int, clock: "CpuClock", senders: int = 10) -> dict:
    """(a): `count` ether transfers of 1 wei, round-robin from `senders` funded accounts, each
    signed with eth_account just before sending (EIP-1559, gas 21,000, nonces counted locally),
    sent with eth_sendRawTransaction over one keep-alive `requests` session, then
    eth_getTransactionReceipt polled until the receipt is there (automine: one block per
    transaction) before the next is signed. tx/s = count / wall time of the loop."""
    import requests
    from eth_account import Account

    session = requests.Session()
    ids = iter(range(1, 10**9))

    def rpc(method, params):
        answer = session.post(uri, json={"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params}).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    accounts = dev_keys(senders + 1)[1:]  # not the deployer
    chain_id = int(rpc("eth_chainId", []), 16)
    nonces = [int(rpc("eth_getTransactionCount", [a.address, "pending"]), 16) for a in accounts]
    base_fee = int(rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    target = "0x000000000000000000000000000000000000dEaD"
    cpu_before = clock.now()
    started = time.perf_counter()
    for i in range(count):
        k = i % senders
        tx = {"type": 2, "chainId": chain_id, "nonce": nonces[k], "to": target, "value": 1, "gas": 21_000,
              "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9}
        nonces[k] += 1
        raw = Account.sign_transaction(tx, accounts[k].key).raw_transaction
        tx_hash = rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
        while (receipt := rpc("eth_getTransactionReceipt", [tx_hash])) is None:
            time.sleep(0.0005)
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"transfer {tx_hash} failed")
    seconds = time.perf_counter() - started
    cpu = [b - a for a, b in zip(cpu_before, clock.now())]
    return {"transactions": count, "seconds": round(seconds, 3), "tx_per_s": round(count / seconds, 1),
            "cpu_seconds_client": round(cpu[0], 3), "cpu_seconds_node": round(cpu[1], 3),
            "tx_per_cpu_s": round(count / sum(cpu), 1) if sum(cpu) else None}


# ---------------------------------------------------------------------- (b), (c), (d)
def _round_rates(records_seconds: list[float]) -> dict:
    """Rounds per second over all rounds and after the first (the first imports torch's
    compiler stack on Adam's first use, ~3 s once per process)."""
    total = sum(records_seconds)
    steady = records_seconds[1:]
    return {
        "rounds": len(records_seconds),
        "round_seconds": [round(s, 4) for s in records_seconds],
        "rounds_per_s_all": round(len(records_seconds) / total, 3) if total else None,
        "rounds_per_s": round(len(steady) / sum(steady), 3) if steady and sum(steady) else None,
        "median_round_s": round(sorted(records_seconds)[len(records_seconds) // 2], 4),
    }


def review_rule_rates(default_run: dict, uri: str, clients: int, rounds: int, folder: Path, clock: "CpuClock",
                      echo: Callable[[str], None] = print) -> dict:
    """rounds/s on anvil of every review rule the issue compares (the paper's `aggregate` and the
    per-proposal default), the default one taken from `default_run` (c), the other run here."""
    from fl.simulation.rounds import SimulationConfig

    default = SimulationConfig().review
    rates = {default: default_run["rounds_per_s"]}
    for rule in ("aggregate", "cosine"):
        if rule not in rates:
            echo(f"(c) simulation on anvil with --review {rule}, {clients} clients, {rounds} rounds ...")
            run = timed_simulation("ethereum:local:foundry", uri, clients, rounds, folder / f"review-{rule}", clock, review=rule)
            rates[rule] = run["rounds_per_s"]
    per_proposal = rates.get("cosine")
    paper = rates.get("aggregate")
    return {"rounds_per_s": rates,
            "cosine_over_aggregate": round(per_proposal / paper, 3) if per_proposal and paper else None}


def timed_simulation(network: str, uri: str | None, clients: int, rounds: int, folder: Path, clock: "CpuClock",
                     review: str | None = None) -> dict:
    """`ape run simulate`'s run (fl.simulation.runner.run_simulation) at paper defaults, timed per round;
    the adapter's own send time per call (fl.chain.ledger.ADAPTER_STATS) gives (b)."""
    from fl.chain.connection import connected_to

    with connected_to(network, uri):
        from fl.chain.ledger import ADAPTER_STATS
        from fl.simulation.recorder import read_metrics
        from fl.simulation.runner import run_simulation
        from fl.simulation.rounds import SimulationConfig

        from fl.simulation.recorder import RunRecorder

        before = {k: list(v) for k, v in ADAPTER_STATS.items()}
        marks = []  # CPU clock after every round (the recorder is called once per settled round)
        original = RunRecorder.record_round

        def record_round(self, *args, **kwargs):
            original(self, *args, **kwargs)
            marks.append(clock.now())

        RunRecorder.record_round = record_round
        started = time.perf_counter()
        try:
            config = SimulationConfig(clients=clients, rounds=rounds, seed=0)
            if review is not None:
                config.review = review
            summary = run_simulation(config, folder, progress=False)
        finally:
            RunRecorder.record_round = original
        wall = time.perf_counter() - started
        stats = {
            k: [v[0] - before.get(k, [0, 0.0])[0], v[1] - before.get(k, [0, 0.0])[1]]
            for k, v in ADAPTER_STATS.items()
        }
        rows = read_metrics(folder)
    seconds = [float(r["seconds"]) for r in rows]
    protocol_tx = sum(stats.get(k, [0, 0])[0] for k in PROTOCOL_CALLS)
    protocol_s = sum(stats.get(k, [0, 0.0])[1] for k in PROTOCOL_CALLS)
    steady_tx = protocol_tx * (len(rows) - 1) / len(rows)  # about the same number every round
    return {
        "network": network,
        "clients": clients,
        **_round_rates(seconds),
        "wall_seconds_with_setup": round(wall, 2),
        **_cpu_rates(marks, "node" if uri else None),
        "adapter": {k: {"transactions": v[0], "seconds": round(v[1], 4), "tx_per_s": round(v[0] / v[1], 1) if v[1] else None}
                    for k, v in sorted(stats.items())},
        "protocol_transactions": protocol_tx,
        "protocol_transactions_per_round": round(protocol_tx / len(rows), 1),
        "adapter_seconds": round(protocol_s, 3),
        "b_adapter_tx_per_s": round(protocol_tx / protocol_s, 1) if protocol_s else None,
        "end_to_end_tx_per_s": round(steady_tx / sum(seconds[1:]), 1) if len(seconds) > 1 else None,
        "chain_share_of_round_time": round(protocol_s / sum(seconds), 3),
        "gas_by_call": summary.get("gas_by_call"),
        "decisions": {"accepted": summary.get("accepted_rounds"), "rejected": summary.get("rejected_rounds")},
        "tokens_conserved": summary.get("tokens_conserved"),
        "global_model_hash_matches": summary.get("global_model_hash_matches"),
    }


def _cpu_rates(marks: list[tuple[float, float]], node: str | None) -> dict:
    """Rounds per CPU second (this process + the node) over rounds 2.. (between round marks)."""
    if len(marks) < 2:
        return {}
    own = marks[-1][0] - marks[0][0]
    other = marks[-1][1] - marks[0][1]
    n = len(marks) - 1
    return {
        "cpu_s_per_round_process": round(own / n, 4),
        "cpu_s_per_round_node": round(other / n, 4) if node else 0.0,
        "rounds_per_cpu_s": round(n / (own + (other if node else 0.0)), 3),
    }


def timed_fedavg(clients: int, rounds: int, folder: Path) -> dict:
    """(d): fl.simulation.baselines.run_fedavg, the same round loop, data, training and aggregation over a
    ledger in plain Python that accepts every aggregate (no chain, no votes)."""
    from fl.simulation.baselines import run_fedavg
    from fl.simulation.rounds import SimulationConfig, load_federated_data
    from fl.learning.store import UpdateStore

    config = SimulationConfig(clients=clients, rounds=rounds, seed=0)
    data = load_federated_data(config)
    marks = []
    records = run_fedavg(config, data, UpdateStore(str(folder / "updates"), durable=False),  # as fl.simulation.runner's
                         on_round=lambda record, extra: marks.append((time.process_time(), 0.0)))
    return {"clients": clients, **_round_rates([r.seconds for r in records]), **_cpu_rates(marks, None)}


_MEMORY_CHILD = """
import json, sys, time
from pathlib import Path
from fl.chain.connection import connected_to
uri, clients, rounds, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with connected_to("ethereum:local:foundry", uri):
    from fl.simulation.runner import run_simulation
    from fl.simulation.rounds import SimulationConfig
    started = time.perf_counter()
    summary = run_simulation(SimulationConfig(clients=clients, rounds=rounds, seed=0), Path(folder), progress=False)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the parent (the bench itself)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"peak_rss_mb": round(hwm / 1024, 1),
                  "wall_seconds": round(time.perf_counter() - started, 1),
                  "rounds_completed": summary["rounds_completed"],
                  "tokens_conserved": summary["tokens_conserved"]}))
"""


def peak_memory(uri: str, clients: int, rounds: int, folder: Path) -> dict:
    """Peak RSS (VmHWM) of a whole `simulate` run (data, accounts, deployment, enrolment, rounds,
    run folder) in a fresh Python process on the bench's anvil node (the node's own memory is
    reported separately)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, uri, str(clients), str(rounds), str(folder)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    if done.returncode != 0:
        return {"clients": clients, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return {"clients": clients, "rounds": rounds, **json.loads(done.stdout.strip().splitlines()[-1])}
