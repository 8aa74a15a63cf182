"""What makes a seeded simulation repeat run to run on its development chain.

anvil (the default, `DEFAULT_NETWORK`): a node of the run's own on a free port, started by
ape-foundry without step tracing (`use_own_anvil`), its clock pinned (`pin_clock`). The embedded
py-evm chain: fixed genesis time, seeded prevrandao, pinned clock. Keys come from the client index
(fl.chain.connection), salts from the run's seed (fl.simulation.rounds), and the contracts derive
each round's seed from the revealed salts only, so the draw repeats too.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

from ape import chain

REPRODUCIBLE_START = 4_000_000_000  # unix seconds (year 2096): later than any real clock
DEFAULT_NETWORK = "ethereum:local:foundry"  # `ape run simulate` / `experiment`: an anvil of their own


def use_own_anvil() -> None:
    """Before Ape connects: an anvil that ape-foundry starts for this process listens on a random
    free port (parallel runs never share or collide on a node; APE_FOUNDRY_HOST, if set, wins) and
    runs without `--steps-tracing` (the anvil wrapper tools/setup.sh installs drops it when
    STAKEFL_ANVIL_NO_STEPS_TRACING=1): the simulation reads raw receipts, and recording every EVM
    step makes large transactions about 10x slower."""
    os.environ.setdefault("APE_FOUNDRY_HOST", "auto")
    os.environ.setdefault("STAKEFL_ANVIL_NO_STEPS_TRACING", "1")


class _SeededEntropy:
    """Stands in for `os` inside eth-tester's py-evm backend: `urandom` (its per-block prevrandao)
    comes from a hash chain, so the embedded chain's block hashes repeat run to run."""

    def __init__(self, seed: int = 0):
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self._state = hashlib.sha256(b"stakefl prevrandao %d" % seed).digest()

    def urandom(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._state = hashlib.sha256(self._state).digest()
            out += self._state
        return out[:n]

    def __getattr__(self, name):
        return getattr(os, name)


_ENTROPY = _SeededEntropy()


def make_embedded_chain_reproducible() -> None:
    """Make the embedded (py-evm) chain deterministic; call before the provider connects.

    eth-tester takes the genesis time from the wall clock and each block's prevrandao from
    os.urandom; both feed `blockhash`, which the round seed uses. Here the genesis time is
    fixed and prevrandao comes from `_ENTROPY` (reseeded per run by `reseed_embedded_chain`).
    Other chains are untouched: their randomness is the real one.
    """
    from eth_tester.backends.pyevm import main as pyevm

    original = pyevm.get_default_genesis_params
    if getattr(original, "reproducible", False):
        return

    def fixed_genesis(overrides=None):
        return {**original(overrides), "timestamp": REPRODUCIBLE_START - 10_000}

    fixed_genesis.reproducible = True
    pyevm.get_default_genesis_params = fixed_genesis
    pyevm.os = _ENTROPY


def reseed_embedded_chain(seed: int) -> None:
    """Restart the embedded chain's prevrandao stream from `seed` (no effect elsewhere)."""
    _ENTROPY.reseed(seed)


@contextmanager
def isolated_embedded_run(seed: int):
    """On the embedded chain: reseed its randomness, run, then restore the chain as it was."""
    if chain.provider.name != "test":
        yield
        return
    make_embedded_chain_reproducible()  # idempotent; the genesis part only acts before connecting
    snapshot = chain.snapshot()
    reseed_embedded_chain(seed)
    try:
        yield
    finally:
        chain.restore(snapshot)


def pin_clock() -> bool:
    """Start the chain's clock at a fixed timestamp, so block times and deadlines depend only on
    the transactions sent, and a seeded run repeats exactly.

    Embedded chain: its clock already moves one second per block. anvil started by this process
    (a fresh node of its own): its next block gets REPRODUCIBLE_START and every later block one
    second more (`anvil_setBlockTimestampInterval`), instead of wall-clock time; jumps to a
    deadline (`evm_setNextBlockTimestamp`) still work. Returns False where the clock is not pinned:
    an anvil someone else started (its clock is theirs), a chain already past the start, live nets."""
    provider = chain.provider
    if provider.name == "test":
        if chain.pending_timestamp >= REPRODUCIBLE_START:
            return False
        chain.pending_timestamp = REPRODUCIBLE_START
        return True
    if provider.name != "foundry" or getattr(provider, "process", None) is None:
        return False
    if int(chain.blocks.head.timestamp) >= REPRODUCIBLE_START:
        return False
    provider.make_request("evm_setNextBlockTimestamp", [REPRODUCIBLE_START])
    provider.make_request("anvil_setBlockTimestampInterval", [1])
    return True
