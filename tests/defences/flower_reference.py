# Reference behaviour: Flower, flwr/server/strategy/aggregate.py
# (https://github.com/adap/flower, framework/py/flwr/server/strategy/aggregate.py, read at
# commit 0cb7993a0d98a38120341e4cbd05a54d1324d085), Copyright 2025 Flower Labs GmbH,
# licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
#
# This module restates, in plain numpy and in Flower's signatures (a list of
# (list of ndarrays, num_examples) pairs), what Flower's functions `aggregate`,
# `aggregate_median`, `aggregate_trimmed_avg`, `aggregate_krum` and `aggregate_bulyan`
# compute, including their conventions (scipy-style trim count `int(p * n)`, Krum's
# `max(1, n - f - 2)` neighbours found by argsort with self first, Multi-Krum as the
# sample-weighted `aggregate` of the kept models, Bulyan's iterated Krum on the shrinking
# list and the coordinate-wise mean of the `beta` values closest to the median). It is
# written for these tests (not a verbatim copy) and takes no part in the code under test:
# no canonical ordering, no float64 promotion beyond numpy's own, no torch.
"""Independent numpy restatement of Flower's aggregation functions (test reference only)."""

from __future__ import annotations

import numpy as np

NDArrays = list[np.ndarray]


def aggregate(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Flower's weighted average: sum_k n_k w_k / sum_k n_k, layer by layer, in list order."""
    total = sum(count for _, count in results)
    layers = []
    for layer_index in range(len(results[0][0])):
        acc = results[0][0][layer_index] * results[0][1]
        for weights, count in results[1:]:
            acc = acc + weights[layer_index] * count
        layers.append(acc / total)
    return layers


def aggregate_median(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Flower's coordinate-wise ``np.median`` over the clients (counts ignored)."""
    return [np.median(np.asarray([w[i] for w, _ in results]), axis=0) for i in range(len(results[0][0]))]


def trim_mean(array: np.ndarray, proportiontocut: float) -> np.ndarray:
    """scipy.stats.trim_mean along axis 0: cut ``int(p * n)`` values at each end."""
    n = array.shape[0]
    low = int(proportiontocut * n)
    high = n - low
    if low > high:
        raise ValueError("Proportion too big.")
    return np.mean(np.sort(array, axis=0)[low:high], axis=0)


def aggregate_trimmed_avg(results: list[tuple[NDArrays, int]], proportiontocut: float) -> NDArrays:
    return [trim_mean(np.asarray([w[i] for w, _ in results]), proportiontocut) for i in range(len(results[0][0]))]


def _distances(weights: list[NDArrays]) -> np.ndarray:
    flat = np.array([np.concatenate([layer.ravel() for layer in w]) for w in weights])
    n = len(weights)
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            D[i, j] = np.linalg.norm(flat[i] - flat[j]) ** 2
    return D


def aggregate_krum(results: list[tuple[NDArrays, int]], num_malicious: int, to_keep: int) -> NDArrays:
    """Krum (to_keep == 0) or Flower's Multi-Krum (weighted mean of the to_keep best)."""
    weights = [w for w, _ in results]
    D = _distances(weights)
    closest = max(1, len(weights) - num_malicious - 2)
    scores = [float(np.sum(D[i, np.argsort(D[i])[1:closest + 1]])) for i in range(len(weights))]
    if to_keep > 0:
        best = np.argsort(scores)[:to_keep]
        return aggregate([results[i] for i in best])
    return weights[int(np.argmin(scores))]


def aggregate_bulyan(results: list[tuple[NDArrays, int]], num_malicious: int) -> NDArrays:
    """Bulyan over Krum, with Flower's steps and precondition (n >= 4f + 3)."""
    results = list(results)
    if len(results) < 4 * num_malicious + 3:
        raise ValueError("Bulyan needs n >= 4 * num_malicious + 3")
    theta = len(results) - 2 * num_malicious
    beta = theta - 2 * num_malicious
    selected = []
    for _ in range(theta):
        best = aggregate_krum(results, num_malicious, to_keep=0)
        index = next(k for k, (w, _) in enumerate(results) if all(np.array_equal(a, b) for a, b in zip(w, best)))
        selected.append(results.pop(index))
    centre = aggregate_median(selected)
    out = []
    for layer_index, layer_centre in enumerate(centre):
        stacked = np.array([w[layer_index] for w, _ in selected])
        order = np.argsort(np.abs(stacked - layer_centre), axis=0)[:beta]
        out.append(np.mean(np.take_along_axis(stacked, order, axis=0), axis=0))
    return out
