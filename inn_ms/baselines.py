"""Pruning baselines that INN resampling is compared with.

Each makes, in every channel group, as many channels as the resampled
integral network has, from the full-size weights, so a baseline and INN at
the same sizes have the same parameter count. Selection
(:meth:`inn_ms.model.IntegralModel.select_channels`) keeps some channels
and drops the others from every layer of the group:

* **L1 norm** — the channels whose producer weights (every layer writing the
  group, residual branches summed) have the largest L1 norm, the classic
  magnitude criterion of structured pruning (Li et al., 2017);
* **random** — channels drawn uniformly.

Folding (:meth:`~inn_ms.model.IntegralModel.merge_channels`) merges them:

* **folding** — k-means clusters of channels with similar producer weights;
  producers merged by the cluster mean, consumers by the cluster sum
  (:func:`folding_merges`).

Any of them can be repaired on calibration images like INN
(:mod:`inn_ms.repair`, with :func:`inn_ms.repair.group_maps`).
"""
from collections import OrderedDict

import numpy as np

from inn_ms.layers.base import IntegralLayer
from inn_ms.partition import CompositePartition


def producers(model):
    """``(group, layer)`` for every integral layer that writes a group's
    channels (a convolution or dense layer whose output axis is the group's);
    a BatchNorm on the group normalises its channels and writes none. Read
    at the model's current sizes."""
    by_id = {id(p): name for name, p in model.groups.items()}
    for _, layer in model.network.cells_and_names():
        if not isinstance(layer, IntegralLayer) or not hasattr(layer, "weight"):
            continue
        p = layer.partitions.get("out")
        if p is not None and not isinstance(p, CompositePartition) and id(p) in by_id:
            yield by_id[id(p)], layer


def producer_l1_norms(model):
    """``{group: per-channel L1 norm}`` of the full-size output weights of
    every integral layer writing each group (:func:`producers`)."""
    norms = OrderedDict((name, np.zeros(n)) for name, n in model.full_sizes.items())
    with model.at_sizes(model.full_sizes):
        for group, layer in producers(model):
            w = np.abs(layer.numpy_weight())
            norms[group] += w.reshape(w.shape[0], -1).sum(axis=1)
    return norms


def l1_indices(model, sizes):
    """Per-group indices of the ``sizes[group]`` channels of largest L1 norm
    (in channel order)."""
    norms = producer_l1_norms(model)
    return OrderedDict((g, np.sort(np.argsort(-norms[g], kind="stable")[:n])) for g, n in sizes.items())


def random_indices(model, sizes, seed=0):
    """Per-group indices of ``sizes[group]`` channels drawn at random."""
    rng = np.random.default_rng(seed)
    full = model.full_sizes
    return OrderedDict((g, np.sort(rng.choice(full[g], size=n, replace=False))) for g, n in sizes.items())


# -- channel folding ----------------------------------------------------------

def producer_rows(model):
    """``{group: rows}``: every channel's full-size producer weights and
    biases (each layer writing the group, side by side), one row a channel."""
    rows = OrderedDict((name, []) for name in model.groups)
    with model.at_sizes(model.full_sizes):
        for group, layer in producers(model):
            w = layer.numpy_weight()
            parts = [w.reshape(w.shape[0], -1)]
            b = layer.numpy_bias()
            if b is not None:
                parts.append(b[:, None])
            rows[group].append(np.concatenate(parts, axis=1))
    return OrderedDict((g, np.concatenate(r, axis=1)) for g, r in rows.items() if r)


def kmeans(points, k, seed=0, iterations=100):
    """Labels of ``k`` clusters of ``points`` (rows), every cluster used:
    k-means++ seeding, Lloyd iterations; an empty cluster takes the point
    farthest from its centre. Deterministic for a seed."""
    x = np.asarray(points, np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: need 1 <= k <= {n} clusters, got {k}")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(n, p=d / d.sum())] if d.sum() > 0 else x[rng.integers(n)])
    centres = np.array(centres)
    labels = None
    for _ in range(iterations):
        d = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        new = d.argmin(1)
        for c in range(k):
            if not np.any(new == c):  # refill an empty cluster: the worst-fitted point of a shared one
                shared = np.flatnonzero(np.bincount(new, minlength=k)[new] > 1)
                worst = shared[np.argmax(d[shared, new[shared]])]
                new[worst] = c
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        centres = np.array([x[labels == c].mean(0) for c in range(k)])
    return labels


def folding_merges(model, sizes, seed=0):
    """Per-group ``(P, Q)`` for :meth:`~inn_ms.model.IntegralModel.merge_channels`:
    the channels clustered by k-means on their producer weights
    (:func:`producer_rows`), producers merged by the cluster mean, consumers
    by the cluster sum: data-free channel folding (as Model Folding, Wang
    et al., ICLR 2025, without its statistics repair; :mod:`inn_ms.repair`
    adds one)."""
    rows = producer_rows(model)
    merges = OrderedDict()
    for g, n in sizes.items():
        if g not in rows:
            raise ValueError(f"folding: group {g!r} has no producer to cluster")
        labels = kmeans(rows[g], int(n), seed=seed)
        member = np.zeros((int(n), len(labels)))
        member[labels, np.arange(len(labels))] = 1.0
        merges[g] = (member / member.sum(1, keepdims=True), member)
    return merges
