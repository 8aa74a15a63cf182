"""ape run bench: how fast the on-chain simulation runs, next to the chain's own speed, and its gas.

Measures in one run, on this machine (docs/PERFORMANCE.md explains every figure):
  (a) raw capacity: tx/s of a plain JSON-RPC loop against an anvil node the bench starts;
  (b) protocol tx/s of the project's chain adapter (fl/chain/ledger.py + fl/chain/txpath.py) during a simulation;
  (c) rounds/s of the full protocol at --clients on that anvil and on the embedded provider;
  (d) rounds/s of the same federated rounds without the chain (plain FedAvg, same training);
  the ratios (b)/(a) and (c anvil)/(d); gas of every protocol call and of a whole round at
  --gas-clients registered clients (table and PNG); peak memory (RSS) of a simulation at
  --memory-clients clients. Writes bench.json, gas.png and rounds.png to --output.

The measurements are fl/experiments/bench.py; the gas of a round comes from scripts/_gas_scaling.py.
"""

from __future__ import annotations

import time

import click


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        numbers = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {value!r}") from None
    if any(n < 2 for n in numbers):
        raise click.BadParameter("every client count must be at least 2")
    return numbers


@click.command(short_help="Measure chain throughput, rounds per second, gas scaling and memory")
@click.option("--clients", default=50, show_default=True, type=click.IntRange(min=3),
              help="Clients of the timed simulations (c), (b) and the FedAvg baseline (d).")
@click.option("--rounds", default=30, show_default=True, type=click.IntRange(min=2),
              help="Rounds of the timed simulation on anvil and of the FedAvg baseline.")
@click.option("--embedded-rounds", default=6, show_default=True, type=click.IntRange(min=2),
              help="Rounds of the timed simulation on the embedded (py-evm) chain.")
@click.option("--raw-txs", default=1000, show_default=True, type=click.IntRange(min=10),
              help="Transfers of the plain JSON-RPC loop (a).")
@click.option("--gas-clients", default="10,50,200,1000", show_default=True, callback=_int_list,
              help="Registered clients at which to measure the gas of a round (comma-separated).")
@click.option("--memory-clients", default="50,1000", show_default=True, callback=_int_list,
              help="Clients of the simulations whose peak memory is measured (comma-separated; '' skips).")
@click.option("--memory-rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Rounds of each memory simulation.")
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="Folder for bench.json and the plots. Default: runs/bench-<time>.")
def cli(clients, rounds, embedded_rounds, raw_txs, gas_clients, memory_clients, memory_rounds, output):
    """Start an anvil node (anvil from PATH, --hardfork cancun, no step tracing), measure every
    figure on it and on the embedded chain, print a table and write bench.json + PNGs.

    Quick run: ape run bench --rounds 5 --embedded-rounds 2 --raw-txs 200 --gas-clients 10,50 --memory-clients 50
    """
    from fl.experiments.bench import BenchError, run_bench

    try:
        run_bench(clients, rounds, embedded_rounds, raw_txs, gas_clients, memory_clients, memory_rounds, output,
                  round_gas=round_gas, echo=click.echo)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None


def round_gas(uri: str, sizes: list[int]) -> list[dict]:
    """Gas of every call of one whole round at each size (scripts/_gas_scaling.measure_round_gas:
    every proposer proposes, every voter commits and reveals, one dissents)."""
    from ape import accounts, networks, project

    from scripts._gas_scaling import anvil_account_factory, measure_round_gas

    from fl.chain.connection import quiet_logging

    quiet_logging()
    out = []
    with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": uri}):
        factory = anvil_account_factory(accounts)
        for n in sizes:
            started = time.perf_counter()
            result = measure_round_gas(project, factory, clients=n)
            result["seconds"] = round(time.perf_counter() - started, 1)
            out.append(result)
    return out
