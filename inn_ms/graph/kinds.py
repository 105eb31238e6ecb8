"""Layer kinds: what the library knows about each sort of layer, in one place.

A :class:`LayerKind` describes one sort of layer Cell from end to end:

* which Cells are of the kind, and through which graph ops their weight
  acts (how the channel tracer, :mod:`inn_ms.graph.channels`, recognises
  one in a traced graph);
* its channel axes: which weight axis holds its output channels and which
  its input channels, or that its channels are its input's (a depthwise
  convolution, a BatchNorm), or that they must stay discrete (a grouped
  convolution);
* which of its tensors follow a channel permutation, and along which axis
  (:mod:`inn_ms.convert.permute`);
* how it becomes an integral Cell (:mod:`inn_ms.convert.convert`);
* which least-squares refit repair applies to it once discretized
  (:mod:`inn_ms.repair`), if any.

The kind's *name* is what a conversion plan stores (artifacts keep plans),
so built-in names never change: ``conv``, ``depthwise``, ``grouped``,
``dense``, ``bn``. A network with a layer Cell of its own makes its channels
resizable by registering a kind for that Cell (:func:`register_layer_kind`);
kinds registered later are matched first, so a user kind may also claim a
subclass of a built-in Cell.
"""
import logging
from collections import OrderedDict
from dataclasses import dataclass

from mindspore import nn

from inn_ms.layers import IntegralBatchNorm2d, IntegralConv2d, IntegralDense

logger = logging.getLogger(__name__)

# The graph ops the tracer reads as layers, by how their operands are laid
# out: a convolution (input, weight) with channels on axis 1 of a 4-D
# output; a matrix product (input (batch, features), weight (out, in)); a
# BatchNorm (input, per-channel tensors) returning a tuple.
CONV_OPS = frozenset({"Conv2D", "Conv2DExt", "Convolution", "Conv2DFusion"})
DENSE_OPS = frozenset({"MatMul", "MatMulExt", "Dense", "MatMulFusion"})
BN_OPS = frozenset({"BatchNorm", "BatchNormExt", "FusedBatchNorm"})
LAYER_OPS = CONV_OPS | DENSE_OPS | BN_OPS

# The least-squares refits repair knows, by the attributes they read from a
# plain Cell: "conv" (weight, bias, has_bias, in_channels, kernel_size,
# stride, padding, pad_mode, dilation of an nn.Conv2d with group=1: the whole
# weight over unfolded patches), "dense" (weight, bias, has_bias,
# in_channels), "depthwise" (as "conv", each channel its own taps), "bn"
# (gamma, beta, moving_mean, moving_variance, eps: a scale and shift per
# channel).
REFITS = ("conv", "dense", "depthwise", "bn")


@dataclass(frozen=True, eq=False)
class LayerKind:
    """One sort of layer, as the tracer, the conversion and repair see it.

    ``name``: what a plan stores. ``cells``: the Cell classes of the kind
    (``isinstance``), narrowed by ``accepts(cell) -> bool`` when given.
    ``ops``: the graph ops (of :data:`LAYER_OPS`) through which such a
    Cell's weight acts; its parameter is the op's second operand.

    ``out_axis``: the weight axis of the output channels, or None when the
    output channels are the input's (the layer acts on each channel on its
    own). ``in_axis``: the weight axis of the input channels (for a
    pass-through kind, of its per-channel tensors). ``discrete``: its
    channels never join a continuous group. ``blocks(cell) -> int``: for a
    grouped layer, its number of groups ``g``: its input and output
    channels come in ``g`` blocks (the channel groups it touches become
    :class:`~inn_ms.partition.BlockedPartition` s, resampled block by block)
    and its weight's input axis holds one block's channels, read by each
    ``1/g`` of the output rows in turn (how permutations follow it).

    ``out_tensors`` / ``in_tensors``: the tensors that follow a permutation
    of the output / input channels, as entries of ``(attribute, axis)``
    pairs; the tensors of one entry form one row per channel for the
    channel-order distance. Missing attributes (a bias of None) are
    skipped. Defaults: the weight along its axis, and for outputs the bias.

    ``integral(cell, use, in_partition, out_partition, quadrature)``: the
    integral Cell that replaces ``cell`` (``use``: its
    :class:`~inn_ms.graph.channels.LayerUse`; a partition is None on a
    discrete axis, never both); None: the layer stays as it is.
    ``refit``: one of :data:`REFITS`, how repair refits the plain Cell of
    this kind, or None (repair leaves it alone).
    """

    name: str
    cells: tuple
    ops: frozenset
    accepts: object = None
    out_axis: object = 0
    in_axis: int = 1
    discrete: bool = False
    blocks: object = None
    out_tensors: tuple = None
    in_tensors: tuple = None
    integral: object = None
    refit: object = None

    def __post_init__(self):
        cells = self.cells if isinstance(self.cells, (tuple, list)) else (self.cells,)
        object.__setattr__(self, "cells", tuple(cells))
        object.__setattr__(self, "ops", frozenset([self.ops] if isinstance(self.ops, str) else self.ops))
        if self.out_tensors is None:
            out = () if self.out_axis is None else ((("weight", self.out_axis),), (("bias", 0),))
            object.__setattr__(self, "out_tensors", out)
        if self.in_tensors is None:
            object.__setattr__(self, "in_tensors", ((("weight", self.in_axis),),))
        for what in ("out_tensors", "in_tensors"):
            object.__setattr__(self, what, tuple(tuple((str(a), int(x)) for a, x in entry)
                                                 for entry in getattr(self, what)))
        self._check()

    def _check(self):
        bad = None
        if not isinstance(self.name, str) or not self.name:
            bad = f"name must be a non-empty string, got {self.name!r}"
        elif not self.cells or not all(isinstance(c, type) and issubclass(c, nn.Cell) for c in self.cells):
            bad = f"cells must be Cell classes, got {self.cells!r}"
        elif not self.ops or not self.ops <= LAYER_OPS:
            bad = (f"ops must be graph ops the tracer reads as layers ({sorted(LAYER_OPS)}), got "
                   f"{sorted(self.ops)}")
        elif self.accepts is not None and not callable(self.accepts):
            bad = "accepts must be a callable (cell -> bool) or None"
        elif self.integral is not None and not callable(self.integral):
            bad = "integral must be a callable (cell, use, in_partition, out_partition, quadrature) or None"
        elif self.blocks is not None and (not callable(self.blocks) or self.out_axis is None):
            bad = "blocks must be a callable (cell -> number of groups) on a kind that makes its own channels"
        elif self.refit is not None and self.refit not in REFITS:
            bad = f"refit must be one of {list(REFITS)} or None, got {self.refit!r}"
        elif self.out_axis is None and self.out_tensors:
            bad = "a kind whose output channels are its input's (out_axis=None) has no out_tensors"
        if bad is not None:
            raise ValueError(f"layer kind {self.name!r}: {bad}")

    @property
    def makes_channels(self):
        """True when its output channels are its own (a convolution, a dense
        layer), False when they are its input's (depthwise, BatchNorm)."""
        return self.out_axis is not None

    def matches(self, cell, op=None):
        """Whether ``cell`` (seen through graph op ``op``, when given) is of this kind."""
        if op is not None and op not in self.ops:
            return False
        return isinstance(cell, self.cells) and (self.accepts is None or bool(self.accepts(cell)))


# -- the built-in kinds --------------------------------------------------------

def _conv_integral(cell, use, in_partition, out_partition, quadrature):
    return IntegralConv2d.from_discrete(cell, in_partition=in_partition, out_partition=out_partition,
                                        quadrature=quadrature)


def _depthwise_integral(cell, use, in_partition, out_partition, quadrature):
    return IntegralConv2d.from_discrete(cell, in_partition=in_partition, out_partition=in_partition,
                                        quadrature=quadrature)


def _dense_integral(cell, use, in_partition, out_partition, quadrature):
    spatial = {s for _, _, s in use.inputs}
    if len(spatial) != 1:
        raise ValueError(f"convert: dense layer {use.path} reads channels flattened with different "
                         f"spatial sizes {sorted(spatial)}")
    return IntegralDense.from_discrete(cell, in_partition=in_partition, out_partition=out_partition,
                                       quadrature=quadrature, in_spatial=spatial.pop())


def _bn_integral(cell, use, in_partition, out_partition, quadrature):
    return IntegralBatchNorm2d.from_discrete(cell, partition=in_partition, quadrature=quadrature)


def _is_depthwise(cell):
    return cell.group == cell.in_channels == cell.out_channels


BUILTIN_KINDS = (
    LayerKind("conv", nn.Conv2d, CONV_OPS, accepts=lambda c: c.group == 1, integral=_conv_integral,
              refit="conv"),
    LayerKind("depthwise", nn.Conv2d, CONV_OPS, accepts=lambda c: c.group != 1 and _is_depthwise(c),
              out_axis=None, in_axis=0, in_tensors=((("weight", 0),), (("bias", 0),)),
              integral=_depthwise_integral, refit="depthwise"),
    LayerKind("grouped", nn.Conv2d, CONV_OPS, accepts=lambda c: c.group != 1 and not _is_depthwise(c),
              blocks=lambda c: int(c.group), integral=_conv_integral),
    LayerKind("dense", nn.Dense, DENSE_OPS, integral=_dense_integral, refit="dense"),
    LayerKind("bn", nn.BatchNorm2d, BN_OPS, out_axis=None, in_axis=0,
              in_tensors=((("gamma", 0), ("beta", 0), ("moving_mean", 0), ("moving_variance", 0)),),
              integral=_bn_integral, refit="bn"),
)

_REGISTRY = OrderedDict((k.name, k) for k in BUILTIN_KINDS)


# -- the registry --------------------------------------------------------------

def register_layer_kind(kind=None, *, replace=False, **fields):
    """Register a layer kind and return it: a :class:`LayerKind`, or its
    fields as keywords (``register_layer_kind(name="my_conv", cells=MyConv,
    ops=CONV_OPS, integral=...)``). A name already registered is refused
    unless ``replace=True`` (built-in kinds cannot be replaced: plans
    saved with their names must keep meaning the same)."""
    if kind is None:
        kind = LayerKind(**fields)
    elif fields:
        raise ValueError("register_layer_kind: give a LayerKind or its fields, not both")
    if not isinstance(kind, LayerKind):
        raise ValueError(f"register_layer_kind: expected a LayerKind, got {type(kind).__name__}")
    if any(kind.name == b.name for b in BUILTIN_KINDS):
        raise ValueError(f"register_layer_kind: {kind.name!r} is a built-in kind; choose another name")
    if kind.name in _REGISTRY and not replace:
        raise ValueError(f"register_layer_kind: a kind named {kind.name!r} is registered already "
                         f"(replace=True to replace it)")
    _REGISTRY.pop(kind.name, None)
    _REGISTRY[kind.name] = kind
    logger.info("registered layer kind %r for %s", kind.name, [c.__name__ for c in kind.cells])
    return kind


def unregister_layer_kind(name):
    """Remove a kind registered with :func:`register_layer_kind`."""
    if any(name == b.name for b in BUILTIN_KINDS):
        raise ValueError(f"unregister_layer_kind: {name!r} is a built-in kind")
    if _REGISTRY.pop(name, None) is None:
        raise ValueError(f"unregister_layer_kind: no kind named {name!r} is registered")


def layer_kind(name):
    """The registered kind named ``name`` (a plan's kind string)."""
    kind = _REGISTRY.get(name)
    if kind is None:
        raise ValueError(f"unknown layer kind {name!r} (registered: {sorted(_REGISTRY)}); a kind of your own "
                         f"must be registered with register_layer_kind before converting or loading")
    return kind


def layer_kinds():
    """Every registered kind, in the order they are matched (the latest registered first)."""
    return list(reversed(_REGISTRY.values()))


def match_layer_kind(cell, op=None):
    """The kind of ``cell`` (seen through graph op ``op`` when given), or None."""
    for kind in layer_kinds():
        if kind.matches(cell, op):
            return kind
    return None


__all__ = ["BN_OPS", "BUILTIN_KINDS", "CONV_OPS", "DENSE_OPS", "LAYER_OPS", "LayerKind", "REFITS",
           "layer_kind", "layer_kinds", "match_layer_kind", "register_layer_kind", "unregister_layer_kind"]
