"""No coordinator: `ape run deploy` once, then one `ape run client` process per participant on anvil.

One scenario (module fixture, about 3 minutes when warm): an anvil node on a free port, the protocol
deployed with short periods, 8 client processes (2 malicious) sharing a store folder, each
with its own account, data shard and state folder, running until round 3 is settled.
- Round 1: once every vote is revealed the node goes away (anvil stopped, its state dumped)
  and comes back 3 s later; the clients retry with backoff and settle the round.
- Round 2: one voter is killed (SIGKILL) while proposals are still open, so it never acts.
  Meanwhile a second `ape run deploy` (refused) and a client pointed at a contract that is
  not ours (refused before staking) run beside the fleet.
- Round 3: another voter is killed right after its commit is on chain and restarted at once
  with the same state folder; it must reveal the saved ballot and send nothing twice. The
  killed client of round 2 comes back with `--leave` and withdraws its whole stake.
The tests then read the chain (web3, not Ape: the test session's own provider is the
embedded chain) and the clients' state folders.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from ape import project
from web3 import Web3

from fl.protocol.votes import Decision, Role

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APE = str(BIN / "ape")
MNEMONIC = "test test test test test test test test test test test junk"
CLIENTS = 8
MALICIOUS = {3, 6}  # client numbers (accounts TEST::<n>)
ROUNDS = 3
PERIODS = {"proposal": 6, "commit": 12, "reveal": 24}  # seconds: time for a stuck tx (6 s) and a restart
PROPOSER_STAKE, VOTER_STAKE, INITIAL_STAKE = 8, 4, 64
UNITS = 10**18
# Waits are generous and per phase: on a cold machine (first torch import, empty page cache)
# 8 clients starting at once on 2 cores took minutes, which is start-up, not the protocol.
STARTUP_TIMEOUT = 900  # until all 8 clients have staked
PHASE_TIMEOUT = 300  # for each later step of the scenario


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_rpc(uri: str, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            requests.post(uri, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"anvil did not answer at {uri}")


class Processes:
    """Every process the scenario starts, so a failure never leaves one behind."""

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

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=20)

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


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    if not (BIN / "anvil").exists():
        pytest.fail(f"anvil not found in {BIN}: run `make setup` (it installs anvil 1.7.1 from npm there)")
    folder = tmp_path_factory.mktemp("decentralised")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    procs = Processes(folder)
    env = {**os.environ, "APE_FOUNDRY_HOST": uri, "STAKEFL_DEPLOYMENTS": str(folder / "deployments.json"),
           "NO_COLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    started = time.time()
    try:
        # Plain automine, as users run it. With many senders racing it can leave a transaction
        # unmined (foundry-rs/foundry#10122; 1 start in 5 here): the clients mine it themselves
        # after ape-config's 6 s acceptance timeout (fl.chain.errors.await_unmined).
        anvil_argv = [str(BIN / "anvil"), "--port", str(port), "--hardfork", "cancun", "--mnemonic", MNEMONIC,
                      "--accounts", "20", "--silent", "--state", str(folder / "anvil-state.json")]
        procs.start("anvil", anvil_argv, env)
        wait_for_rpc(uri)
        deploy = subprocess.run(
            [APE, "run", "deploy", "--network", "ethereum:local:foundry", "--account", "TEST::0",
             "--proposal-period", str(PERIODS["proposal"]), "--commit-period", str(PERIODS["commit"]),
             "--reveal-period", str(PERIODS["reveal"]), "--proposer-fraction", "0.25",
             "--proposer-stake", str(PROPOSER_STAKE), "--voter-stake", str(VOTER_STAKE)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
        )
        assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
        record = json.loads((folder / "deployments.json").read_text())["ethereum:local"]
        w3 = Web3(Web3.HTTPProvider(uri))
        voting = contract(w3, "VotingRound", record["voting"])
        registry = contract(w3, "StakeRegistry", record["registry"])

        def chain_state() -> str:
            round_id = voting.functions.currentRoundId().call()
            info = voting.functions.getRound(round_id).call() if round_id else None
            return (f"{registry.functions.activeCount().call()} active clients, round {round_id}, "
                    f"block time {w3.eth.get_block('latest')['timestamp']}, now {int(time.time())}, round record {info}")

        accounts = {n: Web3.to_checksum_address(a) for n, a in enumerate(_test_addresses(w3))}

        def client_argv(n: int) -> list[str]:
            argv = [APE, "run", "client", "--network", "ethereum:local:foundry", "--account", f"TEST::{n}",
                    "--data", f"lending:{n - 1}/{CLIENTS}", "--store", str(folder / "store"),
                    "--state", str(folder / f"state-{n}"), "--wait-for", str(CLIENTS),
                    "--until-round", str(ROUNDS), "--turn-seconds", "1.5", "--poll", "1"]
            return argv + (["--malicious"] if n in MALICIOUS else [])

        for n in range(1, CLIENTS + 1):
            procs.start(f"client-{n}", client_argv(n), env)
        number_of = {accounts[n]: n for n in range(1, CLIENTS + 1)}
        wait_until(lambda: registry.functions.activeCount().call() >= CLIENTS, STARTUP_TIMEOUT,
                   f"all {CLIENTS} clients to start and stake", procs, poll=0.5, state=chain_state)

        # Round 1: when every committed vote is revealed (or 4 s into the reveal period at the
        # latest), stop the node and bring it back.
        def all_revealed():
            if voting.functions.currentRoundId().call() < 1:
                return False
            info = voting.functions.getRound(1).call()
            return (info[10] > 0 and info[11] == info[10]) or time.time() >= info[5] + 4

        wait_until(all_revealed, PHASE_TIMEOUT, "round 1 votes to be revealed", procs, poll=0.2, state=chain_state)
        procs.kill("anvil", signal.SIGTERM)  # anvil dumps its state on exit
        time.sleep(3)
        procs.start("anvil", anvil_argv, env)
        wait_for_rpc(uri)

        # Round 2: kill a voter while proposals are open (it cannot have acted yet).
        wait_until(lambda: voting.functions.currentRoundId().call() >= 2, PHASE_TIMEOUT, "round 2 to open", procs,
                   poll=0.1, state=chain_state)
        voters_2 = voting.functions.votersOf(2).call()
        victim = number_of[voters_2[0]]
        procs.kill(f"client-{victim}")
        killed_at = int(time.time())
        proposal_deadline_2 = voting.functions.getRound(2).call()[4]
        # bad input beside the running fleet: a second deployment, a contract that is not ours
        procs.start("deploy-again", [APE, "run", "deploy", "--network", "ethereum:local:foundry",
                                     "--account", "TEST::0"], env)
        procs.start("not-ours", client_argv(9) + ["--voting-round", record["token"]], env)

        # Round 3: restart a live voter right after its commit is on chain.
        wait_until(lambda: voting.functions.currentRoundId().call() >= 3, PHASE_TIMEOUT, "round 3 to open", procs,
                   state=chain_state)
        procs.start("leave", client_argv(victim) + ["--leave"], env)
        voters_3 = [number_of[a] for a in voting.functions.votersOf(3).call()]
        restarted = next(n for n in voters_3 if n != victim)
        wait_until(lambda: voting.functions.getParticipant(3, accounts[restarted]).call()[1], PHASE_TIMEOUT,
                   f"client {restarted} to commit in round 3", procs, poll=0.1, state=chain_state)
        procs.kill(f"client-{restarted}")
        restarted_state = voting.functions.getParticipant(3, accounts[restarted]).call()
        procs.start(f"client-{restarted}", client_argv(restarted), env)

        # Everyone still running stops by itself once round 3 is settled.
        for name in [f"client-{n}" for n in range(1, CLIENTS + 1) if n != victim] + ["deploy-again", "not-ours", "leave"]:
            proc = procs.procs[name]
            wait_until(lambda: proc.poll() is not None, PHASE_TIMEOUT, f"{name} to finish", procs, poll=0.5,
                       state=chain_state)
        side_results = {name: (procs.log_text(name), procs.procs[name].returncode) for name in ("deploy-again", "not-ours", "leave")}
        yield {
            "folder": folder, "uri": uri, "w3": w3, "record": record, "procs": procs, "accounts": accounts,
            "victim": victim, "killed_at": killed_at, "proposal_deadline_2": proposal_deadline_2,
            "restarted": restarted, "restarted_state": restarted_state, "side": side_results,
            "seconds": time.time() - started,
        }
    finally:
        procs.stop_all()


def _test_addresses(w3: Web3) -> list[str]:
    return w3.eth.accounts[:CLIENTS + 1]


def _settled_events(s, round_id: int) -> dict[str, tuple]:
    voting = contract(s["w3"], "VotingRound", s["record"]["voting"])
    logs = voting.events.ParticipantSettled().get_logs(from_block=0, argument_filters={"roundId": round_id})
    return {log["args"]["client"]: (Role(log["args"]["role"]), log["args"]["won"], log["args"]["slashed"],
                                    log["args"]["rewarded"]) for log in logs}


def test_decentralised__all_clients_finish_cleanly(scenario):
    expected_codes = {n: 0 for n in range(1, CLIENTS + 1) if n != scenario["victim"]}

    actual_codes = {n: scenario["procs"].procs[f"client-{n}"].returncode for n in expected_codes}

    assert actual_codes == expected_codes, {n: scenario["procs"].log_text(f"client-{n}")[-1500:] for n in expected_codes}
    print(f"scenario took {scenario['seconds']:.0f} s")


def test_decentralised__killed_voter__round_settles_and_voter_slashed(scenario):
    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    victim = scenario["accounts"][scenario["victim"]]

    round_2 = voting.functions.getRound(2).call()
    participant = voting.functions.getParticipant(2, victim).call()
    outcome = _settled_events(scenario, 2)[victim]

    assert scenario["killed_at"] < scenario["proposal_deadline_2"]  # killed before it could act
    assert round_2[-1] is True  # settled after its deadline, without the victim
    assert participant[1] is False and participant[2] is False  # never committed nor revealed
    assert outcome == (Role.VOTER, False, VOTER_STAKE * UNITS, 0)


def test_decentralised__others_go_on_and_tokens_conserved(scenario):
    w3, record = scenario["w3"], scenario["record"]
    voting = contract(w3, "VotingRound", record["voting"])
    registry = contract(w3, "StakeRegistry", record["registry"])
    token = contract(w3, "TestToken", record["token"])
    accounts = scenario["accounts"]
    clients = [accounts[n] for n in range(1, CLIENTS + 1)]
    victim = accounts[scenario["victim"]]

    # every live client drawn in round 3 acted in full
    proposers_3 = voting.functions.proposersOf(3).call()
    voters_3 = voting.functions.votersOf(3).call()
    for address in proposers_3:
        if address != victim:
            assert voting.functions.getParticipant(3, address).call()[1] is True, address
    for address in voters_3:
        if address != victim:
            assert voting.functions.getParticipant(3, address).call()[2] is True, address
    assert voting.functions.currentRoundId().call() == ROUNDS
    assert voting.functions.getRound(ROUNDS).call()[-1] is True

    # conservation: every token minted is in a wallet, the registry or the pool
    holders = [accounts[0], *clients]
    wallets = sum(token.functions.balanceOf(a).call() for a in holders)
    registry_balance = token.functions.balanceOf(record["registry"]).call()
    pool_balance = token.functions.balanceOf(record["pool"]).call()
    stakes = sum(registry.functions.stakeOf(a).call() for a in clients)
    assert token.functions.totalSupply().call() == CLIENTS * INITIAL_STAKE * UNITS
    assert wallets + registry_balance + pool_balance == CLIENTS * INITIAL_STAKE * UNITS
    assert registry_balance == stakes == registry.functions.totalStaked().call()

    # each client's stake plus wallet is its initial stake plus its settled rewards minus its slashes
    for address in clients:
        change = sum(e[3] - e[2] for r in range(1, ROUNDS + 1) for a, e in _settled_events(scenario, r).items()
                     if a == address)
        held = registry.functions.stakeOf(address).call() + token.functions.balanceOf(address).call()
        assert held == INITIAL_STAKE * UNITS + change, address


def test_decentralised__restarted_voter__reveals_without_acting_twice(scenario):
    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    n = scenario["restarted"]
    address = scenario["accounts"][n]
    journal = [json.loads(line) for line in (scenario["folder"] / f"state-{n}" / "journal.jsonl").read_text().splitlines()]

    attempts = [(e["action"], e["round"]) for e in journal if e["status"] == "sending"]
    sent = [(e["action"], e["round"]) for e in journal if e["status"] == "sent"]
    participant = voting.functions.getParticipant(3, address).call()
    second_life = scenario["procs"].logs[f"client-{n}"][-1].read_text()

    assert scenario["restarted_state"][1] is True and scenario["restarted_state"][2] is False  # committed, not revealed
    assert participant[2] is True  # revealed after the restart
    # killed while its commit was in flight: one attempt, whose confirmation it did not live to log
    assert attempts.count(("commit", 3)) == 1 and attempts.count(("reveal", 3)) == 1
    assert ("reveal", 3) in sent
    assert len(attempts) == len(set(attempts))  # nothing was attempted twice, in any round
    assert attempts.count(("deposit", 0)) == 1
    assert "already staked" in second_life and "commit sent" not in second_life and "reveal sent" in second_life


def test_client_leave__withdraws_the_whole_stake(scenario):
    w3, record = scenario["w3"], scenario["record"]
    registry = contract(w3, "StakeRegistry", record["registry"])
    token = contract(w3, "TestToken", record["token"])
    address = scenario["accounts"][scenario["victim"]]
    output, code = scenario["side"]["leave"]

    assert code == 0, output[-2000:]
    assert "left: withdrew" in output
    assert registry.functions.stakeOf(address).call() == 0
    assert token.functions.balanceOf(address).call() > 0


def test_decentralised__clients_hold_the_recorded_global_model(scenario):
    from fl.learning.store import UpdateStore

    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    recorded = bytes(voting.functions.globalModelHash().call())
    store = UpdateStore(str(scenario["folder"] / "store"))

    adopted = {
        n: json.loads((scenario["folder"] / f"state-{n}" / "state.json").read_text())["global_hash"]
        for n in range(1, CLIENTS + 1) if n != scenario["victim"]
    }

    assert store.has(recorded)
    assert set(adopted.values()) == {recorded.hex()}
    decisions = [Decision(voting.functions.getRound(r).call()[-2]) for r in range(1, ROUNDS + 1)]
    assert all(d in (Decision.ACCEPTED, Decision.REJECTED) for d in decisions)


def test_decentralised__node_away_and_back__clients_retry(scenario):
    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    logs = {n: scenario["procs"].log_text(f"client-{n}") for n in range(1, CLIENTS + 1)}

    retried = [n for n, text in logs.items() if "node unreachable" in text]

    assert retried  # at least the clients polling during the outage saw it and retried
    assert voting.functions.getRound(1).call()[-1] is True


def test_deploy__again_without_force__refused(scenario):
    output, code = scenario["side"]["deploy-again"]

    assert code != 0
    assert "already records a live deployment" in output
    assert "Traceback" not in output


def test_client__address_not_ours__clear_error_before_staking(scenario):
    output, code = scenario["side"]["not-ours"]
    registry = contract(scenario["w3"], "StakeRegistry", scenario["record"]["registry"])
    address = scenario["w3"].eth.accounts[9]

    assert code != 0
    assert "is not this project's VotingRound" in output
    assert "Traceback" not in output
    assert registry.functions.stakeOf(address).call() == 0
