"""Elastic network: one graph whose channel counts are a run-time input.

:func:`make_elastic` turns an :class:`~inn_ms.model.IntegralModel` into a
Cell called as ``net(x, sizes)``, where ``sizes`` is an int32 tensor with
one channel count per group (in ``model.groups`` order). Exported as MindIR
(:func:`export_elastic`), it lets a device with nothing but a MindIR
runtime choose its width per call, with no recompilation and no Python.

Sizes outside a group's range (at least 2, at most its allowed maximum,
by default the full width) are refused by the runner inn_ms ships
(:class:`inn_ms.export.MindIRGraph`, which reads the ranges the MindIR
records) and clamped to the range by the graph itself, for runtimes that
call the MindIR directly.

How: every layer samples its control values inside the graph from the size
tensor: nodes ``i/(n−1)`` for ``i < n``, the Keys kernel's four taps at each
node (four gathers and a weighted sum: the kernel matrix is banded, so this
is ~m/4 times cheaper than a dense ``m``-column matmul), trapezoid weights
``h/2, h, …, h, h/2`` (times the group's full size, as in
:mod:`inn_ms.sampler`), and rows ``i ≥ n`` weighted zero. A group sampled
with the antialiased rule (:mod:`inn_ms.resampling`) stretches the kernel by
a run-time factor, so its axes build the dense matrix in the graph instead
(taps reaching far enough for the smallest size, folded onto the grid).

Sampling is not repeated on every call: each convolution and dense layer
keeps its sampled weight and bias in buffers, and a bucket resamples only
when the sizes change. A device that picks its width once and then runs
many inputs pays for the sampling once; without the kept samples it cost
about twice the convolutions themselves (ResNet-18, 112², batch 4). The
buffers are run-time state: the MindIR stores them without data
(:func:`is_runtime_state`), so the file holds the control weights and
about as many bytes as a fixed full-width export, and the first call
after loading fills them. The branch on a change of sizes is pure (fresh
samples or the kept ones) and the buffers are written after it: an assign
inside the branch made MindSpore 2.10 hold twice the activation memory of
the whole forward pass (measured). Each bucket computes the sampling taps
of all its blocks from one table (a few ops per bucket, not per layer),
which keeps the graph, and the export's compile time, small; cached layers
are sampled by matmuls with the bucket's dense matrices, because
MindSpore reuses no temporaries inside the branch and the four gathers
held four copies of every weight (ResNet-18: 1.9 GB against 0.75 GB).

Shapes stay those of the full width, so the graph is static: the first
``n`` channels of each group carry exactly the width-``n`` network's
activations and the others are zero all the way through (a zero channel
stays zero through ReLU, pooling and adds, and zero weight columns ignore
it). The output therefore equals the network pruned to those sizes; the
compute is that of the full width. Slicing to run-time channel counts
instead (dynamic shapes, which MindSpore supports and exports) was measured
slower on this CPU: a 6-layer 128-channel 3×3 stack ran 2.2× (full) to 3.5×
(half width) slower than static shapes of the same size, more than the
masked compute costs. For the smallest latency at one known width export it
as a fixed MindIR (:func:`inn_ms.export.export_mindir`).
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from inn_ms.cells import copy_tree, name_parameters_by_path
from inn_ms.cubic import node_taps
from inn_ms.export import check_input_shape, export_mindir
from inn_ms.layers.conv import IntegralConv2d
from inn_ms.layers.dense import IntegralDense
from inn_ms.partition import CompositePartition, size_range, size_step
from inn_ms.resampling import antialiased_matrix
from inn_ms.sampler import AxisSampler, apply_along_axis1


class _SizeState(nn.Cell):
    """The run-time sizes, shared by every elastic axis (a Parameter written
    at the start of each call: sub-cells cannot take extra arguments)."""

    def __init__(self, count):
        super().__init__()
        self.sizes = Parameter(Tensor(np.zeros(count, np.int32)), name="elastic_sizes", requires_grad=False)


def check_elastic_partition(part):
    """Refuse a partition the elastic sampling cannot follow: it places
    uniform nodes with trapezoid weights at run time, in one block."""
    if getattr(part, "trainable", False) or part.quadrature.name != "trapezoid":
        raise ValueError(f"elastic networks need uniform trapezoid partitions; group {part.name!r} is "
                         f"{'trainable' if getattr(part, 'trainable', False) else part.quadrature.name}")
    if size_step(part) > 1:
        raise ValueError(f"elastic networks do not support groups in blocks yet (a grouped convolution's "
                         f"channels); group {part.name!r} has {size_step(part)}")


class ElasticAxis(nn.Cell):
    """Builds one axis's sampling matrix at the run-time sizes of its
    group(s): full-size rows, rows past the current size zero."""

    def __init__(self, sampler, group_index, state, rows=None, dense=False):
        super().__init__()
        p = sampler.get_partition()
        parts = p.parts if isinstance(p, CompositePartition) else [p]
        for part in parts:
            check_elastic_partition(part)
        self.blocks = [(group_index.get(id(part)), part.full_size, m)
                       for part, m in zip(parts, sampler.control_sizes)]
        rows = rows or {}
        # Rows made per block: the group's rows in this bucket (sizes never exceed them).
        self.rows = [full if g is None else rows.get(g, full) for g, full, _ in self.blocks]
        self.integrate = sampler.integrate
        self.state = [state]  # a list: the shared state is not a sub-cell of every axis
        self.size = sum(self.rows)
        self.sizes = tuple(self.rows)
        self.trainable = False
        self.ranges = [Tensor(np.arange(r, dtype=np.float32)) for r in self.rows]
        self.starts = [int(v) for v in np.cumsum([0] + [m for _, _, m in self.blocks])[:-1]]
        # Antialiased parts stretch the kernel over more than four taps (how
        # many depends on the run-time size): such an axis builds its dense
        # matrix instead of gathering four taps per row. ``dense=True``: every
        # axis does (training: a matmul and its gradient are faster on CPU
        # than four gathers and their scatter-adds; measured in
        # scripts/bench/train_step.py).
        self.rules = [part.resampling for part in parts]
        self.dense = bool(dense) or any(r != "point" for r in self.rules)

    runtime_sizes = True  # sizes come from the shared state at run time (AxisSampler: False)
    one_block = False  # groups in blocks are refused (check_elastic_partition)

    def get_partition(self):
        raise ValueError("an elastic axis has no fixed partition")

    def at_full_size(self):
        """1.0 when every group of this axis is at its full size at the
        run-time sizes, else 0.0 (a float32 scalar): an integral BatchNorm
        updates its moving statistics only then, as at a fixed full width."""
        sizes = self.state[0].sizes
        flag = Tensor(1.0, ms.float32)
        for g, full, _ in self.blocks:
            if g is not None:
                flag = flag * ops.cast(sizes[g] >= full, ms.float32)
        return flag

    def size_key(self):
        """Static: the bucket's rows and the rules (the sizes are run-time data)."""
        return self.sizes + tuple(self.rules)

    def _block_taps(self, k, n):
        """Column indices ``(N, 4)`` and weights ``(N, 4)`` of block ``k``'s
        rows at size ``n``: the Keys kernel has four taps per node, clamped
        at the control grid's edges; rows past ``n`` weigh zero."""
        _, full, m = self.blocks[k]
        i = self.ranges[k]
        n = ops.maximum(n, 2.0)
        step = 1.0 / (n - 1.0)
        mask = ops.cast(i < n, ms.float32)
        if self.integrate:
            ends = ops.cast(ops.logical_or(i == 0, i == n - 1.0), ms.float32)
            mask = mask * step * (1.0 - 0.5 * ends) * full
        if m == 1:  # one control value: every row reads it, at the block's place in the axis
            rows = self.rows[k]
            idx = ops.zeros((rows, 4), ms.int32) + self.starts[k]
            wts = ops.concat([mask.reshape(-1, 1), ops.zeros((rows, 3), ms.float32)], 1)
            return idx, wts
        idx, wts = node_taps(i, n, float(m - 1))
        return idx + self.starts[k], wts * mask.reshape(-1, 1)

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

    def _block_matrix(self, k, n):
        """Block ``k``'s dense ``rows × m`` matrix at size ``n`` under its
        rule (:func:`inn_ms.resampling.antialiased_matrix`, whose stretch 1
        is point sampling); rows past ``n`` zero, quadrature folded in."""
        _, full, m = self.blocks[k]
        i = self.ranges[k]
        n = ops.maximum(n, 2.0)
        step = 1.0 / (n - 1.0)
        mask = ops.cast(i < n, ms.float32)
        if self.integrate:
            ends = ops.cast(ops.logical_or(i == 0, i == n - 1.0), ms.float32)
            mask = mask * step * (1.0 - 0.5 * ends) * full
        if m == 1:
            return mask.reshape(-1, 1)
        if self.rules[k] == "point":
            idx, wts = self._block_taps(k, n)  # the same mask folded in
            return taps_matrix(idx - self.starts[k], wts, m)
        s, reach = ops.maximum((m - 1.0) / (n - 1.0), 1.0), 2 * (m - 1) + 1
        return antialiased_matrix(ops.minimum(i * step, 1.0), m, s, reach) * mask.reshape(-1, 1)

    def matrix(self):
        """The axis's dense matrix at the run-time sizes (blocks on the diagonal)."""
        sizes = ops.cast(self.state[0].sizes, ms.float32)
        total = sum(m for _, _, m in self.blocks)
        rows = []
        for k in range(len(self.blocks)):
            g, full, m = self.blocks[k]
            n = sizes[g] if g is not None else Tensor(float(full), ms.float32)
            block = self._block_matrix(k, n)
            parts = [block]
            if self.starts[k] > 0:
                parts.insert(0, ops.zeros((self.rows[k], self.starts[k]), ms.float32))
            after = total - self.starts[k] - m
            if after > 0:
                parts.append(ops.zeros((self.rows[k], after), ms.float32))
            rows.append(parts[0] if len(parts) == 1 else ops.concat(parts, 1))
        return rows[0] if len(rows) == 1 else ops.concat(rows, 0)

    def sample_rows(self, x):
        """``A · x`` for control rows ``x`` (``m × r``) by four gathers: the
        kernel matrix is banded, so this costs 4·N·r, not m·N·r (a dense
        matmul for antialiased axes)."""
        if self.dense:
            return ops.matmul(self.matrix(), x)
        idx, wts = self.taps()
        out = None
        for t in range(4):
            term = ops.gather(x, idx[:, t], 0) * wts[:, t:t + 1]
            out = term if out is None else out + term
        return out

    def sample_columns(self, x):
        """``A`` along axis 1 of ``x`` (``s × m × r`` → ``s × N × r``)."""
        if self.dense:
            return apply_along_axis1(self.matrix(), x)
        idx, wts = self.taps()
        out = None
        for t in range(4):
            term = ops.gather(x, idx[:, t], 1) * wts[:, t].reshape(1, -1, 1)
            out = term if out is None else out + term
        return out

    def construct(self):
        """The dense sampling matrix (for checks; layers use the taps)."""
        if self.dense:
            return self.matrix()
        total = sum(m for _, _, m in self.blocks)
        return self.sample_rows(ops.eye(total, total, ms.float32))


DENSE_SAMPLING = True  # sample cached layers by matmuls (see _sample_axis), not gathers


def taps_matrix(idx, wts, m):
    """The dense ``rows × m`` matrix of four taps a row (indices ``idx``,
    weights ``wts``, both ``rows × 4``)."""
    hot = ops.one_hot(idx, m, Tensor(1.0, ms.float32), Tensor(0.0, ms.float32))
    return (hot * wts.reshape(wts.shape[0], 4, 1)).sum(1)


class _Spec:
    """One sampling block a bucket computes once per refresh and every layer
    reading it shares: a group (or a fixed part, ``group`` None) with
    ``rows`` rows in the bucket, sampled from ``m`` control values, with or
    without the quadrature, under a rule."""

    def __init__(self, group, full, m, rows, integrate, rule):
        self.group, self.full, self.m, self.rows = group, int(full), int(m), int(rows)
        self.integrate, self.rule = bool(integrate), rule
        self.key = (group, self.full, self.m, self.rows, self.integrate, rule)


def _spec_taps(spec, n):
    """Block ``spec`` at size ``n`` (a float scalar tensor): ``(idx, wts)``,
    the Keys kernel's four taps per row as control indices ``(rows, 4)`` and
    weights (rows past ``n`` weigh zero, quadrature folded in) — or, for an
    antialiased rule, the dense ``rows × m`` matrix."""
    i = Tensor(np.arange(spec.rows, dtype=np.float32))
    n = ops.maximum(n, 2.0)
    step = 1.0 / (n - 1.0)
    mask = ops.cast(i < n, ms.float32)
    if spec.integrate:
        ends = ops.cast(ops.logical_or(i == 0, i == n - 1.0), ms.float32)
        mask = mask * step * (1.0 - 0.5 * ends) * spec.full
    m = spec.m
    if spec.rule != "point":
        if m == 1:
            return mask.reshape(-1, 1)
        s, reach = ops.maximum((m - 1.0) / (n - 1.0), 1.0), 2 * (m - 1) + 1
        return antialiased_matrix(ops.minimum(i * step, 1.0), m, s, reach) * mask.reshape(-1, 1)
    if m == 1:
        return ops.zeros((spec.rows, 4), ms.int32), \
            ops.concat([mask.reshape(-1, 1), ops.zeros((spec.rows, 3), ms.float32)], 1)
    idx, wts = node_taps(i, n, float(m - 1))
    return idx, wts * mask.reshape(-1, 1)


class _Axis:
    """How a cached layer's axis is sampled in its bucket: the specs of its
    blocks (indices into the bucket's list) and where each block's control
    values start; ``dense`` when a block is antialiased (a matrix, not taps)."""

    def __init__(self, specs, starts, total, dense):
        self.specs, self.starts, self.total, self.dense = tuple(specs), tuple(starts), int(total), dense
        self.key = (self.specs, self.starts, self.total, dense)


def _axis_sampler(axis, blocks, specs):
    """The bucket-wide sampler of ``axis`` (its taps, or its dense matrix):
    blocks stacked, each block's control columns offset to its place."""
    if axis.dense:
        total, mats = axis.total, []
        for k, start in zip(axis.specs, axis.starts):
            block = blocks[k]
            if specs[k].rule == "point":  # taps as a dense block
                block = taps_matrix(*block, specs[k].m)
            parts = [block]
            if start > 0:
                parts.insert(0, ops.zeros((specs[k].rows, start), ms.float32))
            after = total - start - specs[k].m
            if after > 0:
                parts.append(ops.zeros((specs[k].rows, after), ms.float32))
            mats.append(parts[0] if len(parts) == 1 else ops.concat(parts, 1))
        return mats[0] if len(mats) == 1 else ops.concat(mats, 0)
    idx = [blocks[k][0] + start if start else blocks[k][0] for k, start in zip(axis.specs, axis.starts)]
    wts = [blocks[k][1] for k in axis.specs]
    if len(idx) == 1:
        return idx[0], wts[0]
    return ops.concat(idx, 0), ops.concat(wts, 0)


def _sample_axis(x, sampler, dense, axis):
    """``x`` sampled along ``axis`` (0 of ``m × r`` or 1 of ``s × m × r``):
    one gather of the four taps per row and a weighted sum (the kernel
    matrix is banded: 4·rows·r work, not m·rows·r), or a dense matmul."""
    if dense:
        if axis == 0:
            return ops.matmul(sampler, x)
        return apply_along_axis1(sampler, x)  # a broadcast batched matmul would copy the matrix per row
    idx, wts = sampler
    rows = idx.shape[0]
    picked = ops.gather(x, idx.reshape(-1), axis)
    if axis == 0:
        return (picked.reshape(rows, 4, -1) * wts.reshape(rows, 4, 1)).sum(1)
    return (picked.reshape(x.shape[0], rows, 4, -1) * wts.reshape(1, rows, 4, 1)).sum(2)


class SampledCache(nn.Cell):
    """An integral convolution or dense layer run on sampled weights kept
    in buffers (``sampled_weight``, ``sampled_bias``): its bucket writes
    them when the sizes change (:meth:`sample`), ``construct`` reads them.
    The buffers are run-time state: the MindIR stores them without data."""

    def __init__(self, layer, weight_shape, bias_shape, out_axis=None, in_axis=None):
        super().__init__()
        self.layer = layer
        self.out = out_axis  # _Axis or None (a discrete axis)
        self.inp = in_axis
        self.sampled_weight = Parameter(Tensor(np.zeros(weight_shape, np.float32)), name="sampled_weight",
                                        requires_grad=False)
        self.has_bias = bias_shape is not None
        self.sampled_bias = None if bias_shape is None else Parameter(
            Tensor(np.zeros(bias_shape, np.float32)), name="sampled_bias", requires_grad=False)

    def sample(self, samplers):
        """The weight and bias at the bucket's current sizes; ``samplers``:
        the bucket's axis samplers (:func:`_axis_sampler`), by axis index."""
        w = self.layer.weight
        shape = w.shape
        if self.out is not None:
            rows = _sample_axis(w.reshape(shape[0], -1), samplers[self.out_index], self.out.dense, 0)
            w = rows.reshape((rows.shape[0],) + shape[1:])
        if self.inp is not None:
            s = w.shape
            cols = _sample_axis(w.reshape(s[0], s[1], -1), samplers[self.in_index], self.inp.dense, 1)
            w = cols.reshape((s[0], cols.shape[1]) + s[2:])
        b = None
        if self.has_bias:
            b = self.layer.bias
            if self.out is not None:
                b = _sample_axis(b.reshape(-1, 1), samplers[self.out_index], self.out.dense, 0).reshape(-1)
        return w, b

    def construct(self, x, size_key=None):
        return self.layer.forward_sampled(x, self.sampled_weight, self.sampled_bias)


class ElasticBucket(nn.Cell):
    """The network with static shapes of ``rows`` channels per group, for
    any sizes up to those, with its own last sizes and sampled weights.

    A call compares the sizes with the last call's; a pure branch gives
    either fresh samples (each sampling block computed once, shared by the
    layers reading it) or the kept ones, and the buffers are written after
    it, unconditionally. (An assign inside the branch made MindSpore 2.10
    hold twice the activation memory of the whole forward pass: measured.)"""

    def __init__(self, network, state, caches, rows, specs, axes):
        super().__init__()
        self.network = network
        self.state = state
        self.caches = list(caches)  # a plain list: the caches are sub-cells of ``network`` already
        self.biased = [c for c in self.caches if c.has_bias]
        self.rows = Tensor(np.array(rows, np.int32))
        self.specs = list(specs)
        self.axes = list(axes)
        self._table(len(rows))

    def _table(self, groups):
        """Constant per-row columns of the point-rule blocks' table (see
        :meth:`_taps`); a fixed part (no group) reads its full size from
        entries appended to the sizes."""
        rows, group, full, last, integrate, fixed, self.table_starts = [], [], [], [], [], [], []
        offset = 0
        for spec in self.specs:
            if spec.rule != "point":
                self.table_starts.append(None)
                continue
            if spec.group is None:
                fixed.append(float(spec.full))
                g = groups + len(fixed) - 1
            else:
                g = spec.group
            self.table_starts.append(offset)
            offset += spec.rows
            rows += list(range(spec.rows))
            group += [g] * spec.rows
            full += [spec.full] * spec.rows
            last += [spec.m - 1] * spec.rows
            integrate += [float(spec.integrate)] * spec.rows
        const = lambda v, t=np.float32: Tensor(np.array(v, t)) if offset else None
        self.table_row, self.table_group = const(rows), const(group, np.int32)
        self.table_full, self.table_last, self.table_integrate = const(full), const(last), const(integrate)
        self.fixed = Tensor(np.array(fixed, np.float32)) if fixed else None

    def fits(self, sizes):
        return (sizes <= self.rows).all()

    def _taps(self, sizes):
        """Every point-rule block's taps at once, over one table of all their
        rows (a handful of ops for the whole bucket, not per block: the
        graph's size and compile time follow its op count)."""
        n = ops.cast(sizes, ms.float32)
        if self.fixed is not None:
            n = ops.concat([n, self.fixed])
        n = ops.maximum(ops.gather(n, self.table_group, 0), 2.0)
        i = self.table_row
        step = 1.0 / (n - 1.0)
        mask = ops.cast(i < n, ms.float32)
        ends = ops.cast(ops.logical_or(i == 0, i == n - 1.0), ms.float32)
        q = mask * (1.0 + self.table_integrate * (step * (1.0 - 0.5 * ends) * self.table_full - 1.0))
        idx, wts = node_taps(i, n, self.table_last)
        return idx, wts * q.reshape(-1, 1)

    def _samples(self, sizes):
        blocks = []
        if self.table_row is not None:
            idx, wts = self._taps(sizes)
        n = ops.cast(sizes, ms.float32)
        for spec, start in zip(self.specs, self.table_starts):
            if start is not None:
                blocks.append((idx[start:start + spec.rows], wts[start:start + spec.rows]))
            else:
                blocks.append(_spec_taps(spec, n[spec.group] if spec.group is not None
                                         else Tensor(float(spec.full), ms.float32)))
        samplers = [_axis_sampler(axis, blocks, self.specs) for axis in self.axes]
        weights, biases = [], []
        for cache in self.caches:
            w, b = cache.sample(samplers)
            weights.append(w)
            if cache.has_bias:
                biases.append(b)
        return weights, biases

    def construct(self, x, sizes):
        changed = (sizes != self.state.sizes).any()
        ops.assign(self.state.sizes, sizes)
        if changed:
            weights, biases = self._samples(sizes)
        else:
            weights = [cache.sampled_weight for cache in self.caches]
            biases = [cache.sampled_bias for cache in self.biased]
        for cache, w in zip(self.caches, weights):
            ops.assign(cache.sampled_weight, w)
        for cache, b in zip(self.biased, biases):
            ops.assign(cache.sampled_bias, b)
        return self.network(x)


class ElasticNetwork(nn.Cell):
    """``net(x, sizes)``: the integral network at run-time channel counts,
    run by the narrowest bucket whose widths hold ``sizes``.

    ``sizes`` are first clamped to each group's valid range ``[low, high]``
    (:func:`elastic_ranges`), in the graph itself: a runtime that calls the
    MindIR without inn_ms's checks (:class:`inn_ms.export.MindIRGraph`
    refuses such sizes) gets the network at the nearest valid width, never
    numbers from an impossible one (wider than trained, or below two
    channels, where the partition is undefined)."""

    def __init__(self, network, buckets, group_names, full_sizes, fractions, ranges=None):
        super().__init__()
        # The control weights, which every bucket shares; held here first so
        # their names are the integral model's ("network.conv1.weight").
        self.network = network
        self.buckets = nn.CellList(buckets)
        self.group_names = list(group_names)
        self.full_sizes = list(full_sizes)
        self.fractions = tuple(fractions)
        ranges = ranges or [(2, n) for n in self.full_sizes]
        self.ranges = [tuple(r) for r in ranges]
        self.low = Tensor(np.array([r[0] for r in ranges], np.int32))
        self.high = Tensor(np.array([r[1] for r in ranges], np.int32))

    def invalidate(self):
        """Make the next call resample every layer (needed after loading or
        changing the control weights of this network in place). PyNative
        only: in graph mode MindSpore 2.10 does not see ``set_data`` on a
        Parameter read inside a branch (measured), so build a new elastic
        network from the changed model instead."""
        for bucket in self.buckets:
            bucket.state.sizes.set_data(Tensor(np.zeros(len(self.group_names), np.int32)))

    def construct(self, x, sizes):
        sizes = ops.minimum(ops.maximum(sizes, self.low), self.high)
        for k in range(len(self.buckets) - 1):
            if self.buckets[k].fits(sizes):
                return self.buckets[k](x, sizes)
        return self.buckets[-1](x, sizes)


def elastic_ranges(model):
    """``[(low, high)]`` per group (in ``model.groups`` order): the sizes an
    elastic network of ``model`` accepts: the group's allowed range (from its
    artifact) within :func:`inn_ms.partition.size_range`
    (:meth:`inn_ms.model.IntegralModel.allowed_range`)."""
    return [model.allowed_range(name) for name in model.groups]


def bucket_rows(model, fraction):
    """Channels per group of the bucket at ``fraction`` of full width:
    ``ceil(fraction · full)``, at least the group's smallest size (so it
    holds ``keep=fraction``)."""
    rows = []
    for p in model.groups.values():
        low, high = size_range(p)
        rows.append(min(high, max(low, int(np.ceil(fraction * p.full_size - 1e-9)))))
    return rows


def elastic_layers(model):
    """``(network, state)``: a copy of ``model.network`` that shares its
    Parameters and samples every layer at the sizes held in
    ``state.sizes`` (an int32 Parameter, one size per group in
    ``model.groups`` order, which the caller assigns before each run).

    Shapes are the full width's and the channels past each size are zero,
    as in the elastic network, but the weights are sampled on every call
    (no kept samples), so gradients reach the control weights: one compiled
    train step serves every width (:class:`inn_ms.train.ElasticTrainStep`).
    The resampling rules are read now; a model whose rules or partitions
    change needs a new copy."""
    for part in model.groups.values():
        check_elastic_partition(part)
    state = _SizeState(len(model.groups))
    group_index = {id(p): k for k, p in enumerate(model.groups.values())}

    def axes_only(cell):
        return ElasticAxis(cell, group_index, state, dense=True) if isinstance(cell, AxisSampler) else None

    with model.at_sizes(model.full_sizes):
        network = copy_tree(model.network, axes_only, share_parameters=True)
    return network, state


class ElasticEval(nn.Cell):
    """``net(x, sizes)``: ``model``'s network at run-time sizes (an int32
    tensor, :func:`elastic_sizes`), for evaluation: one compiled graph for
    every width, where a discretized network compiles one per width. It
    computes at full width with the channels past each size zero
    (:func:`elastic_layers`), so a call costs the full width's compute:
    cheaper than a compile whenever widths change more often than inputs
    (a width search scores hundreds of widths on the same few hundred
    samples). Built with the model's resampling rules of the moment."""

    def __init__(self, model):
        super().__init__()
        self.network, self.state = elastic_layers(model)

    def construct(self, x, sizes):
        ops.assign(self.state.sizes, sizes)
        return self.network(x)


def make_elastic(model, buckets=(0.25, 0.5, 0.75, 1.0)):
    """An :class:`ElasticNetwork` with its own copy of ``model``'s weights.

    ``buckets``: fractions of full width, one static-shape branch each; a
    call runs the narrowest branch that holds its sizes, so its compute is
    at most that of the next bucket up (the ``1.0`` bucket is always
    there). More buckets: less compute wasted, a larger graph and MindIR
    (each branch keeps sampled weights of its own width; the control
    weights are shared)."""
    fractions = sorted({float(f) for f in buckets} | {1.0})
    if not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"make_elastic: bucket fractions must be in (0, 1], got {buckets!r}")
    blocked = [n for n, p in model.groups.items() if size_step(p) > 1]
    if blocked:
        raise ValueError(f"make_elastic: group(s) {blocked} come in blocks (a grouped convolution's channels), "
                         f"which elastic networks do not support yet")
    group_index = {id(p): k for k, p in enumerate(model.groups.values())}
    with model.at_sizes(model.full_sizes):
        base = copy_tree(model.network, lambda c: None)  # the elastic network's own control weights
        branches = [_bucket(base, group_index, bucket_rows(model, f)) for f in fractions]
    net = ElasticNetwork(base, branches, model.groups.keys(), model.full_sizes.values(), fractions,
                         elastic_ranges(model))
    return name_parameters_by_path(net)


def _bucket(base, group_index, rows):
    """One :class:`ElasticBucket` of ``base`` (a full-size copy of the
    network, whose Parameters it shares) with ``rows`` channels per group."""
    state = _SizeState(len(group_index))
    by_group = dict(enumerate(rows))
    caches, specs, axes = [], {}, {}

    def axes_only(cell):
        if isinstance(cell, AxisSampler):
            return ElasticAxis(cell, group_index, state, by_group)
        return None

    def plan(axis):
        """Register ``axis``'s blocks and its sampler with the bucket; its index."""
        if axis is None:
            return None, None
        keys, starts = [], []
        for (g, full, m), r, start, rule in zip(axis.blocks, axis.rows, axis.starts, axis.rules):
            spec = _Spec(g, full, m, r, axis.integrate, rule)
            keys.append(specs.setdefault(spec.key, (len(specs), spec))[0])
            starts.append(start)
        plan_ = _Axis(keys, starts, sum(m for _, _, m in axis.blocks), axis.dense or DENSE_SAMPLING)
        return plan_, axes.setdefault(plan_.key, (len(axes), plan_))[0]

    def replace(cell):
        if isinstance(cell, (IntegralConv2d, IntegralDense)):
            layer = copy_tree(cell, axes_only, share_parameters=True)
            shape = list(cell.weight.shape)  # control shape; continuous axes become this bucket's rows
            if layer.out_axis is not None:
                shape[0] = layer.out_axis.size
            if layer.in_axis is not None:
                shape[1] = layer.in_axis.size
            bias = None if cell.bias is None else (shape[0],)
            out_plan, out_index = plan(layer.out_axis)
            in_plan, in_index = plan(layer.in_axis)
            cache = SampledCache(layer, tuple(shape), bias, out_plan, in_plan)
            cache.out_index, cache.in_index = out_index, in_index
            caches.append(cache)
            return cache
        return axes_only(cell)

    network = copy_tree(base, replace, share_parameters=True)
    spec_list = [spec for _, spec in sorted(specs.values(), key=lambda v: v[0])]
    axis_list = [a for _, a in sorted(axes.values(), key=lambda v: v[0])]
    return ElasticBucket(network, state, caches, rows, spec_list, axis_list)


def elastic_sizes(model, keep=None, sizes=None):
    """The int32 size vector for an elastic network of ``model``: one keep
    ratio, or ``sizes`` per group (others full). Sizes outside a group's
    range (:func:`elastic_ranges`: at least 2, within its allowed sizes) are
    refused."""
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
    for (name, n), (low, high) in zip(target.items(), elastic_ranges(model)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not low <= n <= high:
            raise ValueError(f"elastic_sizes: size of group {name!r} must be an int in [{low}, {high}], got {n!r}")
    return Tensor(np.array([target[g] for g in model.groups], np.int32))


def export_elastic(model, path, input_shape, dynamic_batch=True, backend="native",
                   buckets=(0.25, 0.5, 0.75, 1.0)):
    """Export the elastic network of ``model`` as MindIR with inputs
    ``(x, sizes)``; see :func:`inn_ms.export.export_mindir` for the options
    and :func:`make_elastic` for ``buckets``. ``input_shape`` is checked
    first (the full-width network must compile for it, as ``prune``
    checks), so no MindIR is written that cannot run its own input. The
    file records every group's name and range, which
    :class:`inn_ms.export.MindIRGraph` checks ``sizes`` against."""
    with model.at_sizes(model.full_sizes):
        shape = check_input_shape(model.discretize(), input_shape)
    net = make_elastic(model, buckets=buckets)
    ranges = elastic_ranges(model)
    groups = [{"name": g, "full": int(model.full_sizes[g]), "low": low, "high": high}
              for g, (low, high) in zip(model.groups, ranges)]
    widest = Tensor(np.array([high for _, high in ranges], np.int32))
    return export_mindir(net, path, shape, dynamic_batch=dynamic_batch, backend=backend,
                         extra_inputs=(widest,), input_names=["x", "sizes"],
                         info={"elastic": {"sizes_input": 1, "groups": groups}}, runtime_state=is_runtime_state)


def is_runtime_state(name):
    """Whether the Parameter ``name`` of an elastic network is run-time state
    (sampled weights, rewritten on the first call), stored without data."""
    return name.endswith((".sampled_weight", ".sampled_bias"))
