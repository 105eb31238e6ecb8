"""One call from a trained discrete network to an integral one (DESIGN.md §5).

:func:`convert` finds the channel groups from the network's graph, folds
BatchNorms into the layers before them, permutes every group's channels
along a short travelling-salesman path, and replaces each ``nn.Conv2d``,
``nn.Dense`` and remaining ``nn.BatchNorm2d`` (each layer of a registered
kind, :mod:`inn_ms.graph.kinds`) on a continuous group by its
integral counterpart built so that, at full size, the network computes
exactly what it did (one control value per channel, divided by the
full-size quadrature weights). The result is an
:class:`~inn_ms.model.IntegralModel`: ``resize`` it, ``discretize`` it,
train it with random widths (pipeline A) or tune its partitions (pipeline B,
:mod:`inn_ms.partition_tuning`).

A network with a non-finite weight or a negative BatchNorm variance is
refused before anything else (such a network converts "exactly" and then
breaks when discretized). The result is checked (:func:`check_conversion`)
on a seeded random input and the user's sample, as the integral network and
as its discretized plain network.
"""
import logging
import time
from collections import OrderedDict

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from inn_ms.convert.bn import fold_batchnorms, output_statistics
from inn_ms.builders import converted_architecture
from inn_ms.cells import clone, get_cell, name_parameters_by_path, set_cell
from inn_ms.convert.permute import permute_channels
from inn_ms.convert.weights import check_values, network_parameters
from inn_ms.graph.channels import ChannelGroups, find_channel_groups
from inn_ms.graph.flops import graph_positions
from inn_ms.graph.kinds import layer_kind
from inn_ms.graph.mindir import _as_tensor, trace
from inn_ms.layers.plain import fast_convolution
from inn_ms.model import IntegralModel
from inn_ms.partition import BlockedPartition, CompositePartition, UniformPartition

logger = logging.getLogger(__name__)

# How far above the float32 rounding floor of a network a converted network
# may be (check_conversion). Measured: mindcv resnet18, mobilenet_v2_100,
# densenet121 and hrnet_w32 convert to 1.4-5x their floor.
FLOOR_FACTOR = 16


class ConversionError(ValueError):
    """The converted network does not compute what the original network does."""


def clone_network(network):
    """A copy of ``network`` with its own parameters (the user's network is
    never changed by conversion)."""
    return clone(network)  # unique names: graph compilation refuses duplicates


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
    """The integral replacement of ``cell`` made by its layer kind (None: it
    stays as it is: a kind with no integral form, or on no continuous group)."""
    kind = layer_kind(use.kind)
    in_p = _input_partition(use, partitions, quadrature)
    out_p = partitions.get(use.out) if use.out is not None else None
    if kind.integral is None or (in_p is None and out_p is None):
        return None
    return kind.integral(cell, use, in_p, out_p, quadrature)


def convert(network, example_input, *, fold_bn=True, permute=True, discrete_dims=None, continuous_dims=None,
            quadrature="trapezoid", verify=True, tolerance=1e-5, solver=None, builder=None, builder_kwargs=None):
    """An :class:`~inn_ms.model.IntegralModel` equal to ``network`` at full size.

    ``example_input``: a tensor, array or shape the network accepts (its
    graph is traced for it). ``fold_bn``: fold BatchNorms into the layer
    before them where that layer's output goes only to the BatchNorm.
    ``permute``: reorder each group's channels (travelling-salesman path)
    so the weights are smooth along the channels. ``discrete_dims`` /
    ``continuous_dims``: ``{parameter name: [axes]}``, see
    :func:`~inn_ms.graph.channels.find_channel_groups`. ``verify``: check
    the result with :func:`check_conversion` (a seeded random input of
    ``example_input``'s shape, and ``example_input`` itself when it is a
    sample; the integral and the discretized network; ``tolerance`` is the
    least tolerance, raised for deep networks). ``solver``: keyword arguments for
    :func:`~inn_ms.convert.tsp.solve_path`. ``builder`` (a zoo name or
    ``module:callable`` that builds ``network``'s architecture, called with
    ``builder_kwargs``): recorded as ``model.architecture`` so the model can
    be saved as an integral artifact (:mod:`inn_ms.artifact`).

    The returned model carries ``conversion``: the channel groups, the folded
    BatchNorms, each group's total variation before and after permuting, and
    the seconds each stage took (``"seconds"``: clone, trace, groups, fold,
    permute, build, check).
    """
    if not isinstance(network, nn.Cell):
        raise ValueError(f"convert: expected a MindSpore Cell, got {type(network).__name__}")
    check_values(network_parameters(network), f"convert: {type(network).__name__}", "cannot convert it")
    seconds, start = OrderedDict(), time.perf_counter()

    def stage(name):
        nonlocal start
        now = time.perf_counter()
        seconds[name] = now - start
        start = now

    x = _as_tensor(example_input)
    net = clone_network(network)
    net.set_train(False)
    stage("clone")
    graph = trace(net, x)  # the one compilation of a conversion
    stage("trace")
    groups = find_channel_groups(net, x, discrete_dims=discrete_dims, continuous_dims=continuous_dims, graph=graph)
    stage("groups")
    folded, statistics = OrderedDict(), OrderedDict()
    if fold_bn and groups.bn_after:
        before = {layer: output_statistics(get_cell(net, bn)) for bn, layer in groups.bn_after.items()
                  if isinstance(get_cell(net, bn), nn.BatchNorm2d)}
        folded = OrderedDict((bn, groups.bn_after[bn]) for bn in fold_batchnorms(net, groups.bn_after))
        statistics = OrderedDict((layer, before[layer]) for layer in folded.values() if layer in before)
        groups = groups.without(folded)
    stage("fold")
    if not groups.continuous:
        raise ValueError("convert: no channel group can be continuous:\n" + groups.summary())
    report = permute_channels(net, groups, **(solver or {})) if permute else OrderedDict()
    for path, (mean, std) in statistics.items():  # the statistics follow their channels
        use = groups.layers.get(path)
        if use is not None and use.out in report:
            order = report[use.out]["order"]
            statistics[path] = (mean[order], std[order])
    stage("permute")
    model = _integral_model(net, groups, quadrature, statistics)
    model.conversion = {"groups": groups, "folded_bn": list(folded), "permutation": report,
                        "plan": dict(groups.plan(), folded=dict(folded)),
                        "positions": {"input_shape": [int(v) for v in x.shape[1:]],
                                      "layers": dict(graph_positions(graph, int(x.shape[0])))}}
    if builder is not None:
        model.architecture = converted_architecture(
            builder, tuple(x.shape), builder_kwargs, fold_bn=fold_bn, quadrature=quadrature,
            discrete_dims=discrete_dims, continuous_dims=continuous_dims)
    stage("build")
    if verify:
        check_conversion(network, model, example_input, tolerance)
        stage("check")
    model.conversion["seconds"] = dict(seconds)
    logger.info("converted: %d continuous groups, %d BatchNorms folded", len(model.groups), len(folded))
    return model


def _integral_model(net, groups, quadrature, statistics=None):
    """Replace, in place, every layer of ``net`` on a continuous group by its
    integral counterpart (``statistics``: ``{layer: (mean, std)}`` of folded
    BatchNorms' outputs, kept on the layer), every other ``nn.Conv2d`` by
    :class:`inn_ms.layers.plain.Conv2d` (the same function, fast on CPU),
    and wrap ``net`` in a model."""
    statistics = statistics or {}
    partitions = OrderedDict((name, _group_partition(groups.groups[name], quadrature)) for name in groups.continuous)
    for path, use in groups.layers.items():
        cell = get_cell(net, path)
        new = _integral_layer(cell, use, partitions, quadrature)
        if new is not None and path in statistics and hasattr(new, "record_output_statistics"):
            new.record_output_statistics(*statistics[path])
        if new is None:  # a convolution on no continuous group: as fast on CPU as the integral layers
            new = fast_convolution(cell)
        if new is not None:
            set_cell(net, path, new)
    name_parameters_by_path(net)
    return IntegralModel(net, groups=partitions)


def _group_partition(group, quadrature):
    """The partition of a continuous channel group: uniform, or blocked when
    grouped convolutions read or write it (:class:`ChannelGroup` ``blocks``)."""
    if group.blocks > 1:
        return BlockedPartition(group.size, group.blocks, quadrature=quadrature, name=group.name)
    return UniformPartition(group.size, quadrature=quadrature, name=group.name)


def rebuild_converted(network, plan, quadrature="trapezoid"):
    """The integral model a conversion's ``plan`` (``model.conversion["plan"]``,
    kept in an artifact) describes, made from a fresh copy of the discrete
    ``network`` without tracing or checking anything: its BatchNorms folded
    as recorded, its layers on continuous groups made integral. Weights
    (and the channel order) are whatever is loaded into it next."""
    net = clone_network(network)
    net.set_train(False)
    folded = plan.get("folded", {})
    statistics = OrderedDict()
    if folded:
        statistics = OrderedDict((layer, output_statistics(get_cell(net, bn))) for bn, layer in folded.items()
                                 if isinstance(get_cell(net, bn), nn.BatchNorm2d))
        done = fold_batchnorms(net, folded)
        if len(done) != len(folded):
            raise ValueError(f"the conversion folded {sorted(folded)}, but this network folds only {done}")
    return _integral_model(net, ChannelGroups.from_plan(plan), quadrature, statistics)


def _is_shape(x):
    return isinstance(x, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in x)


def check_inputs(example_input, seed=0):
    """``[(description, Tensor)]`` the conversion is checked on: a seeded
    standard-normal input of ``example_input``'s shape, then
    ``example_input`` itself unless it is only a shape (an all-zero input
    sees biases alone)."""
    shape = tuple(int(v) for v in example_input) if _is_shape(example_input) \
        else tuple(_as_tensor(example_input).shape)
    rng = np.random.default_rng(seed)
    out = [(f"a random normal input (seed {seed})", Tensor(rng.standard_normal(shape).astype(np.float32)))]
    if not _is_shape(example_input):
        out.append(("the given sample", _as_tensor(example_input)))
    return out


def rounding_floor(network, x, seeds=(0, 1)):
    """How much ``network``'s output on ``x`` moves, relative to its largest
    magnitude, when every floating-point parameter moves by one float32
    rounding step (one ulp) in a random direction; the mean over ``seeds``.

    Conversion changes every weight by about that much (folding, permuting
    and sampling round in float32), so this is the scale of the difference
    an exact conversion shows. Every layer adds its own rounding, and an
    output that is small beside the terms summed into it (fewer classes: a
    smaller largest logit) makes it larger relative to the output: measured
    at 64×64, about 1e-6 for ResNet-18 and 2e-5 for hrnet_w32."""
    network.set_train(False)
    ref = network(x).asnumpy()
    scale = max(float(np.max(np.abs(ref))), 1e-12)
    moves = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        shaken = clone_network(network)
        for _, p in shaken.parameters_and_names():
            a = p.asnumpy()
            if a.dtype == np.float32:
                away = np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(np.float32)
                p.set_data(Tensor(np.nextafter(a, away)))
        shaken.set_train(False)
        moves.append(float(np.max(np.abs(shaken(x).asnumpy() - ref))) / scale)
    return float(np.mean(moves))


def check_conversion(original, model, example_input, tolerance=1e-5, seed=0):
    """Raise :class:`ConversionError` unless ``model`` at full size and its
    discretized plain network both reproduce ``original`` on the inputs of
    :func:`check_inputs`; returns the largest relative difference.

    A difference is ``max |out − ref| / max |ref|``. Allowed: ``tolerance``,
    or, when a network is deep or its outputs small beside the terms they
    sum, ``FLOOR_FACTOR ×`` its :func:`rounding_floor` if that is larger
    (the floor is measured only when ``tolerance`` is exceeded). The error
    states the tolerance used and how it was set."""
    inputs = check_inputs(example_input, seed)
    was = original.training
    mode = ms.get_context("mode")
    worst, floor = 0.0, None
    try:
        # Eager: three networks run once each; compiling them in graph mode
        # would cost more than running them.
        ms.set_context(mode=ms.PYNATIVE_MODE)
        original.set_train(False)
        model.set_train(False)
        with model.at_sizes(model.full_sizes):
            plain = model.discretize()
            plain.set_train(False)
            for what, x in inputs:
                ref = original(x).asnumpy()
                if not np.all(np.isfinite(ref)):
                    raise ConversionError(f"convert: the original network's output on {what} is not finite, so the "
                                          f"conversion cannot be checked")
                scale = max(float(np.max(np.abs(ref))), 1e-12)
                for which, net in (("integral", model), ("discretized", plain)):
                    out = net(x).asnumpy()
                    if out.shape != ref.shape or not np.all(np.isfinite(out)):
                        raise ConversionError(f"convert: the {which} network's output on {what} is "
                                              f"{'not finite' if out.shape == ref.shape else f'of shape {out.shape}'}"
                                              f" where the original's is finite (shape {ref.shape}); please report "
                                              f"this network")
                    err = float(np.max(np.abs(out - ref))) / scale
                    if err > tolerance:
                        if floor is None:
                            floor = rounding_floor(original, inputs[0][1])
                        allowed = max(tolerance, FLOOR_FACTOR * floor)
                        if not err <= allowed:
                            raise ConversionError(
                                f"convert: the {which} network differs from the original by {err:.3g} of the "
                                f"largest output on {what}; tolerance {allowed:.3g}, the larger of "
                                f"tolerance={tolerance:.3g} and {FLOOR_FACTOR} x {floor:.3g} (how much one float32 "
                                f"rounding step in every weight moves this network's output); please report this "
                                f"network")
                    worst = max(worst, err)
    finally:
        original.set_train(was)
        ms.set_context(mode=mode)
    if floor is None:
        logger.info("conversion check: largest relative difference %.3g (tolerance %.3g)", worst, tolerance)
    else:
        logger.info("conversion check: largest relative difference %.3g, above tolerance %.3g but within %d x "
                    "the network's rounding floor %.3g", worst, tolerance, FLOOR_FACTOR, floor)
    return worst


__all__ = ["ConversionError", "check_conversion", "check_inputs", "clone_network", "convert",
           "rounding_floor"]
