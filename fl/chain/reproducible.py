"""Patches that make the embedded (py-evm) chain repeat run to run: fixed genesis time, seeded prevrandao, pinned clock."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

from ape import chain

REPRODUCIBLE_START = 4_000_000_000  # unix seconds (year 2096): later than any real clock


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
    """On the embedded chain, start from a fixed timestamp, so block times and deadlines depend
    only on the transactions sent (with `make_embedded_chain_reproducible`, so do block hashes),
    and a seeded run repeats exactly. Returns False where the clock is not pinned (anvil, live nets)."""
    if chain.provider.name != "test" or chain.pending_timestamp >= REPRODUCIBLE_START:
        return False
    chain.pending_timestamp = REPRODUCIBLE_START
    return True
