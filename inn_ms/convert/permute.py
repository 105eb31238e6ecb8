"""Permuting each channel group so its weights are smooth along the channels.

A channel group's channels can be put in any order without changing what
the network computes, as long as every tensor of the group follows the same
order: the producers' output rows and biases, the BatchNorms on the group,
the depthwise convolutions, and the consumers' input columns (at the
group's offset after a concatenation, each channel's ``spatial`` columns
after a flatten). The order chosen is a short travelling-salesman path
through the channels (:mod:`inn_ms.convert.tsp`), so that neighbouring
channels, which the cubic interpolation blends when resampling, are alike.
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


def group_slots(network, groups, name):
    """``[(label, [slots])]``: the tensors of group ``name``, one entry per
    tensor used for the distance (a BatchNorm's four vectors form one), as
    each layer's kind lists them (:mod:`inn_ms.graph.kinds`)."""
    size = groups.groups[name].size
    out = []
    for path, axis, offset, spatial in groups.members(name):
        kind = layer_kind(groups.layers[path].kind)
        cell = get_cell(network, path)
        for entry in (kind.out_tensors if axis == "out" else kind.in_tensors):
            slots = []
            for attr, along in entry:
                param = getattr(cell, attr, None)
                if isinstance(param, Parameter):
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
    before = total_variation(tensors)
    if order is None:
        order = solve_path(distance_matrix(tensors), **solver)
    order = np.asarray(order, dtype=np.int64)
    size = groups.groups[name].size
    if order.shape != (size,) or not np.array_equal(np.sort(order), np.arange(size)):
        raise ValueError(f"permute_group: order must be a permutation of {size} channels for group {name!r}")
    after = total_variation(tensors, order)
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
