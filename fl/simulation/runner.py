"""One simulation run end to end: data, accounts, deployment, rounds, run folder.

Ape is reached only through fl.chain.ledger; this module wires the pieces together.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

from fl.chain.connection import (
    deployer_account,
    development_accounts,
    network_name,
    quiet_logging,
    token_conservation,
)
from fl.chain.ledger import ProtocolChain
from fl.chain.reproducible import isolated_embedded_run, pin_clock
from fl.protocol.params import ProtocolParams, to_tokens, to_units
from fl.learning.model import init_model, state_of
from fl.simulation.recorder import RunRecorder
from fl.defences.voter_review import rule_named
from fl.simulation.rounds import SimulationConfig, load_federated_data, make_clients, run_protocol
from fl.learning.store import UpdateStore, hash_state
from fl.learning.tasks import task_of


def protocol_params(config: SimulationConfig) -> ProtocolParams:
    # On a development chain time is free: periods are long enough for every client to act
    # even on the embedded chain, whose clock moves one second per transaction.
    period = max(600, 4 * config.clients)
    return ProtocolParams(
        proposer_fraction=config.proposer_fraction,
        proposer_stake=config.proposer_stake,
        voter_stake=config.voter_stake,
        proposer_reward=config.proposer_reward,
        proposal_period=period,
        commit_period=period,
        reveal_period=period,
    )


def run_simulation(config: SimulationConfig, folder: Path, progress: bool = True, keep_updates: bool = False) -> dict:
    """Run one simulation into `folder` and return its summary (also written to summary.json).

    On the embedded chain the run starts from a snapshot that is restored afterwards, so runs
    in one process do not see each other and a seeded run repeats exactly.
    """
    with isolated_embedded_run(config.seed):
        return _run_simulation(config, folder, progress, keep_updates)


def _run_simulation(config: SimulationConfig, folder: Path, progress: bool, keep_updates: bool) -> dict:
    started = time.perf_counter()
    quiet_logging()
    # The models are tiny: torch's intra-op threads only contend (measured: local training 4 ms
    # with one thread, 150 ms with two on a busy 2-core machine; docs/PERFORMANCE.md).
    import torch

    torch.set_num_threads(1)
    data = load_federated_data(config)
    params = protocol_params(config)
    recorder = RunRecorder(
        folder,
        {"simulation": asdict(config), "voter_score": task_of(config).score_name(config),
         "review_rule": asdict(rule_named(config.review)),
         "protocol": asdict(params), "python": platform.python_version()},
    )

    initial_hash = hash_state(state_of(task_of(config).make_model(data, config.seed)))
    deployer = deployer_account()
    clock_pinned = pin_clock()
    protocol = ProtocolChain.deploy(deployer, params, initial_hash)
    accounts = development_accounts(config.clients, funder=deployer)
    protocol.enroll(accounts, config.stake, minter=deployer)
    protocol.drain_events()
    clients = make_clients(data, [str(a.address) for a in accounts], config)
    store = UpdateStore(str(folder / "updates"), durable=False)  # the run's own scratch store

    bar = _progress_bar(config.rounds, progress)

    def on_round(record, extra):
        recorder.record_round(record, protocol.drain_events())
        if not keep_updates:
            _prune_proposals(store, protocol, record)
        bar.update(1)
        bar.set_postfix(
            acc=f"{record.test_accuracy:.3f}",
            decision=record.decision,
            honest=record.active_honest,
            malicious=record.active_malicious,
        )

    interrupted = False
    records, run = [], None
    try:
        records, run = run_protocol(config, data, clients, protocol, store, deployer, on_round=on_round)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    rows = recorder.rows
    holders = [c.address for c in clients]
    conservation = token_conservation(protocol, holders, to_units(config.stake) * len(holders))
    chain_hash = protocol.global_model_hash()
    client_hash = bytes.fromhex(rows[-1]["global_model_hash"][2:]) if rows else initial_hash
    # The chain records the parent hash a voter majority attested: the model the clients held at
    # the START of the last settled round (PROTOCOL_V2: the record lags one round).
    parent_hash = bytes.fromhex(rows[-1]["parent_model_hash"][2:]) if rows else initial_hash
    tokens_from_events = _stakes_from_events(recorder.folder, holders, to_units(config.stake))
    summary = {
        "rounds_requested": config.rounds,
        "rounds_completed": len(rows),
        "interrupted": interrupted,
        "final_test_accuracy": rows[-1]["test_accuracy"] if rows else math.nan,
        "final_test_balanced_accuracy": rows[-1]["test_balanced_accuracy"] if rows else math.nan,
        "final_test_auroc": rows[-1]["test_auroc"] if rows else math.nan,
        "accepted_rounds": sum(r["decision"] == "accepted" for r in rows),
        "rejected_rounds": sum(r["decision"] == "rejected" for r in rows),
        "active_honest": rows[-1]["active_honest"] if rows else None,
        "active_malicious": rows[-1]["active_malicious"] if rows else None,
        "malicious_clients": sum(c.malicious for c in clients),
        "honest_clients": sum(not c.malicious for c in clients),
        "tokens_conserved": conservation["conserved"],
        "token_totals": {k: v for k, v in conservation.items() if k != "conserved"},
        "pool_tokens": to_tokens(conservation["pool_balance"]),
        "global_model_hash_onchain": "0x" + chain_hash.hex(),
        "global_model_hash_clients": "0x" + client_hash.hex(),
        "global_model_hash_last_parent": "0x" + parent_hash.hex(),
        "global_model_hash_matches": chain_hash == parent_hash,
        "event_tokens_match_chain": tokens_from_events == {a: protocol.stake_of(a) for a in holders},
        "gas_by_call": {k: {"calls": len(v), "mean": sum(v) / len(v), "max": max(v)} for k, v in protocol.gas_by_call.items()},
        **review_summary(rows, clients),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "network": network_name(),
        "clock_pinned": clock_pinned,
    }
    return recorder.finish(summary, stake_required=config.proposer_stake)


def review_summary(rows: list[dict], clients) -> dict:
    """Per-proposal review over the run: share of proposals rejected (poisoned / honest) and the
    clients removed (honest / malicious) with the rounds they were removed in."""
    def total(name):
        return sum(int(r[name]) for r in rows)

    malicious, honest = total("malicious_accepted") + total("malicious_rejected"), total("honest_accepted") + total("honest_rejected")
    removal_rounds = {"honest": [], "malicious": []}
    for r in rows:
        removal_rounds["honest"] += [int(r["round"])] * int(r["removed_honest"])
        removal_rounds["malicious"] += [int(r["round"])] * int(r["removed_malicious"])
    return {
        "proposals_malicious": malicious,
        "proposals_honest": honest,
        "malicious_proposals_rejected_pct": 100.0 * total("malicious_rejected") / malicious if malicious else math.nan,
        "honest_proposals_rejected_pct": 100.0 * total("honest_rejected") / honest if honest else math.nan,
        "removed_honest": len(removal_rounds["honest"]),
        "removed_malicious": len(removal_rounds["malicious"]),
        "removal_rounds": removal_rounds,
    }


def _stakes_from_events(folder: Path, holders: list[str], initial: int) -> dict[str, int]:
    """Every client's stake rebuilt from the recorded ParticipantSettled events alone."""
    stakes = {a: initial for a in holders}
    with open(folder / "events.jsonl") as fh:
        for line in fh:
            event = json.loads(line)
            if event["event"] == "ParticipantSettled":
                args = event["args"]
                stakes[args["client"]] += args["rewarded"] - args["slashed"]
    return stakes


def _prune_proposals(store: UpdateStore, protocol, record) -> None:
    """Delete a settled round's proposal blobs, keeping the global model (saves disk in sweeps)."""
    keep = bytes.fromhex(record.global_model_hash[2:])
    for proposal in protocol.proposals_of(record.round):
        if proposal.update_hash != keep and store.has(proposal.update_hash):
            store.fs.rm(store.blob_path(proposal.update_hash))


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="rounds", unit="round", disable=not enabled, dynamic_ncols=True)
