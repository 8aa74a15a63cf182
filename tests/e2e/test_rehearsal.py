"""The public-testnet rehearsal (issue 17): a chain that mines a block every 2 s on its own clock.

- The rehearsal network `ethereum:rehearsal` (ape-config.yaml: a custom network, Ape's node
  provider, never "local"): `python tools/rehearsal.py chain/fund/token`, deploy with a keystore
  account and --token, 5 `ape run client` processes with keystore accounts (one malicious) until
  round 2 is settled; a voter is killed right after its round-1 commit is on chain and restarted;
  a client without enough ether stops with one line. Tokens conserved, nothing sent twice
  (journals and nonces), no mining call (the node provider has none: it would have killed them).
tests/e2e/test_interval_mining.py covers deploy through the foundry provider and dropped or
unmineable transactions. Waits are per phase and generous (a loaded 2-core machine); a timeout
shows the chain state and every log's tail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_utils import keccak
from web3 import Web3

from e2e_processes import APE, BIN, ROOT, Processes, contract, free_port, wait_for_rpc, wait_until

CLIENTS = 5
MALICIOUS = 5
ROUNDS = 2
PERIODS = {"proposal": 24, "commit": 24, "reveal": 72}  # seconds; reveal covers a restart under load
STAKE, TOKENS_EACH = 64, 100
UNITS = 10**18
STARTUP_TIMEOUT = 900
PHASE_TIMEOUT = 400
PASSPHRASE = "rehearsal passphrase"


def fields(voting, function: str, values) -> dict:
    """A struct returned by `function` as {field name: value} (names from the ABI, not positions)."""
    (output,) = voting.get_function_by_name(function).abi["outputs"]
    return {c["name"]: v for c, v in zip(output["components"], values)}


def run(argv: list[str], env: dict, timeout: float = STARTUP_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def anvil_env(folder: Path) -> dict:
    return {**os.environ, "STAKEFL_DEPLOYMENTS": str(folder / "deployments.json"), "NO_COLOR": "1",
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


# ---------------------------------------------------------------------- the rehearsal network
def _keystore(alias: str, key: bytes):
    from ape_accounts.accounts import import_account_from_private_key

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_account_from_private_key(alias, PASSPHRASE, "0x" + key.hex())


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    if not (BIN / "anvil").exists():
        pytest.fail(f"anvil not found in {BIN}: run `make setup`")
    folder = tmp_path_factory.mktemp("rehearsal")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    network = f"ethereum:rehearsal:{uri}"
    procs = Processes(folder)
    tag = f"stakefl_rehearsal_{os.getpid()}"
    names = ["deployer", *[f"client{n}" for n in range(1, CLIENTS + 1)], "poor"]
    keystores = {name: _keystore(f"{tag}_{name}", keccak(f"{tag} {name}".encode())) for name in names}
    env = anvil_env(folder)
    env.update({f"APE_ACCOUNTS_{a.alias}_PASSPHRASE": PASSPHRASE for a in keystores.values()})
    address = {name: str(a.address) for name, a in keystores.items()}
    started = time.time()
    try:
        procs.start("anvil", [sys.executable, str(ROOT / "tools" / "rehearsal.py"), "chain", "--port", str(port)], env)
        wait_for_rpc(uri)
        helper = [sys.executable, str(ROOT / "tools" / "rehearsal.py")]
        funded = run(helper + ["fund", "--uri", uri, *[address[n] for n in names if n != "poor"]], env)
        assert funded.returncode == 0, funded.stderr
        poor = run(helper + ["fund", "--uri", uri, "--ether", "0.000001", address["poor"]], env)
        assert poor.returncode == 0, poor.stderr
        made = run(helper + ["token", "--uri", uri, "--tokens", str(TOKENS_EACH),
                             *[address[n] for n in names if n.startswith("client") or n == "poor"]], env)
        assert made.returncode == 0, made.stderr
        token_address = made.stdout.strip().splitlines()[-1]

        deploy_without_token = run([APE, "run", "deploy", "--network", network, "--account", keystores["deployer"].alias], env)
        deploy = run([APE, "run", "deploy", "--network", network, "--account", keystores["deployer"].alias,
                      "--token", token_address, "--proposal-period", str(PERIODS["proposal"]),
                      "--commit-period", str(PERIODS["commit"]), "--reveal-period", str(PERIODS["reveal"])], env)
        assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
        deployed_at = time.time()
        record = json.loads((folder / "deployments.json").read_text())["ethereum:rehearsal"]
        w3 = Web3(Web3.HTTPProvider(uri))
        voting = contract(w3, "VotingRound", record["voting"])
        registry = contract(w3, "StakeRegistry", record["registry"])

        def chain_state() -> str:
            r = voting.functions.currentRoundId().call()
            info = fields(voting, "getRound", voting.functions.getRound(r).call()) if r else None
            return (f"{registry.functions.activeCount().call()} active, round {r}, head {w3.eth.block_number}, "
                    f"block time {w3.eth.get_block('latest')['timestamp']}, now {int(time.time())}, round {info}")

        def client_argv(name: str) -> list[str]:
            n = int(name.removeprefix("client")) if name.startswith("client") else CLIENTS + 1
            argv = [APE, "run", "client", "--network", network, "--account", keystores[name].alias,
                    "--data", f"lending:{n - 1}/{CLIENTS + 1}", "--store", str(folder / "store"),
                    "--state", str(folder / f"state-{name}"), "--wait-for", str(CLIENTS), "--stake", str(STAKE),
                    "--until-round", str(ROUNDS), "--turn-seconds", "3", "--poll", "2"]
            return argv + (["--malicious"] if name == f"client{MALICIOUS}" else [])

        clients = [f"client{n}" for n in range(1, CLIENTS + 1)]
        for name in clients:
            procs.start(name, client_argv(name), env)
        procs.start("poor", client_argv("poor"), env)
        wait_until(lambda: registry.functions.activeCount().call() >= CLIENTS, STARTUP_TIMEOUT,
                   f"all {CLIENTS} clients to stake", procs, state=chain_state)
        staked_at = time.time()

        # round 1: kill a voter right after its commit is on chain, restart it with the same state
        wait_until(lambda: voting.functions.currentRoundId().call() >= 1, PHASE_TIMEOUT, "round 1 to open", procs,
                   state=chain_state)
        by_address = {address[n]: n for n in clients}
        victim = by_address[voting.functions.votersOf(1).call()[0]]
        wait_until(lambda: voting.functions.getParticipant(1, address[victim]).call()[1], PHASE_TIMEOUT,
                   f"{victim} to commit in round 1", procs, poll=0.2, state=chain_state)
        procs.kill(victim)
        killed_at = time.time()
        victim_state = fields(voting, "getParticipant", voting.functions.getParticipant(1, address[victim]).call())
        procs.start(victim, client_argv(victim), env)

        for name in [*clients, "poor"]:
            proc = procs.procs[name]
            wait_until(lambda: proc.poll() is not None, PHASE_TIMEOUT * 2, f"{name} to finish", procs,
                       state=chain_state)
        yield {
            "folder": folder, "w3": w3, "record": record, "procs": procs, "address": address, "clients": clients,
            "victim": victim, "victim_state": victim_state, "killed_at": killed_at,
            "deploy_without_token": deploy_without_token,
            "token": token_address, "seconds": time.time() - started,
            "phases": {"deploy": deployed_at - started, "stake": staked_at - deployed_at,
                       "rounds": time.time() - staked_at},
        }
    finally:
        procs.stop_all()
        for account in keystores.values():
            account.keyfile_path.unlink(missing_ok=True)


def test_rehearsal__clients_finish_two_rounds_without_mining_calls(rehearsal):
    procs = rehearsal["procs"]
    voting = contract(rehearsal["w3"], "VotingRound", rehearsal["record"]["voting"])
    codes = {n: procs.procs[n].returncode for n in rehearsal["clients"]}
    logs = {n: procs.log_text(n) for n in rehearsal["clients"]}

    assert codes == {n: 0 for n in rehearsal["clients"]}, {n: logs[n][-1500:] for n in codes}
    assert voting.functions.currentRoundId().call() == ROUNDS
    for r in range(1, ROUNDS + 1):
        assert fields(voting, "getRound", voting.functions.getRound(r).call())["settled"] is True, r
    for name, text in logs.items():
        assert "Traceback" not in text and "mining a block" not in text and "not supported" not in text, name
    print(f"rehearsal took {rehearsal['seconds']:.0f} s: {rehearsal['phases']}")


def test_rehearsal__restarted_voter_reveals_and_nothing_is_sent_twice(rehearsal):
    w3, folder, address = rehearsal["w3"], rehearsal["folder"], rehearsal["address"]
    voting = contract(w3, "VotingRound", rehearsal["record"]["voting"])
    victim = rehearsal["victim"]
    second_life = rehearsal["procs"].logs[victim][-1].read_text()

    assert rehearsal["victim_state"]["acted"] is True and rehearsal["victim_state"]["revealed"] is False
    assert voting.functions.getParticipant(1, address[victim]).call()[2] is True  # revealed after the restart
    assert "already staked" in second_life
    assert "round 1: commit sent" not in second_life and "round 1: reveal sent" in second_life
    for name in rehearsal["clients"]:
        journal = [json.loads(line) for line in (folder / f"state-{name}" / "journal.jsonl").read_text().splitlines()]
        attempts = [(e["action"], e["round"]) for e in journal if e["status"] == "sending"]
        sent = [(e["action"], e["round"]) for e in journal if e["status"] == "sent"]
        # each action mined once; an attempt the gas estimate refused (the chain's clock lags the
        # wall clock by up to a block, e.g. a reveal a second early) sent nothing and may be retried
        assert len(sent) == len(set(sent)), (name, journal)
        # every attempt used at most one nonce: a resend with a new nonce would push it past them
        assert len(sent) <= w3.eth.get_transaction_count(address[name]) <= len(attempts), (name, journal)
    victim_journal = [json.loads(line) for line in (folder / f"state-{victim}" / "journal.jsonl").read_text().splitlines()]
    commits = [e for e in victim_journal if (e["action"], e["round"]) == ("commit", 1)]
    # none even attempted after the restart (before it, an attempt the chain refused because its
    # clock had not reached the commit phase yet may have been retried); the kill may land between
    # the commit being mined and its "sent" entry
    assert [e["status"] for e in commits].count("sent") <= 1, commits
    assert not [e for e in commits if e["time"] > rehearsal["killed_at"]], commits


def test_rehearsal__tokens_conserved(rehearsal):
    w3, record, address = rehearsal["w3"], rehearsal["record"], rehearsal["address"]
    token = contract(w3, "TestToken", rehearsal["token"])
    registry = contract(w3, "StakeRegistry", record["registry"])
    holders = [address[n] for n in rehearsal["clients"]] + [address["poor"]]

    wallets = sum(token.functions.balanceOf(a).call() for a in holders)
    registry_balance = token.functions.balanceOf(record["registry"]).call()
    pool_balance = token.functions.balanceOf(record["pool"]).call()
    stakes = sum(registry.functions.stakeOf(a).call() for a in holders)

    assert token.functions.totalSupply().call() == len(holders) * TOKENS_EACH * UNITS
    assert wallets + registry_balance + pool_balance == len(holders) * TOKENS_EACH * UNITS
    assert registry_balance == stakes == registry.functions.totalStaked().call()
    assert stakes > 0


def test_rehearsal__deploy_without_token_and_client_without_ether__one_line_errors(rehearsal):
    deploy = rehearsal["deploy_without_token"]
    poor_output = rehearsal["procs"].log_text("poor")
    registry = contract(rehearsal["w3"], "StakeRegistry", rehearsal["record"]["registry"])

    assert deploy.returncode != 0 and "--token is required" in deploy.stdout + deploy.stderr
    assert rehearsal["procs"].procs["poor"].returncode != 0
    assert "ether on ethereum:rehearsal" in poor_output and "fund the account" in poor_output, poor_output[-2000:]
    assert "Traceback" not in poor_output
    assert registry.functions.stakeOf(rehearsal["address"]["poor"]).call() == 0
