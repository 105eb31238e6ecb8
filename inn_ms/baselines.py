"""Channel-selection baselines that INN resampling is compared with.

Both keep, in every channel group, a subset of the full-size channels (the
other channels are dropped from every layer of the group), through
:meth:`inn_ms.model.IntegralModel.select_channels`, so a baseline and the
resampled integral network at the same sizes have the same parameter count:

* **L1 norm** — the channels whose producer weights (every layer writing the
  group, residual branches summed) have the largest L1 norm, the classic
  magnitude criterion of structured pruning (Li et al., 2017);
* **random** — channels drawn uniformly.
"""
from collections import OrderedDict

import numpy as np

from inn_ms.layers.base import IntegralLayer
from inn_ms.partition import CompositePartition


def producer_l1_norms(model):
    """``{group: per-channel L1 norm}`` of the full-size output weights of
    every integral layer writing each group."""
    by_id = {id(p): name for name, p in model.groups.items()}
    norms = OrderedDict((name, np.zeros(p.max_size)) for name, p in model.groups.items())
    saved = model.sizes
    try:
        model.resize(sizes=dict(model.full_sizes))
        for _, layer in model.network.cells_and_names():
            if not isinstance(layer, IntegralLayer):
                continue
            p = layer.partitions.get("out")
            if p is None or isinstance(p, CompositePartition) or id(p) not in by_id:
                continue
            w = np.abs(layer.numpy_weight())
            norms[by_id[id(p)]] += w.reshape(w.shape[0], -1).sum(axis=1)
    finally:
        model.resize(sizes=dict(saved))
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
