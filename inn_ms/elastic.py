"""Elastic network: one graph whose channel counts are a run-time input.

:func:`make_elastic` turns an :class:`~inn_ms.model.IntegralModel` into a
Cell called as ``net(x, sizes)``, where ``sizes`` is an int32 tensor with
one channel count per group (in ``model.groups`` order). Exported as MindIR
(:func:`export_elastic`), it lets a device with nothing but a MindIR
runtime choose its width per call, with no recompilation and no Python.

How: every layer samples its control values inside the graph from the size
tensor: nodes ``i/(n−1)`` for ``i < n``, the Keys kernel's four taps at each
node (four gathers and a weighted sum: the kernel matrix is banded, so this
is ~m/4 times cheaper than a dense ``m``-column matmul), trapezoid weights
``h/2, h, …, h, h/2`` (times the group's full size, as in
:mod:`inn_ms.sampler`), and rows ``i ≥ n`` weighted zero. Shapes stay those of
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

from inn_ms.cubic import keys_kernel
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
        self.starts = [int(v) for v in np.cumsum([0] + [m for _, _, m in self.blocks])[:-1]]

    def get_partition(self):
        raise ValueError("an elastic axis has no fixed partition")

    def _block_taps(self, k, n):
        """Column indices ``(N, 4)`` and weights ``(N, 4)`` of block ``k``'s
        rows at size ``n``: the Keys kernel has four taps per node, clamped
        at the control grid's edges; rows past ``n`` weigh zero."""
        _, full, m = self.blocks[k]
        i = self.ranges[k]
        n = ops.maximum(n, 2.0)
        step = 1.0 / (n - 1.0)
        x = ops.minimum(i * step, 1.0)
        mask = ops.cast(i < n, ms.float32)
        if self.integrate:
            ends = ops.cast(ops.logical_or(i == 0, i == n - 1.0), ms.float32)
            mask = mask * step * (1.0 - 0.5 * ends) * full
        if m == 1:
            idx = ops.zeros((full, 4), ms.int32)
            wts = ops.concat([mask.reshape(-1, 1), ops.zeros((full, 3), ms.float32)], 1)
            return idx, wts
        pos = x * (m - 1)
        base = ops.floor(pos)
        offsets = Tensor(np.array([[-1.0, 0.0, 1.0, 2.0]], np.float32))
        taps = base.reshape(-1, 1) + offsets
        wts = keys_kernel(pos.reshape(-1, 1) - taps) * mask.reshape(-1, 1)
        idx = ops.cast(ops.clip_by_value(taps, 0.0, float(m - 1)), ms.int32) + self.starts[k]
        return idx, wts

    def taps(self):
        """Indices and weights of every row (blocks stacked, each block's
        columns offset to its place in the control axis)."""
        sizes = ops.cast(self.state[0].sizes, ms.float32)
        idx, wts = [], []
        for k in range(len(self.blocks)):
            g, full, _ = self.blocks[k]
            n = sizes[g] if g is not None else Tensor(float(full), ms.float32)
            a, b = self._block_taps(k, n)
            idx.append(a)
            wts.append(b)
        if len(idx) == 1:
            return idx[0], wts[0]
        return ops.concat(idx, 0), ops.concat(wts, 0)

    def sample_rows(self, x):
        """``A · x`` for control rows ``x`` (``m × r``) by four gathers: the
        kernel matrix is banded, so this costs 4·N·r, not m·N·r."""
        idx, wts = self.taps()
        out = None
        for t in range(4):
            term = ops.gather(x, idx[:, t], 0) * wts[:, t:t + 1]
            out = term if out is None else out + term
        return out

    def sample_columns(self, x):
        """``A`` along axis 1 of ``x`` (``s × m × r`` → ``s × N × r``)."""
        idx, wts = self.taps()
        out = None
        for t in range(4):
            term = ops.gather(x, idx[:, t], 1) * wts[:, t].reshape(1, -1, 1)
            out = term if out is None else out + term
        return out

    def construct(self):
        """The dense sampling matrix (for checks; layers use the taps)."""
        total = sum(m for _, _, m in self.blocks)
        return self.sample_rows(ops.eye(total, total, ms.float32))


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
