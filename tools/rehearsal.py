"""The public-testnet rehearsal's chain and what a testnet already has (issue 17).

    python tools/rehearsal.py chain                    # anvil: a block every 2 s, chain id 1337, port 8555
    python tools/rehearsal.py token ADDRESS...         # an existing ERC-20, 1000 tokens to each ADDRESS
    python tools/rehearsal.py fund ADDRESS...          # 10 ether to each ADDRESS (a faucet)

The network itself is `ethereum:rehearsal` in ape-config.yaml (Ape's node provider, not "local"),
so `ape run deploy` and `ape run client` treat it as Sepolia: keystore accounts, `--token`
required, no mining calls. `token` and `fund` send from anvil's own unlocked account 0 (they stand
for a token somebody deployed and a faucet); they never touch the project's contracts.
Needs only web3 and anvil; `token` reads the compiled TestToken (`ape compile` once).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URI = "http://127.0.0.1:8555"
CHAIN_ID = 1337
UNITS = 10**18


def anvil_argv(port: int, block_time: int, state: str | None = None) -> list[str]:
    """The anvil command of the rehearsal chain (interval mining: no automine, like a public chain)."""
    anvil = shutil.which("anvil") or str(Path(sys.executable).parent / "anvil")
    argv = [anvil, "--port", str(port), "--block-time", str(block_time), "--chain-id", str(CHAIN_ID),
            "--hardfork", "cancun", "--silent"]
    return argv + (["--state", state] if state else [])


def _web3(uri: str):
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(uri, request_kwargs={"timeout": 60}))
    if int(w3.eth.chain_id) != CHAIN_ID:
        raise SystemExit(f"{uri} is chain {w3.eth.chain_id}, not the rehearsal chain ({CHAIN_ID})")
    return w3


def _token_artifact() -> tuple[list, str]:
    build = ROOT / ".build" / "__local__.json"
    if not build.exists():
        raise SystemExit(f"no compiled contracts in {build.parent}: run `ape compile` first")
    contract = json.loads(build.read_text())["contractTypes"]["TestToken"]
    return contract["abi"], contract["deploymentBytecode"]["bytecode"]


def deploy_token(uri: str, holders: list[str], tokens: int) -> str:
    """Deploy a TestToken from anvil's account 0 and mint `tokens` to each holder; its address."""
    from web3 import Web3

    w3 = _web3(uri)
    abi, bytecode = _token_artifact()
    funder = w3.eth.accounts[0]
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.contract(abi=abi, bytecode=bytecode).constructor().transact({"from": funder}), timeout=120)
    token = w3.eth.contract(address=receipt["contractAddress"], abi=abi)
    hashes = [token.functions.mint(Web3.to_checksum_address(h), tokens * UNITS).transact({"from": funder})
              for h in holders]
    for h in hashes:
        assert w3.eth.wait_for_transaction_receipt(h, timeout=120)["status"] == 1
    return receipt["contractAddress"]


def fund(uri: str, recipients: list[str], ether: float) -> None:
    """Send `ether` to each recipient from anvil's account 0 (the rehearsal's faucet)."""
    from web3 import Web3

    w3 = _web3(uri)
    funder = w3.eth.accounts[0]
    hashes = [w3.eth.send_transaction({"from": funder, "to": Web3.to_checksum_address(r), "value": int(ether * UNITS)})
              for r in recipients]
    for h in hashes:
        w3.eth.wait_for_transaction_receipt(h, timeout=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    chain = sub.add_parser("chain", help="run the rehearsal chain (anvil) in the foreground")
    chain.add_argument("--port", type=int, default=8555)
    chain.add_argument("--block-time", type=int, default=2, help="seconds between blocks (Sepolia: 12)")
    chain.add_argument("--state", default=None, help="anvil --state file: keep the chain across restarts")
    token = sub.add_parser("token", help="deploy an ERC-20 (TestToken) as the existing stake token; print its address")
    token.add_argument("holders", nargs="*", metavar="ADDRESS")
    token.add_argument("--tokens", type=int, default=1000, help="tokens minted to each ADDRESS")
    token.add_argument("--uri", default=DEFAULT_URI)
    faucet = sub.add_parser("fund", help="send ether to each ADDRESS (the faucet)")
    faucet.add_argument("recipients", nargs="+", metavar="ADDRESS")
    faucet.add_argument("--ether", type=float, default=10.0)
    faucet.add_argument("--uri", default=DEFAULT_URI)
    args = parser.parse_args(argv)
    if args.command == "chain":
        command = anvil_argv(args.port, args.block_time, args.state)
        print(" ".join(command), flush=True)
        os.execv(command[0], command)
    elif args.command == "token":
        print(deploy_token(args.uri, args.holders, args.tokens))
    else:
        fund(args.uri, args.recipients, args.ether)


if __name__ == "__main__":
    main()
