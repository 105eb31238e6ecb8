"""Elastic network: one graph whose channel counts are a run-time input.

:func:`make_elastic` turns an :class:`~inn_ms.model.IntegralModel` into a
Cell called as ``net(x, sizes)``, where ``sizes`` is an int32 tensor with
one channel count per group (in ``model.groups`` order). Exported as MindIR
(:func:`export_elastic`), it lets a device with nothing but a MindIR
runtime choose its width per call, with no recompilation and no Python.

How: every layer's sampling matrix is built inside the graph from the size
tensor: nodes ``i/(n−1)`` for ``i < n``, the Keys kernel evaluated at them,
trapezoid weights ``h/2, h, …, h, h/2`` (times the group's full size, as in
:mod:`inn_ms.sampler`), and rows ``i ≥ n`` set to zero. Shapes stay those of
the full width, so the graph is static (what Ascend compiles best): the
first ``n`` channels of each group carry exactly the width-``n`` network's
activations and the others are zero all the way through (a zero channel
stays zero through ReLU, pooling and adds, and zero weight columns ignore
it). The output therefore equals the network pruned to those sizes; the
compute is that of the full width, so for speed on a device export the
width you need as a fixed MindIR (:func:`inn_ms.export.export_mindir`).
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from inn_ms.cubic import kernel_matrix
from inn_ms.model import _named, _rebuild
from inn_ms.partition import CompositePartition
from inn_ms.sampler import AxisSampler


class _SizeState(nn.Cell):
    """The run-time sizes, shared by every elastic axis (a Parameter written
    at the start of each call: sub-cells cannot take extra arguments)."""

    def __init__(self, count):
        super().__init__()
        self.sizes = Parameter(Tensor(np.zeros(count, np.int32)), name="elastic_sizes", requires_grad=False)


class ElasticAxis(nn.Cell):
    """Builds one axis's sampling matrix at the run-time sizes of its
    group(s): full-size rows, rows past the current size zero."""

    def __init__(self, sampler, group_index, state):
        super().__init__()
        p = sampler.get_partition()
        parts = p.parts if isinstance(p, CompositePartition) else [p]
        for part in parts:
            if getattr(part, "trainable", False) or part.quadrature.name != "trapezoid":
                raise ValueError(f"elastic networks need uniform trapezoid partitions; group {part.name!r} is "
                                 f"{'trainable' if getattr(part, 'trainable', False) else part.quadrature.name}")
        self.blocks = [(group_index.get(id(part)), part.max_size, m)
                       for part, m in zip(parts, sampler.control_sizes)]
        self.integrate = sampler.integrate
        self.state = [state]  # a list: the shared state is not a sub-cell of every axis
        self.size = p.max_size
        self.sizes = tuple(part.max_size for part in parts)
        self.trainable = False
        self.ranges = [Tensor(np.arange(full, dtype=np.float32)) for _, full, _ in self.blocks]

    def get_partition(self):
        raise ValueError("an elastic axis has no fixed partition")

    def _block(self, k, n):
        _, full, m = self.blocks[k]
        i = self.ranges[k]
        n = ops.maximum(n, 2.0)
        step = 1.0 / (n - 1.0)
        x = ops.minimum(i * step, 1.0)
        mat = kernel_matrix(x, m)
        mask = ops.cast(i < n, ms.float32)
        if self.integrate:
            ends = ops.cast(ops.logical_or(i == 0, i == n - 1.0), ms.float32)
            weights = step * (1.0 - 0.5 * ends) * full
            mask = mask * weights
        return mat * mask.reshape(-1, 1)

    def construct(self):
        sizes = ops.cast(self.state[0].sizes, ms.float32)
        mats = []
        for k in range(len(self.blocks)):
            g, full, _ = self.blocks[k]
            n = sizes[g] if g is not None else Tensor(float(full), ms.float32)
            mats.append(self._block(k, n))
        if len(mats) == 1:
            return mats[0]
        rows = []
        col = 0
        total = sum(m for _, _, m in self.blocks)
        for k in range(len(mats)):
            m = self.blocks[k][2]
            left = col
            right = total - col - m
            parts = []
            if left:
                parts.append(ops.zeros((mats[k].shape[0], left), ms.float32))
            parts.append(mats[k])
            if right:
                parts.append(ops.zeros((mats[k].shape[0], right), ms.float32))
            rows.append(ops.concat(parts, 1) if len(parts) > 1 else parts[0])
            col += m
        return ops.concat(rows, 0)


class ElasticNetwork(nn.Cell):
    """``net(x, sizes)``: the integral network at run-time channel counts."""

    def __init__(self, network, state, group_names, full_sizes):
        super().__init__()
        self.network = network
        self.state = state
        self.group_names = list(group_names)
        self.full_sizes = list(full_sizes)

    def construct(self, x, sizes):
        ops.assign(self.state.sizes, sizes)
        return self.network(x)


def make_elastic(model):
    """An :class:`ElasticNetwork` with its own copy of ``model``'s weights."""
    group_index = {id(p): k for k, p in enumerate(model.groups.values())}
    state = _SizeState(len(group_index))
    saved = dict(model.sizes)
    try:
        model.resize(sizes=dict(model.full_sizes))

        def replace(cell):
            return ElasticAxis(cell, group_index, state) if isinstance(cell, AxisSampler) else None

        network = _rebuild(model.network, replace)
    finally:
        model.resize(sizes=saved)
    net = ElasticNetwork(network, state, model.groups.keys(), model.full_sizes.values())
    return _named(net)


def elastic_sizes(model, keep=None, sizes=None):
    """The int32 size vector for an elastic network of ``model``: one keep
    ratio, or ``sizes`` per group (others full). Sizes below 2 are refused."""
    if (keep is None) == (sizes is None):
        raise ValueError("elastic_sizes: give exactly one of keep= or sizes=")
    target = dict(model.full_sizes)
    if keep is not None:
        target.update(model.sizes_for_keep(keep))
    else:
        unknown = [g for g in sizes if g not in target]
        if unknown:
            raise ValueError(f"elastic_sizes: unknown group(s) {unknown}; groups are {list(target)}")
        target.update(sizes)
    for name, n in target.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= model.full_sizes[name]:
            raise ValueError(f"elastic_sizes: size of group {name!r} must be an int in "
                             f"[2, {model.full_sizes[name]}], got {n!r}")
    return Tensor(np.array([target[g] for g in model.groups], np.int32))


def export_elastic(model, path, input_shape, dynamic_batch=True, backend="native"):
    """Export the elastic network of ``model`` as MindIR with inputs
    ``(x, sizes)``; see :func:`inn_ms.export.export_mindir` for the options."""
    from inn_ms.export import export_mindir
    net = make_elastic(model)
    return export_mindir(net, path, input_shape, dynamic_batch=dynamic_batch, backend=backend,
                         extra_inputs=(elastic_sizes(model, keep=1.0),))
