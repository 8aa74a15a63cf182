"""One simulation run end to end: data, accounts, deployment, rounds, run folder.

Ape is reached only through fl.chain.ledger; this module wires the pieces together.

Stopping: SIGINT (Ctrl-C) or SIGTERM during a run lets the current round finish, then the
summary and plots are written for the rounds done (``summary["stop_signal"]`` names the
signal; a second signal stops at once, still writing the folder). Resuming: see ``resume_simulation``.
"""

from __future__ import annotations

import math
import platform
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from fl.chain.connection import (
    deployer_account,
    development_accounts,
    network_name,
    provider_started_node,
    quiet_logging,
    token_conservation,
)
from fl.chain.ledger import ProtocolChain
from fl.chain.reproducible import isolated_embedded_run, pin_clock
from fl.protocol.params import ProtocolParams, to_tokens, to_units
from fl.learning.model import init_model, state_of
from fl.simulation.recorder import CONFIG, ResumeMismatch, RunRecorder, check_new_folder, committed_events
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


EMBEDDED_CHAIN = "ethereum:local:test"


class CannotResume(RuntimeError):
    """The run folder cannot be continued (the message says why and what to run instead)."""


class _StopRequested(Exception):
    """Raised after a round is recorded once SIGINT/SIGTERM arrived."""


class SignalStop:
    """While active (main thread only): the first SIGINT/SIGTERM is remembered, so the round loop
    stops after the current round; a second one raises KeyboardInterrupt at once. Ape's own
    handlers (sys.exit(130/143) mid-round) are restored afterwards."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextmanager
    def active(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


def run_simulation(config: SimulationConfig, folder: Path, progress: bool = True, keep_updates: bool = False) -> dict:
    """Run one simulation into `folder` and return its summary (also written to summary.json).

    On the embedded chain the run starts from a snapshot that is restored afterwards, so runs
    in one process do not see each other and a seeded run repeats exactly. A non-empty `folder`
    is refused (``RunFolderExists``) before anything slow happens.
    """
    check_new_folder(folder)
    with isolated_embedded_run(config.seed):
        return _run_simulation(config, folder, progress, keep_updates)


def resume_config(folder: Path) -> tuple[SimulationConfig, str | None]:
    """The configuration and network recorded in a run folder's config.json."""
    import json

    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CannotResume(f"{folder} is not a run folder (no {CONFIG}): pass the folder of an `ape run simulate` run")
    recorded = json.loads(path.read_text())
    if "simulation" not in recorded:
        raise CannotResume(f"{folder} was not written by `ape run simulate` (a baseline run?): nothing to resume")
    return SimulationConfig(**recorded["simulation"]), recorded.get("network")


def rerun_command(config: SimulationConfig, network: str | None) -> str:
    """The `ape run simulate` command that runs `config` again from scratch."""
    defaults = SimulationConfig()
    options = [f"--{name.replace('_', '-')} {value}" for name, value in asdict(config).items()
               if value != getattr(defaults, name) and value is not None and name != "batch_size"]
    network_option = [f"--network {network}"] if network else []
    return " ".join(["ape run simulate", *options, *network_option, "--output NEW_FOLDER"])


def resume_simulation(folder: Path, progress: bool = True, keep_updates: bool = False) -> dict:
    """Continue the run in `folder` from its last committed round.

    The chain of the stopped process is gone (the embedded chain, or the anvil the provider
    started for it), so this reruns the recorded configuration from scratch on a fresh chain of
    the same network, checks that every recorded round comes out identical (metrics but wall
    time, and every event byte for byte; else ``ResumeMismatch`` and the folder is left as it
    was), then records the remaining rounds. That needs a chain made afresh by this process,
    where a seeded run repeats exactly: the embedded chain, or an anvil the provider started
    itself (seeded draws, pinned clock). On any other chain (a node someone else runs, a public
    network) the state cannot be proven to match: ``CannotResume`` with the command to rerun it.
    """
    config, recorded_network = resume_config(folder)
    recorded_network = recorded_network or EMBEDDED_CHAIN  # folders written before config.json named it
    here = network_name()
    if here != recorded_network:
        raise CannotResume(
            f"{folder} ran on {recorded_network}: resume it there, "
            f"`ape run simulate --resume {folder} --network {recorded_network}`"
        )
    if not provider_started_node():
        raise CannotResume(
            f"{folder} ran on a {here} node this command did not start, whose state cannot be proven to "
            f"match: rerun it from scratch with `{rerun_command(config, recorded_network)}`"
        )
    with isolated_embedded_run(config.seed):
        return _run_simulation(config, folder, progress, keep_updates, resume=True)


def _run_simulation(config: SimulationConfig, folder: Path, progress: bool, keep_updates: bool, resume: bool = False) -> dict:
    started = time.perf_counter()
    quiet_logging()
    # The models are tiny: torch's intra-op threads only contend (measured: local training 4 ms
    # with one thread, 150 ms with two on a busy 2-core machine; docs/PERFORMANCE.md).
    import torch

    torch.set_num_threads(1)
    stop = SignalStop()
    with stop.active():
        return _run_until_stopped(config, folder, progress, keep_updates, resume, stop, started)


def _run_until_stopped(config, folder, progress, keep_updates, resume, stop: SignalStop, started) -> dict:
    params = protocol_params(config)
    recorder = RunRecorder.reopen(folder) if resume else None
    resumed_at = len(recorder.replay_pending) if resume else None
    if resume and resumed_at >= config.rounds:
        raise CannotResume(f"{folder} already holds all {config.rounds} rounds: nothing to resume")
    data = load_federated_data(config)
    if recorder is None:
        recorder = RunRecorder(
            folder,
            {"simulation": asdict(config), "voter_score": task_of(config).score_name(config),
             "review_rule": asdict(rule_named(config.review)),
             "protocol": asdict(params), "python": platform.python_version(), "network": network_name()},
        )

    initial_hash = hash_state(state_of(task_of(config).make_model(data, config.seed)))
    deployer = deployer_account()
    clock_pinned = pin_clock()
    protocol = ProtocolChain.deploy(deployer, params, initial_hash)
    accounts = development_accounts(config.clients, funder=deployer)
    protocol.enroll(accounts, config.stake, minter=deployer)
    protocol.drain_events()
    clients = make_clients(data, [str(a.address) for a in accounts], config)
    recorder.record_participants(clients)
    store = UpdateStore(str(folder / "updates"), durable=False)  # the run's own scratch store

    bar = _progress_bar(config.rounds, progress)

    def on_round(record, extra):
        recorder.record_round(record, protocol.drain_events())
        if not keep_updates:
            _prune_proposals(store, protocol, record)
        if stop.signum is not None and not recorder.replay_pending:
            raise _StopRequested
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
    except (KeyboardInterrupt, _StopRequested):
        interrupted = True
    finally:
        bar.close()
    if recorder.replay_pending:  # stopped while replaying: the folder keeps its recorded rounds
        raise CannotResume(f"stopped before the recorded rounds were replayed: {folder} is unchanged")
    rows = recorder.rows
    holders = [c.address for c in clients]
    client_hash = bytes.fromhex(rows[-1]["global_model_hash"][2:]) if rows else initial_hash
    # The chain records the parent hash a voter majority attested: the model the clients held at
    # the START of the last settled round (PROTOCOL_V2: the record lags one round).
    parent_hash = bytes.fromhex(rows[-1]["parent_model_hash"][2:]) if rows else initial_hash
    try:
        facts = _chain_facts(protocol, holders, to_units(config.stake), parent_hash, recorder.folder)
    except Exception:  # noqa: BLE001 - e.g. Ctrl-C also stopped the anvil this run used
        if not interrupted:
            raise
        facts = {"chain_unreachable": True}  # the folder is still written for the rounds done
    summary = {
        "rounds_requested": config.rounds,
        "rounds_completed": len(rows),
        "interrupted": interrupted,
        "stop_signal": stop.name if interrupted else None,
        "resumed_at_round": resumed_at,
        "final_test_accuracy": rows[-1]["test_accuracy"] if rows else math.nan,
        "final_test_balanced_accuracy": rows[-1]["test_balanced_accuracy"] if rows else math.nan,
        "final_test_auroc": rows[-1]["test_auroc"] if rows else math.nan,
        "accepted_rounds": sum(r["decision"] == "accepted" for r in rows),
        "rejected_rounds": sum(r["decision"] == "rejected" for r in rows),
        "active_honest": rows[-1]["active_honest"] if rows else None,
        "active_malicious": rows[-1]["active_malicious"] if rows else None,
        "malicious_clients": sum(c.malicious for c in clients),
        "honest_clients": sum(not c.malicious for c in clients),
        "global_model_hash_clients": "0x" + client_hash.hex(),
        "global_model_hash_last_parent": "0x" + parent_hash.hex(),
        **facts,
        "gas_by_call": {k: {"calls": len(v), "mean": sum(v) / len(v), "max": max(v)} for k, v in protocol.gas_by_call.items()},
        **review_summary(rows, clients),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "network": network_name(),
        "clock_pinned": clock_pinned,
        "contracts": {name: str(getattr(protocol, attr).address) for name, attr in
                      (("TestToken", "token"), ("StakeRegistry", "registry"), ("ProposalPool", "pool"),
                       ("VotingRound", "voting"))},
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


def _chain_facts(protocol, holders, stake_units: int, expected_hash: bytes, folder: Path) -> dict:
    """What the chain says at the end, checked against the clients' view and the recorded events."""
    conservation = token_conservation(protocol, holders, stake_units * len(holders))
    chain_hash = protocol.global_model_hash()
    tokens_from_events = _stakes_from_events(folder, holders, stake_units)
    return {
        "tokens_conserved": conservation["conserved"],
        "token_totals": {k: v for k, v in conservation.items() if k != "conserved"},
        "pool_tokens": to_tokens(conservation["pool_balance"]),
        "global_model_hash_onchain": "0x" + chain_hash.hex(),
        "global_model_hash_matches": chain_hash == expected_hash,
        "event_tokens_match_chain": tokens_from_events == {a: protocol.stake_of(a) for a in holders},
    }


def _stakes_from_events(folder: Path, holders: list[str], initial: int) -> dict[str, int]:
    """Every client's stake rebuilt from the recorded ParticipantSettled events alone."""
    stakes = {a: initial for a in holders}
    for event in committed_events(folder):
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
