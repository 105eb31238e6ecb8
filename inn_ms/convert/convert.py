"""One call from a trained discrete network to an integral one (DESIGN.md §5).

:func:`convert` finds the channel groups from the network's graph, folds
BatchNorms into the layers before them, permutes every group's channels
along a short travelling-salesman path, and replaces each ``nn.Conv2d``,
``nn.Dense`` and remaining ``nn.BatchNorm2d`` on a continuous group by its
integral counterpart built so that, at full size, the network computes
exactly what it did (one control value per channel, divided by the
full-size quadrature weights). The result is an
:class:`~inn_ms.model.IntegralModel`: ``resize`` it, ``discretize`` it,
train it with random widths (pipeline A) or tune its partitions (pipeline B,
:mod:`inn_ms.convert.pipelines`).
"""
import logging
from collections import OrderedDict

import numpy as np
from mindspore import nn

from inn_ms.convert.bn import fold_batchnorms, output_statistics
from inn_ms.convert.cells import get_cell, name_parameters_by_path, set_cell
from inn_ms.convert.permute import permute_channels
from inn_ms.graph.channels import find_channel_groups
from inn_ms.graph.mindir import _as_tensor
from inn_ms.layers import IntegralConv2d, IntegralDense
from inn_ms.layers.batchnorm import IntegralBatchNorm2d
from inn_ms.partition import CompositePartition, UniformPartition

logger = logging.getLogger(__name__)


def clone_network(network):
    """A copy of ``network`` with its own parameters (the user's network is
    never changed by conversion)."""
    from inn_ms.model import _rebuild
    net = _rebuild(network, lambda c: None)
    name_parameters_by_path(net)  # unique names: graph compilation refuses duplicates
    return net


def _input_partition(use, partitions, quadrature):
    """The partition of a layer's input axis: one group's, a composite of
    several (after a concatenation; discrete parts get a fixed partition
    that is never resized), or None when every part is discrete."""
    parts = []
    for group, channels, _ in use.inputs:
        parts.append(partitions.get(group))
    if all(p is None for p in parts):
        return None
    if len(parts) == 1:
        return parts[0]
    fixed = [p if p is not None else UniformPartition(ch, quadrature=quadrature, name=f"{use.path}.fixed{k}")
             for k, (p, (_, ch, _)) in enumerate(zip(parts, use.inputs))]
    return CompositePartition(fixed, name=f"{use.path}.in")


def _integral_layer(cell, use, partitions, quadrature):
    """The integral replacement of ``cell`` (None: it stays as it is)."""
    in_p = _input_partition(use, partitions, quadrature)
    out_p = partitions.get(use.out) if use.out is not None else None
    if use.kind == "conv":
        if in_p is None and out_p is None:
            return None
        return IntegralConv2d.from_discrete(cell, in_partition=in_p, out_partition=out_p, quadrature=quadrature)
    if use.kind == "depthwise":
        if in_p is None:
            return None
        return IntegralConv2d.from_discrete(cell, in_partition=in_p, out_partition=in_p, quadrature=quadrature)
    if use.kind == "dense":
        if in_p is None and out_p is None:
            return None
        spatial = {s for _, _, s in use.inputs}
        if len(spatial) != 1:
            raise ValueError(f"convert: dense layer {use.path} reads channels flattened with different "
                             f"spatial sizes {sorted(spatial)}")
        return IntegralDense.from_discrete(cell, in_partition=in_p, out_partition=out_p, quadrature=quadrature,
                                           in_spatial=spatial.pop())
    if use.kind == "bn":
        if in_p is None:
            return None
        return IntegralBatchNorm2d.from_discrete(cell, partition=in_p, quadrature=quadrature)
    return None


def convert(network, example_input, *, fold_bn=True, permute=True, discrete_dims=None, continuous_dims=None,
            quadrature="trapezoid", verify=True, tolerance=1e-5, solver=None, builder=None, builder_kwargs=None):
    """An :class:`~inn_ms.model.IntegralModel` equal to ``network`` at full size.

    ``example_input``: a tensor, array or shape the network accepts (its
    graph is traced for it). ``fold_bn``: fold BatchNorms into the layer
    before them where that layer's output goes only to the BatchNorm.
    ``permute``: reorder each group's channels (travelling-salesman path)
    so the weights are smooth along the channels. ``discrete_dims`` /
    ``continuous_dims``: ``{parameter name: [axes]}``, see
    :func:`~inn_ms.graph.channels.find_channel_groups`. ``verify``: run both
    networks on ``example_input`` and raise if the outputs differ by more
    than ``tolerance × max |output|``. ``solver``: keyword arguments for
    :func:`~inn_ms.convert.tsp.solve_path`. ``builder`` (a zoo name or
    ``module:callable`` that builds ``network``'s architecture, called with
    ``builder_kwargs``): recorded as ``model.architecture`` so the model can
    be saved as an integral artifact (:mod:`inn_ms.artifact`).

    The returned model carries ``conversion``: the channel groups, the folded
    BatchNorms, and each group's total variation before and after permuting.
    """
    from inn_ms.model import IntegralModel

    if not isinstance(network, nn.Cell):
        raise ValueError(f"convert: expected a MindSpore Cell, got {type(network).__name__}")
    x = _as_tensor(example_input)
    net = clone_network(network)
    net.set_train(False)
    groups = find_channel_groups(net, x, discrete_dims=discrete_dims, continuous_dims=continuous_dims)
    folded, statistics = [], OrderedDict()
    if fold_bn and groups.bn_after:
        before = {layer: output_statistics(get_cell(net, bn)) for bn, layer in groups.bn_after.items()
                  if isinstance(get_cell(net, bn), nn.BatchNorm2d)}
        folded = fold_batchnorms(net, groups.bn_after)
        statistics = OrderedDict((groups.bn_after[bn], before[groups.bn_after[bn]]) for bn in folded
                                 if groups.bn_after[bn] in before)
        if folded:
            groups = find_channel_groups(net, x, discrete_dims=discrete_dims, continuous_dims=continuous_dims)
    if not groups.continuous:
        raise ValueError("convert: no channel group can be continuous:\n" + groups.summary())
    report = permute_channels(net, groups, **(solver or {})) if permute else OrderedDict()
    for path, (mean, std) in statistics.items():  # the statistics follow their channels
        use = groups.layers.get(path)
        if use is not None and use.out in report:
            order = report[use.out]["order"]
            statistics[path] = (mean[order], std[order])

    partitions = OrderedDict((name, UniformPartition(groups.groups[name].size, quadrature=quadrature, name=name))
                             for name in groups.continuous)
    for path, use in groups.layers.items():
        new = _integral_layer(get_cell(net, path), use, partitions, quadrature)
        if new is not None:
            if path in statistics and hasattr(new, "record_output_statistics"):
                new.record_output_statistics(*statistics[path])
            set_cell(net, path, new)
    name_parameters_by_path(net)
    model = IntegralModel(net, groups=partitions)
    model.conversion = {"groups": groups, "folded_bn": folded, "permutation": report}
    if builder is not None:
        from inn_ms.artifact import converted_architecture
        model.architecture = converted_architecture(
            builder, tuple(x.shape), builder_kwargs, fold_bn=fold_bn, quadrature=quadrature,
            discrete_dims=discrete_dims, continuous_dims=continuous_dims)
    if verify:
        check_conversion(network, model, x, tolerance)
    logger.info("converted: %d continuous groups, %d BatchNorms folded", len(partitions), len(folded))
    return model


def check_conversion(original, model, x, tolerance=1e-5):
    """Raise if ``model`` at full size does not reproduce ``original`` on
    ``x`` within ``tolerance × max |output|``; returns the relative error."""
    saved = dict(model.sizes)
    was = original.training
    try:
        model.resize(sizes=dict(model.full_sizes))
        original.set_train(False)
        model.set_train(False)
        ref = original(x).asnumpy()
        out = model(x).asnumpy()
    finally:
        model.resize(sizes=saved)
        original.set_train(was)
    err = float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-12))
    if not err <= tolerance:
        raise ValueError(f"convert: the integral network differs from the original by {err:.3g} of the "
                         f"largest output (tolerance {tolerance:.3g}); please report this network")
    logger.info("conversion check: max relative difference %.3g", err)
    return err


__all__ = ["convert", "check_conversion", "clone_network"]
