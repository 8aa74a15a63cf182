"""Chains that mine on their own clock (issue 17), each test with its own anvil --block-time 1.

- `ape run deploy` through Ape's foundry provider: it returned a receipt not yet in a block, and
  deploy failed at once with "did not create a contract" (fixed in scripts/deploy.py, which now
  waits for each block there through fl.chain.sending).
- fl.chain.sending.transact: a first transaction the node never got (dropped), or one whose max
  fee is below the base fee (never mineable as sent), is replaced with the same nonce and higher
  fees, and each action is mined exactly once.
The full rehearsal (5 clients, keystore accounts) is tests/e2e/test_rehearsal.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from e2e_processes import APE, BIN, ROOT, Processes, contract, free_port, wait_for_rpc

TIMEOUT = 900  # seconds for one `ape run` or script on a loaded machine


def run(argv: list[str], env: dict, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def anvil_env(folder: Path, uri: str | None = None) -> dict:
    env = {**os.environ, "STAKEFL_DEPLOYMENTS": str(folder / "deployments.json"), "NO_COLOR": "1",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    if uri:
        env["APE_FOUNDRY_HOST"] = uri
    return env


# ---------------------------------------------------------------------- anvil --block-time, foundry provider
def test_deploy__anvil_mining_every_second_through_the_foundry_provider__waits_for_blocks(tmp_path):
    # issue 17: deploy failed at once with "'0x...' did not create a contract"
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    procs = Processes(tmp_path)
    env = anvil_env(tmp_path, uri)
    try:
        procs.start("anvil", [str(BIN / "anvil"), "--port", str(port), "--block-time", "1", "--hardfork", "cancun",
                              "--silent"], env)
        wait_for_rpc(uri)
        deploy = run([APE, "run", "deploy", "--network", "ethereum:local:foundry", "--account", "TEST::0"], env)
        w3 = Web3(Web3.HTTPProvider(uri))

        assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
        record = json.loads((tmp_path / "deployments.json").read_text())["ethereum:local"]
        for name in ("token", "registry", "pool", "voting"):
            assert len(w3.eth.get_code(Web3.to_checksum_address(record[name]))) > 0, name
        registry = contract(w3, "StakeRegistry", record["registry"])
        assert registry.functions.votingRound().call() == Web3.to_checksum_address(record["voting"])
    finally:
        procs.stop_all()


# ---------------------------------------------------------------------- dropped and underpriced transactions
SENDER_SCRIPT = """
import json, sys
from ape import accounts, networks, project
from eth_account import Account
from eth_account import Account
from eth_utils import keccak
import fl.chain.sending as sending

uri, mode = sys.argv[1], sys.argv[2]
key = keccak(b"stakefl sending test")
with networks.parse_network_choice("ethereum:rehearsal:" + uri) as provider:
    account = accounts.init_test_account(10_001, Account.from_key(key).address, "0x" + key.hex())
    broadcasts = []
    if mode == "dropped":  # the node never gets the first transaction
        real = sending._broadcast
        def lossy(web3, raw, address):
            broadcasts.append(raw)
            if len(broadcasts) > 1:
                real(web3, raw, address)
        sending._broadcast = lossy
    else:  # the first attempt's max fee is below the base fee: never mineable as sent
        sending.initial_fees = lambda base_fee: (0, max(1, base_fee // 4))
    token = sending.deploy(account, project.TestToken)
    sending.transact(account, token.mint, account.address, 5)
    print("RESULT " + json.dumps({"address": str(account.address), "token": str(token.address),
                                  "nonce": provider.web3.eth.get_transaction_count(account.address, "latest"),
                                  "balance": int(token.balanceOf(account.address))}))
"""


@pytest.mark.parametrize("mode, logged", [("dropped", "gone from the node"), ("underpriced", "replacing it")])
def test_transact__dropped_or_unmineable_first_attempt__replaced_with_the_same_nonce_and_mined_once(
        tmp_path, mode, logged):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    procs = Processes(tmp_path)
    env = anvil_env(tmp_path)
    helper = [sys.executable, str(ROOT / "tools" / "rehearsal.py")]
    sender = Web3.to_checksum_address(Account.from_key(keccak(b"stakefl sending test")).address)
    try:
        procs.start("anvil", helper + ["chain", "--port", str(port), "--block-time", "1"], env)
        wait_for_rpc(uri)
        assert run(helper + ["fund", "--uri", uri, sender], env).returncode == 0
        result = run([sys.executable, "-c", SENDER_SCRIPT, uri, mode], env, timeout=TIMEOUT)

        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        outcome = json.loads(result.stdout.split("RESULT ", 1)[1].splitlines()[0])
        assert outcome["nonce"] == 2  # the deploy and the mint, each mined once
        assert outcome["balance"] == 5
        assert logged in result.stderr + result.stdout
    finally:
        procs.stop_all()
