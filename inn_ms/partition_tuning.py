"""Pipeline B: tuning where a converted network samples its weights at a
target width (DESIGN.md §5; pipeline A, random-width training, is
:class:`inn_ms.train.RandomWidthTrainer`).

Fix a target size per group, replace each group's uniform partition by a
:class:`~inn_ms.partition.TrainablePartition` of that size (nodes start
uniform), freeze every weight, and train only the node positions
(optionally the biases too) for a few steps, with the trainer's one loop.
The learnt nodes choose *where* along the channel axis the thinner layer
samples the continuous weights.
"""
import logging

import numpy as np
from mindspore import nn

from inn_ms.cells import name_parameters_by_path, renew_graph_identity
from inn_ms.layers.base import IntegralLayer
from inn_ms.partition import CompositePartition, TrainablePartition, allowed_size, describe_sizes, size_step
from inn_ms.sampler import AxisSampler
from inn_ms.train import RandomWidthTrainer, batches

logger = logging.getLogger(__name__)


def make_partitions_trainable(model, sizes):
    """Swap the partitions of the groups in ``sizes`` (name → target size)
    for trainable ones of that size, in every layer that samples them.
    Groups that are part of a concatenation keep their uniform partition
    (a composite partition has fixed blocks), and so do groups of blocks (a
    grouped convolution's channels); they are resized instead.
    Returns the names of the groups made trainable."""
    groups = model.groups
    unknown = [g for g in sizes if g not in groups]
    if unknown:
        raise ValueError(f"pipeline B: unknown group(s) {unknown}; groups are {list(groups)}")
    in_composite = set()
    samplers = [c for _, c in model.network.cells_and_names() if isinstance(c, AxisSampler)]
    for s in samplers:
        p = s.get_partition()
        if isinstance(p, CompositePartition):
            in_composite |= {id(part) for part in p.parts}
    model.full_parameters()  # counted while every group can still take its full size
    swapped, new = [], {}
    for name, n in sizes.items():
        old = groups[name]
        if not allowed_size(old, n):
            raise ValueError(f"pipeline B: size of group {name!r} must be {describe_sizes(old)}, got {n!r}")
        if id(old) in in_composite or getattr(old, "trainable", False) or size_step(old) > 1:
            old.resize(int(n))
            continue
        new[id(old)] = TrainablePartition(int(n), quadrature=old.quadrature.name, name=name,
                                          full_size=old.full_size, resampling=old.resampling)
        swapped.append(name)
    for s in samplers:
        p = s.get_partition()
        if id(p) in new:
            s.rebind(new[id(p)])
    for name, p in groups.items():
        if id(p) in new:
            model._groups[name] = new[id(p)]
    name_parameters_by_path(model)  # the new nodes' names; the others keep theirs
    renew_graph_identity(model)
    return swapped


def tune_partitions(model, x, y, sizes, epochs=1, batch_size=64, lr=1e-2, train_biases=False, loss_fn=None,
                    seed=0, progress=False):
    """Pipeline B on numpy data ``x``, ``y``: trainable partitions of
    ``sizes`` (see :func:`make_partitions_trainable`), then Adam on the node
    positions only (plus the layers' biases if ``train_biases``). Every other
    parameter keeps its value. Returns the mean loss per epoch."""
    make_partitions_trainable(model, sizes)
    params = [p for p in model.trainable_params() if p.name.endswith("theta")]
    if train_biases:
        params += [layer.bias for _, layer in model.network.cells_and_names()
                   if isinstance(layer, IntegralLayer) and getattr(layer, "bias", None) is not None]
    if not params:
        raise ValueError("pipeline B: no group could be given a trainable partition")
    frozen = [p for p in model.trainable_params() if all(p is not q for q in params)]
    for p in frozen:
        p.requires_grad = False
    try:
        opt = nn.Adam(params, learning_rate=lr)
        loss_fn = loss_fn or nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
        trainer = RandomWidthTrainer(model, loss_fn, opt, width_sampler=None, seed=seed)
        history = []
        for epoch in range(epochs):  # at the target sizes throughout (fit() would return to full width)
            order = batches(len(x), batch_size, trainer.rng)
            losses = trainer.run_epoch(((x[idx], y[idx]) for idx in order), total=len(order),
                                       desc=f"pipeline B {epoch + 1}/{epochs}", progress=progress)
            history.append(float(np.mean(losses)))
            logger.info("pipeline B epoch %d/%d: loss %.4f", epoch + 1, epochs, history[-1])
        trainer.step_cell.set_train(False)
        return history
    finally:
        for p in frozen:
            p.requires_grad = True


__all__ = ["make_partitions_trainable", "tune_partitions"]
