"""Permuting each channel group so its weights are smooth along the channels.

A channel group's channels can be put in any order without changing what
the network computes, as long as every tensor of the group follows the same
order: the producers' output rows and biases, the BatchNorms on the group,
the depthwise convolutions, and the consumers' input columns (at the
group's offset after a concatenation, each channel's ``spatial`` columns
after a flatten). The order chosen is a short travelling-salesman path
through the channels (:mod:`inn_ms.convert.tsp`), so that neighbouring
channels, which the cubic interpolation blends when resampling, are alike.

A group of blocks (the channels of a grouped convolution, ``blocks > 1`` in
:class:`~inn_ms.graph.channels.ChannelGroup`) is permuted inside each block
only, with one path per block: each block is its own piece of the weight
functions (resampled on its own), and its channels are read by one group of
the convolution only, so a channel moved to another block would change what
the network computes, and one order shared by every block would fit none of
them. The grouped convolution's own input axis (one block's channels per
group of output rows) takes, in each group of rows, its block's order.
"""
import logging
from collections import OrderedDict

import numpy as np
from mindspore import Parameter, Tensor

from inn_ms.cells import get_cell
from inn_ms.graph.kinds import layer_kind
from inn_ms.convert.tsp import distance_matrix, solve_path, total_variation

logger = logging.getLogger(__name__)


class _Slot:
    """One group-indexed slice of one parameter: ``get()`` returns it as
    rows (channels first), ``put(order)`` permutes those channels in place."""

    def __init__(self, param, axis, offset, channels, spatial=1):
        self.param, self.axis, self.offset, self.channels, self.spatial = param, axis, offset, channels, spatial

    def _index(self):
        lo = self.offset * self.spatial
        return lo, lo + self.channels * self.spatial

    def get(self):
        a = self.param.asnumpy()
        lo, hi = self._index()
        block = np.take(a, np.arange(lo, hi), axis=self.axis)
        block = np.moveaxis(block, self.axis, 0)
        return block.reshape(self.channels, -1)

    def put(self, order):
        a = self.param.asnumpy().copy()
        lo, hi = self._index()
        idx = np.arange(lo, hi).reshape(self.channels, self.spatial)
        src = idx[np.asarray(order)].reshape(-1)
        moved = np.take(a, src, axis=self.axis)
        index = [slice(None)] * a.ndim
        index[self.axis] = slice(lo, hi)
        a[tuple(index)] = moved
        self.param.set_data(Tensor(a, dtype=self.param.dtype))


class _BlockSlot(_Slot):
    """The input axis of a grouped layer's tensor: along ``axis`` one
    block's channels, read by output rows ``b·rows/blocks …`` (along
    ``out_axis``) for block ``b``. ``get()`` gives one row per channel of
    the group (block by block), ``put(order)`` permutes each block of rows
    by its part of ``order`` (which must keep channels in their blocks)."""

    def __init__(self, param, axis, out_axis, blocks, channels):
        super().__init__(param, axis, 0, channels)
        self.out_axis, self.blocks = out_axis, blocks

    def _row_blocks(self, a):
        rows = a.shape[self.out_axis] // self.blocks
        return [(b, np.arange(b * rows, (b + 1) * rows)) for b in range(self.blocks)]

    def get(self):
        a = self.param.asnumpy()
        per = self.channels // self.blocks
        out = []
        for _, rows in self._row_blocks(a):
            part = np.moveaxis(np.take(a, rows, axis=self.out_axis), self.axis, 0)
            out.append(part.reshape(per, -1))
        return np.concatenate(out, axis=0)

    def put(self, order):
        a = self.param.asnumpy().copy()
        per = self.channels // self.blocks
        order = np.asarray(order)
        for b, rows in self._row_blocks(a):
            local = order[b * per:(b + 1) * per] - b * per
            part = np.take(np.take(a, rows, axis=self.out_axis), local, axis=self.axis)
            index = [slice(None)] * a.ndim
            index[self.out_axis] = slice(int(rows[0]), int(rows[-1]) + 1)
            a[tuple(index)] = part
        self.param.set_data(Tensor(a, dtype=self.param.dtype))


def group_slots(network, groups, name):
    """``[(label, [slots])]``: the tensors of group ``name``, one entry per
    tensor used for the distance (a BatchNorm's four vectors form one), as
    each layer's kind lists them (:mod:`inn_ms.graph.kinds`)."""
    size = groups.groups[name].size
    out = []
    for path, axis, offset, spatial in groups.members(name):
        kind = layer_kind(groups.layers[path].kind)
        cell = get_cell(network, path)
        blocks = int(kind.blocks(cell)) if kind.blocks is not None and axis == "in" else 1
        for entry in (kind.out_tensors if axis == "out" else kind.in_tensors):
            slots = []
            for attr, along in entry:
                param = getattr(cell, attr, None)
                if not isinstance(param, Parameter):
                    continue
                if blocks > 1:  # the tracer gives a grouped layer one whole group as its input
                    slots.append(_BlockSlot(param, along, kind.out_axis, blocks, size))
                else:
                    slots.append(_Slot(param, along, offset, size, spatial if axis == "in" else 1))
            if slots:
                out.append((f"{path}.{'+'.join(a for a, _ in entry)}[{axis}]", slots))
    return out


def _rows(slots):
    return np.concatenate([s.get() for s in slots], axis=1)


def permute_group(network, groups, name, order=None, **solver):
    """Permute group ``name`` by ``order`` (a permutation of its channels),
    or by a travelling-salesman path over its tensors when ``order`` is None.
    Returns ``(order, tv_before, tv_after)``."""
    entries = group_slots(network, groups, name)
    tensors = [_rows(slots) for _, slots in entries]
    size, blocks = groups.groups[name].size, groups.groups[name].blocks
    per = size // blocks
    spans = [slice(b * per, (b + 1) * per) for b in range(blocks)]
    in_block = [[t[span] for t in tensors] for span in spans]
    before = sum(total_variation(ts) for ts in in_block)
    if order is None:
        order = np.concatenate([span.start + solve_path(distance_matrix(ts), **solver)
                                for span, ts in zip(spans, in_block)])
    order = np.asarray(order, dtype=np.int64)
    if order.shape != (size,) or not np.array_equal(np.sort(order), np.arange(size)):
        raise ValueError(f"permute_group: order must be a permutation of {size} channels for group {name!r}")
    if blocks > 1 and any(not np.array_equal(np.sort(order[span]), np.arange(span.start, span.stop))
                          for span in spans):
        raise ValueError(f"permute_group: group {name!r} comes in {blocks} blocks of {per} channels (a grouped "
                         f"convolution's groups); order must keep every channel in its block")
    after = sum(total_variation(ts, order[span] - span.start) for span, ts in zip(spans, in_block))
    if not np.array_equal(order, np.arange(size)):
        for _, slots in entries:
            for s in slots:
                s.put(order)
    return order, before, after


def permute_channels(network, groups, names=None, **solver):
    """Permute every continuous group (or those in ``names``) of ``network``
    in place. Returns ``{group: {"order", "tv_before", "tv_after"}}``."""
    names = groups.continuous if names is None else list(names)
    report = OrderedDict()
    for name in names:
        if name not in groups.groups:
            raise ValueError(f"permute_channels: unknown group {name!r}")
        order, before, after = permute_group(network, groups, name, **solver)
        report[name] = {"order": order, "tv_before": before, "tv_after": after}
        logger.info("group %s: total variation %.4g -> %.4g", name, before, after)
    return report
