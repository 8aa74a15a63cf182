"""`ape run bench`'s report: the machine, the ratios between its figures, the table and the PNGs."""

from __future__ import annotations

import os
import platform
from pathlib import Path

def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": memory, "python": platform.python_version(),
            "platform": platform.platform()}


def ratios(results: dict) -> dict:
    a = results["a_raw"]["tx_per_s"]
    b = results["c_anvil"]["b_adapter_tx_per_s"]
    c = results["c_anvil"]["rounds_per_s"]
    d = results["d_fedavg"]["rounds_per_s"]
    return {
        "b_over_a": round(b / a, 3) if a and b else None,
        "c_anvil_over_d": round(c / d, 3) if c and d else None,
        "c_anvil_over_d_cpu": (round(results["c_anvil"]["rounds_per_cpu_s"] / results["d_fedavg"]["rounds_per_cpu_s"], 3)
                               if results["c_anvil"].get("rounds_per_cpu_s") and results["d_fedavg"].get("rounds_per_cpu_s") else None),
        "target_b_over_a_0.5": bool(a and b and b / a >= 0.5),
        "target_4_rounds_per_s": bool(c and c >= 4),
    }


def table(results: dict) -> str:
    a, ca, ce, d, r = results["a_raw"], results["c_anvil"], results["c_embedded"], results["d_fedavg"], results["ratios"]
    lines = [
        "",
        f"machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu']}), "
        f"load average before {tuple(round(x, 1) for x in results['load_average_before'])}, "
        f"after {tuple(round(x, 1) for x in results['load_average_after'])}",
        "",
        f"{'figure':58} {'value':>12}",
        f"{'(a) plain JSON-RPC loop on anvil, tx/s':58} {a['tx_per_s']:>12}",
        f"{'(b) adapter protocol tx/s during the anvil simulation':58} {ca['b_adapter_tx_per_s']:>12}",
        f"{'    end-to-end protocol tx/s (incl. training, voting)':58} {ca['end_to_end_tx_per_s']:>12}",
        f"{'(c) rounds/s, anvil (after round 1 / all)':58} {ca['rounds_per_s']:>6} / {ca['rounds_per_s_all']}",
        f"{'(c) rounds/s, embedded py-evm (after round 1 / all)':58} {ce['rounds_per_s']:>6} / {ce['rounds_per_s_all']}",
        f"{'(d) rounds/s, plain FedAvg without chain (after 1 / all)':58} {d['rounds_per_s']:>6} / {d['rounds_per_s_all']}",
        f"{'(b)/(a)':58} {r['b_over_a']:>12}",
        f"{'(c anvil)/(d)':58} {r['c_anvil_over_d']:>12}",
        *[f"{'rounds/s on anvil, --review ' + rule:58} {rate!s:>12}"
          for rule, rate in results.get("review_rules", {}).get("rounds_per_s", {}).items()],
        *([f"{'--review cosine / --review aggregate (target >= 0.75)':58} "
           f"{results['review_rules']['cosine_over_aggregate']!s:>12}"] if "review_rules" in results else []),
        f"{'protocol transactions per round':58} {ca['protocol_transactions_per_round']:>12}",
        f"{'share of round time in the adapter (anvil)':58} {ca['chain_share_of_round_time']:>12}",
        "",
        "per CPU second (this process + anvil; what an idle machine would reach if the work is serial):",
        f"{'(a) plain loop, tx per CPU s':58} {a.get('tx_per_cpu_s')!s:>12}",
        f"{'(c) anvil, rounds per CPU s':58} {ca.get('rounds_per_cpu_s')!s:>12}",
        f"{'    CPU s per round: process / anvil':58} {ca.get('cpu_s_per_round_process')!s:>6} / {ca.get('cpu_s_per_round_node')}",
        f"{'(c) embedded, rounds per CPU s':58} {ce.get('rounds_per_cpu_s')!s:>12}",
        f"{'(d) plain FedAvg, rounds per CPU s':58} {d.get('rounds_per_cpu_s')!s:>12}",
        f"{'(c anvil)/(d) per CPU s':58} {r.get('c_anvil_over_d_cpu')!s:>12}",
        "",
        "gas of one round (every proposer proposes, every voter commits and reveals):",
        f"{'clients':>8} {'proposers':>9} {'voters':>6} {'openRound':>10} {'propose':>8} {'commit':>7} "
        f"{'reveal':>7} {'settle':>10} {'round':>11} {'max call':>10} fits 30M",
    ]
    for g in results["gas"]:
        c = g["calls"]
        lines.append(
            f"{g['clients']:>8} {g['proposers']:>9} {g['voters']:>6} {c['openRound']['max']:>10} "
            f"{c.get('propose', {}).get('max', 0):>8} {c.get('commitVote', {}).get('max', 0):>7} "
            f"{c.get('revealVote', {}).get('max', 0):>7} {c['settle']['max']:>10} {g['round_gas']:>11} "
            f"{g['max_call_gas']:>10} {g['fits_block']}"
        )
    lines.append("")
    for m in results["memory"]:
        lines.append(f"peak RSS of a simulation at {m['clients']} clients: "
                     + (f"{m['peak_rss_mb']} MB ({m['rounds']} rounds, {m['wall_seconds']} s)" if "peak_rss_mb" in m else m["error"]))
    lines.append(f"anvil's own peak RSS over the whole bench: {results.get('anvil_peak_rss_mb')} MB")
    return "\n".join(lines)


def plot_results(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    gas = results["gas"]
    if gas:
        x = [g["clients"] for g in gas]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(x, [g["round_gas"] for g in gas], "o-", label="whole round (sum over its many blocks)")
        for name in ("openRound", "settle", "propose", "commitVote", "revealVote"):
            ax.plot(x, [g["calls"].get(name, {}).get("max", 0) for g in gas], "o--", label=f"{name} (max per call)")
        ax.axhline(30_000_000, color="red", lw=1, label="30M block gas limit")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("registered clients")
        ax.set_ylabel("gas")
        ax.set_title("Gas of one protocol round")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(folder / "gas.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("c_anvil", "protocol on anvil"), ("c_embedded", "protocol on embedded py-evm"),
                       ("d_fedavg", "plain FedAvg, no chain")):
        seconds = results[key]["round_seconds"]
        ax.plot(range(1, len(seconds) + 1), seconds, "o-", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel("seconds per round")
    ax.set_title(f"Round time at {results['c_anvil']['clients']} clients")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "rounds.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
