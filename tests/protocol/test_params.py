"""fl.protocol.params' bounds against the contracts' sources, and `ape run deploy`'s option ranges
against those bounds (a value the constructor would revert on is refused by the CLI first)."""

import importlib.util
import re
from pathlib import Path

import click

from fl.protocol import params

ROOT = Path(__file__).resolve().parents[2]


def _solidity_constant(path: Path, name: str) -> int:
    match = re.search(rf"\b{name}\s*=\s*(\d+)\s*;", (ROOT / path).read_text())
    assert match, f"{name} not found in {path}"
    return int(match.group(1))


def _deploy_cli():
    spec = importlib.util.spec_from_file_location("stakefl_deploy_script", ROOT / "scripts" / "deploy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {p.name: p for p in module.cli.params}


def test_bounds__equal_the_contracts_constants():
    assert params.MAX_PROPOSALS == _solidity_constant(Path("contracts/libraries/RoundMath.sol"), "MAX_PROPOSALS")
    assert params.MAX_SEED_BLOCK_DELAY == _solidity_constant(Path("contracts/VotingRound.sol"), "_MAX_SEED_BLOCK_DELAY")


def test_deploy_options__refuse_what_the_constructor_reverts_on():
    options = _deploy_cli()
    max_proposers, delay = options["max_proposers"].type, options["seed_block_delay"].type
    assert isinstance(max_proposers, click.IntRange) and (max_proposers.min, max_proposers.max) == (1, params.MAX_PROPOSALS)
    assert isinstance(delay, click.IntRange) and (delay.min, delay.max) == (0, params.MAX_SEED_BLOCK_DELAY)
