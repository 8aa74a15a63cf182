"""FedAvg that every voter computes to the same bits (Dong et al. 2024, Sec. 4.1, Eq. 1).

    w_{t+1} = sum_k (n_k / n) * w_k,   n = sum_k n_k

In the paper no server aggregates: each voter rebuilds the aggregate from the published
proposals and the contract compares the hashes the voters report. Floating-point
addition is not associative, so a plain loop over the proposals in the order a voter
happened to fetch them could give different last bits, hence different hashes, on
different voters. ``fedavg`` therefore

1. sorts the updates into a canonical order that depends only on their content: the
   sha256 of each update's canonical bytes (``fl.learning.store.serialize``), then its count
   (two entries can only tie if they are the same update with the same count, and then
   their order does not matter);
2. accumulates ``n_k * w_k`` in float64 in that order with element-wise torch ops on
   the CPU (no reductions whose order depends on threads);
3. divides by the integer total and casts to float32 once.

So the result is a function of the *set* of (update, count) pairs only: identical
bytes for every voter, whatever order it received the updates in. Modelled on Flower's
``flwr/server/strategy/aggregate.py`` (pure function, ``ValueError`` on bad input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fl.learning.store import hash_state


def fedavg(updates: Sequence[tuple[Mapping[str, torch.Tensor], int]]) -> dict[str, torch.Tensor]:
    """Sample-count-weighted mean of state dicts, bit-exact and order-independent."""
    if len(updates) == 0:
        raise ValueError("fedavg needs at least one update")
    reference_state = updates[0][0]
    for state, count in updates:
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"every sample count must be a positive int, got {count!r}")
        if set(state) != set(reference_state):
            raise ValueError(
                f"all updates must have the same keys: {sorted(state)} vs {sorted(reference_state)}"
            )
        for name, value in state.items():
            if tuple(value.shape) != tuple(reference_state[name].shape):
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)} in one update and "
                    f"{tuple(reference_state[name].shape)} in another"
                )

    canonical = sorted(
        ((hash_state(state), count, state) for state, count in updates),
        key=lambda entry: (entry[0], entry[1]),
    )
    total = sum(count for _, count, _ in canonical)
    names = sorted(reference_state)
    sums = {name: torch.zeros(reference_state[name].shape, dtype=torch.float64) for name in names}
    for _, count, state in canonical:
        for name in names:
            sums[name] += state[name].detach().to(device="cpu", dtype=torch.float64) * count
    return {name: (sums[name] / total).to(torch.float32).contiguous() for name in names}
