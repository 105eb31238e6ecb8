"""Channel groups found from a network's graph (DESIGN.md §4).

Every activation tensor's channel axis is described as a list of
*segments* ``(var, spatial)``: the channels of channel variable ``var``,
each repeated ``spatial`` times (``spatial > 1`` after a flatten). A
convolution or dense layer makes a new variable for its output; elementwise
ops with two channel operands (residual ``Add``) merge their variables
(union–find); ``Concat`` on the channel axis concatenates segment lists;
depthwise convolutions, BatchNorm, activations and pooling pass segments on.

The channel axis is axis 1 (``NCHW``, and ``(rows, features)`` of a matrix
product) unless a ``Transpose`` moved it or a ``Reshape`` provably kept it
elsewhere: a transformer's tokens ``(batch, tokens, channels)`` carry it
last. A ``Reshape`` keeps it when the output has an axis (not the batch
axis) of the same size with the same elements after it (row-major: every
channel keeps its own elements), which is what ``nn.Dense`` on tokens
compiles to (``(B, N, C)`` → ``(B·N, C)``, the product, and back), so the
hidden width of a transformer's MLP (dense, GELU, dense) is a channel group.
Every layer reads its channels on axis 1 and every other op is checked
against the axis its operand's channels are on; where that cannot be shown
(a reshape splitting the channel axis into attention heads, a LayerNorm
normalising over the channels, a per-channel parameter outside a layer),
the channels stay discrete with that reason.

Grouped convolutions (``g`` groups, ``1 < g < channels``): the channels they
read and write come in ``g`` *blocks*, one per group. The rule is "the group
count is kept, the channels per group are resampled": such a channel group
gets ``blocks = g`` and becomes a
:class:`~inn_ms.partition.BlockedPartition`, each block its own segment of
the weight functions along it, every block resized to the same size (sizes
are multiples of ``g``, :func:`~inn_ms.partition.size_range`), so the
convolution stays grouped. Every other layer on the group (the producer's
rows, BatchNorms, a 1×1 consumer's columns) samples the same blocks, and a
permutation keeps every channel inside its block
(:mod:`inn_ms.convert.permute`). A group stays discrete when grouped
convolutions with different group counts share it, when a grouped
convolution reads channels of several groups (after a concatenation) or
flattened ones, or when it has fewer than 2 channels per block (nothing to
resample).

A variable stays *discrete* (never resized) when it is the network's input
or output, when it meets an op whose use of channels is not understood
(conservative: such an op may mix channels), when a per-channel parameter
outside a known layer touches it, when no layer produces it, when a
grouped convolution's blocks cannot be kept (above), or when the user pins
it. Everything else is a *channel group*: one partition shared by the
producers' output axes, the BatchNorms on it, and the consumers' input axes.

Which Cells are layers, and how each uses its channels, comes from the
layer-kind registry (:mod:`inn_ms.graph.kinds`); a Cell of no registered
kind is an op whose use of channels is not understood.
"""
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from inn_ms.graph.kinds import BN_OPS, CONV_OPS, DENSE_OPS, layer_kind, match_layer_kind
from inn_ms.graph.mindir import trace

logger = logging.getLogger(__name__)

BINARY_OPS = {"Add", "AddExt", "InplaceAddExt", "InplaceAdd", "Sub", "SubExt", "Mul", "MulExt", "Div",
              "RealDiv", "Maximum", "Minimum", "AddV2"}
# Ops that act on each channel on its own (or only on spatial axes): they pass
# channels on when the output keeps the input's (batch, channel) dims.
CHANNELWISE_OPS = {
    "ReLU", "ReLU6", "ReLUV2", "Sigmoid", "SiLU", "Swish", "HSwish", "HSigmoid", "HShrink", "GeLU", "FastGeLU",
    "Tanh", "Elu", "LeakyReLU", "Softplus", "Mish", "SeLU", "CeLU", "Cast", "Dropout", "MaxPool", "AvgPool",
    "MaxPoolV1", "AvgPoolV1", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "Pad", "PadV3", "PadV2",
    "ResizeNearestNeighbor", "ResizeNearestNeighborV2", "ResizeBilinear", "ResizeBilinearV2", "ResizeBicubic",
    "Abs", "Neg", "Square", "Sqrt", "Rsqrt", "Exp", "Log", "ClipByValue", "Clamp", "ClampScalar",
    "ReduceMean", "ReduceMax", "ReduceSum", "MeanExt", "SumExt", "Mean", "Reshape", "Flatten",
    "ExpandDims", "Squeeze", "ZerosLike", "OnesLike", "Floor", "Round", "Erf"}

# Ops that act on every element on its own (output shape = input shape):
# they pass channels on whatever axis carries them.
ELEMENTWISE_OPS = {
    "ReLU", "ReLU6", "ReLUV2", "Sigmoid", "SiLU", "Swish", "HSwish", "HSigmoid", "HShrink", "GeLU", "FastGeLU",
    "Tanh", "Elu", "LeakyReLU", "Softplus", "Mish", "SeLU", "CeLU", "Cast", "Dropout", "Abs", "Neg", "Square",
    "Sqrt", "Rsqrt", "Exp", "Log", "ClipByValue", "Clamp", "ClampScalar", "ZerosLike", "OnesLike", "Floor",
    "Round", "Erf"}
# Ops that only change the shape of row-major data.
RESHAPE_OPS = {"Reshape", "Flatten", "ExpandDims", "Squeeze"}
LAYERNORM_OPS = {"LayerNorm", "LayerNormV3", "LayerNormExt"}


def _moved_axis(in_shape, axis, out_shape):
    """Where axis ``axis`` of ``in_shape`` is in ``out_shape`` after a
    row-major reshape, or None when the reshape splits or merges it: an
    axis of the same size with as many elements after it (then every
    channel keeps its own elements). Never the batch axis 0."""
    size, after = in_shape[axis], int(np.prod(in_shape[axis + 1:]))
    for b in range(1, len(out_shape)):
        if out_shape[b] == size and int(np.prod(out_shape[b + 1:])) == after:
            return b
    return None


@dataclass
class LayerUse:
    """How one layer Cell (``path`` in the Cell tree) uses channels.

    ``kind``: the name of its :class:`~inn_ms.graph.kinds.LayerKind`
    (built in: ``'conv'``, ``'dense'``, ``'depthwise'``, ``'bn'``,
    ``'grouped'``). ``out``: the output channel group name (None for a kind
    whose channels are its input's: depthwise, BatchNorm). ``inputs``:
    ``[(group name, channels, spatial), …]`` in the order the input
    channels are laid out.
    """

    path: str
    kind: str
    out: object = None
    inputs: list = field(default_factory=list)


@dataclass
class ChannelGroup:
    """Dimensions that must share one partition. ``continuous`` is False
    for a discrete group, with ``reasons`` saying why. ``blocks``: the
    number of groups of the grouped convolutions on it (1: none)."""

    name: str
    size: int
    continuous: bool
    reasons: list = field(default_factory=list)
    producers: list = field(default_factory=list)
    blocks: int = 1


class ChannelGroups:
    """The result of :func:`find_channel_groups`: ``groups`` (name →
    :class:`ChannelGroup`, in order of first use) and ``layers`` (Cell path
    → :class:`LayerUse`), plus ``bn_after`` (BatchNorm path → the path of
    the convolution or dense layer whose output only it reads: fusable)."""

    def __init__(self, groups, layers, bn_after):
        self.groups = groups
        self.layers = layers
        self.bn_after = bn_after

    @property
    def continuous(self):
        """Names of the continuous groups."""
        return [n for n, g in self.groups.items() if g.continuous]

    def members(self, name):
        """``[(path, axis, offset, spatial)]``: every layer axis in group
        ``name``; ``axis`` is ``'out'`` or ``'in'``, ``offset`` the index of
        the group's first channel on that axis (in channels)."""
        out = []
        for path, use in self.layers.items():
            if use.out == name:
                out.append((path, "out", 0, 1))
            offset = 0
            for g, channels, spatial in use.inputs:
                if g == name:
                    out.append((path, "in", offset, spatial))
                offset += channels
        return out

    def without(self, paths):
        """These groups with the layers at ``paths`` gone (BatchNorms folded
        into the layer before them: a BatchNorm only shares its input's
        channels, so no group changes). Saves tracing the network again."""
        gone = set(paths)
        layers = OrderedDict((p, u) for p, u in self.layers.items() if p not in gone)
        bn_after = OrderedDict((b, p) for b, p in self.bn_after.items() if b not in gone)
        return ChannelGroups(self.groups, layers, bn_after)

    def plan(self):
        """What building the integral network needs, as JSON data (lists,
        so the order survives a JSON file with sorted keys): every continuous
        group ``[name, size]`` in order (``[name, size, blocks]`` for a
        group of blocks), and how each layer uses the groups,
        ``[path, kind, out group, [[group, channels, spatial], ...]]``."""
        return {"groups": [[n, int(self.groups[n].size)] + ([int(self.groups[n].blocks)]
                                                          if self.groups[n].blocks > 1 else [])
                           for n in self.continuous],
                "layers": [[p, u.kind, u.out, [[g, int(c), int(s)] for g, c, s in u.inputs]]
                           for p, u in self.layers.items()]}

    @classmethod
    def from_plan(cls, plan):
        """The groups a :meth:`plan` describes (continuous ones only). Every
        layer kind it names must be registered (a kind of your own: before
        loading)."""
        groups = OrderedDict((entry[0], ChannelGroup(entry[0], int(entry[1]), True,
                                                    blocks=int(entry[2]) if len(entry) > 2 else 1))
                             for entry in plan["groups"])
        layers = OrderedDict()
        for path, kind, out, inputs in plan["layers"]:
            layer_kind(kind)
            for g, channels, _ in inputs:
                if g not in groups:  # a discrete group: only its size matters
                    groups[g] = ChannelGroup(g, int(channels), False, ["discrete in the conversion"])
            layers[path] = LayerUse(path, kind, out, [(g, int(c), int(s)) for g, c, s in inputs])
        return cls(groups, layers, OrderedDict())

    def summary(self):
        """One line per group: name, size, continuous or why not, layers."""
        lines = []
        for name, g in self.groups.items():
            state = "continuous" if g.continuous else "discrete (" + "; ".join(g.reasons) + ")"
            paths = sorted({m[0] for m in self.members(name)})
            blocks = f" in {g.blocks} blocks" if g.blocks > 1 else ""
            lines.append(f"{name}: {g.size} channels{blocks}, {state}; layers {paths}")
        return "\n".join(lines)


class _UnionFind:
    def __init__(self):
        self.parent, self.size, self.reasons, self.forced, self.blocks = [], [], [], [], []

    def new(self, size, reason=None):
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.blocks.append(1)
        self.reasons.append([reason] if reason else [])
        return len(self.parent) - 1

    def find(self, v):
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return True
        if self.size[a] != self.size[b]:
            return False
        a, b = min(a, b), max(a, b)  # the older variable names the group
        self.parent[b] = a
        self.reasons[a] += self.reasons[b]
        blocks = self.blocks[a], self.blocks[b]
        self.blocks[a] = max(blocks)
        if min(blocks) > 1 and blocks[0] != blocks[1]:
            self.pin(a, f"grouped convolutions with {blocks[0]} and {blocks[1]} groups share these channels")
        return True

    def set_blocks(self, v, blocks, layer):
        """Channel variable ``v`` comes in ``blocks`` blocks (read or
        written by grouped convolution ``layer``)."""
        r = self.find(v)
        old = self.blocks[r]
        if old not in (1, blocks):
            self.pin(r, f"grouped convolutions with {old} and {blocks} groups share these channels ({layer})")
        elif self.size[r] % blocks:
            self.pin(r, f"{self.size[r]} channels do not split into the {blocks} groups of {layer}")
        else:
            self.blocks[r] = blocks
            if self.size[r] // blocks < 2:
                self.pin(r, f"{self.size[r] // blocks} channel per group of grouped convolution {layer}: "
                            f"nothing to resample")

    def pin(self, v, reason):
        r = self.find(v)
        if reason not in self.reasons[r]:
            self.reasons[r].append(reason)


def _describe(cell):
    """A layer Cell's type and, for a convolution, its groups (for reasons)."""
    groups = getattr(cell, "group", getattr(cell, "groups", None))
    return f"{type(cell).__name__}" + (f", groups={groups}" if groups not in (None, 1) else "")


def _cell_index(network):
    """Parameter name → (Cell path, Cell) of the Cell that owns it."""
    cells = dict(network.cells_and_names())
    out = {}
    for path, p in network.parameters_and_names():
        cell_path = path.rsplit(".", 1)[0] if "." in path else ""
        out[p.name] = (cell_path, cells.get(cell_path))
        out.setdefault(path, (cell_path, cells.get(cell_path)))
    return out


class _Analysis:
    def __init__(self, graph, network):
        self.g = graph
        self.uf = _UnionFind()
        self.val = {}
        self.axis = {}  # value name → the axis its channels are on, when not 1 (a tuple: a list per item)
        self.owner = _cell_index(network)
        self.layers = OrderedDict()  # path → (kind, out_segs, in_segs)
        self.value_layer = {}  # value name → path of the conv/dense that made it
        self.users = graph.users()
        self.bn_after = OrderedDict()

    # -- helpers -------------------------------------------------------
    def shape(self, name):
        return self.g.shapes.get(self.g.source(name))

    def segs(self, name):
        return self.val.get(self.g.source(name))

    def ax(self, name):
        """The axis the channels of value ``name`` are on (1 unless moved)."""
        return self.axis.get(self.g.source(name), 1)

    def put(self, name, segs, axis=1):
        """Value ``name`` carries channel segments ``segs`` on axis ``axis``."""
        self.val[name] = segs
        if axis != 1:
            self.axis[name] = axis

    def is_param(self, name):
        return self.g.source(name) in self.g.params

    def new(self, shape, reason=None, axis=1):
        if shape is None or isinstance(shape, list) or len(shape) < 2:
            return None
        return [(self.uf.new(shape[axis], reason), 1)]

    def pin_segs(self, segs, reason):
        if isinstance(segs, list):
            for v, _ in segs:
                self.uf.pin(v, reason)

    def opaque(self, node, why=None):
        reason = why or f"used by op {node.op} ({node.scope})"
        for name in node.inputs:
            segs = self.segs(name)
            if isinstance(segs, tuple):
                for s in segs[1]:
                    self.pin_segs(s, reason)
            else:
                self.pin_segs(segs, reason)
        self.val[node.output] = self.new(node.shape, f"made by op {node.op} ({node.scope})")

    def input_segs(self, name, shape, path):
        """The channel segments a layer (``path``) reads on axis 1 of value ``name``."""
        segs = self.segs(name)
        if isinstance(segs, list) and self.ax(name) != 1:
            self.pin_segs(segs, f"channels on axis {self.ax(name)} of a tensor that layer {path} reads on axis 1")
            segs = None
        if not isinstance(segs, list):
            segs = self.new(shape, "not made by a known layer")
        return segs

    def union_segs(self, a, b):
        if len(a) != len(b) or any(sa != sb for (_, sa), (_, sb) in zip(a, b)):
            return False
        return all(self.uf.union(va, vb) for (va, _), (vb, _) in zip(a, b))

    def owner_of(self, name):
        """(path, cell) of the parameter behind value ``name``, or None."""
        src = self.g.source(name)
        if src not in self.g.params:
            return None
        return self.owner.get(self.g.params[src])

    def record(self, path, kind, out_segs, in_segs, node):
        if path in self.layers:  # a Cell called twice: both calls must agree
            old_kind, old_out, old_in = self.layers[path]
            ok = old_kind == kind and self.union_segs(old_in, in_segs)
            if ok and old_out is not None and out_segs is not None:
                ok = self.union_segs(old_out, out_segs)
            if not ok:
                reason = f"layer {path} is called on differently shaped channels"
                for s in (old_out, old_in, out_segs, in_segs):
                    self.pin_segs(s, reason)
            return
        self.layers[path] = (kind, out_segs, in_segs)

    # -- ops -----------------------------------------------------------
    def layer(self, node, path, cell, kind, xshape):
        """Record ``node`` as a call of layer ``path`` (``cell``, of
        ``kind``) on input ``node.inputs[0]``; returns the channel segments
        of its output."""
        in_segs = self.input_segs(node.inputs[0], xshape, path)
        if not kind.makes_channels:
            self.record(path, kind, None, in_segs, node)
            return in_segs
        if kind.discrete:
            reason = f"{kind.name} layer {path} ({_describe(cell)})"
            self.pin_segs(in_segs, reason)
            out = self.new(node.shape, reason)
        else:
            out = self.new(node.shape)
        blocks = int(kind.blocks(cell)) if kind.blocks is not None else 1
        if blocks > 1 and out is not None:
            label = f"{path} ({_describe(cell)})"
            if len(in_segs) != 1 or in_segs[0][1] != 1:
                self.pin_segs(in_segs, f"grouped convolution {label} reads channels of several groups or "
                                       f"flattened ones; its blocks would cross them")
            else:
                self.uf.set_blocks(in_segs[0][0], blocks, label)
            self.uf.set_blocks(out[0][0], blocks, label)
        self.record(path, kind, out, in_segs, node)
        return out

    def conv(self, node):
        owner = self.owner_of(node.inputs[1])
        xshape = self.shape(node.inputs[0])
        if owner is None or owner[1] is None or xshape is None or node.shape is None:
            return self.opaque(node, f"a convolution whose weight is not a layer's parameter ({node.scope})")
        path, cell = owner
        kind = match_layer_kind(cell, node.op)
        if kind is None:
            return self.opaque(node, f"convolution {path} is a {type(cell).__name__}, not an nn.Conv2d or a "
                                     f"registered layer kind")
        self.val[node.output] = self.layer(node, path, cell, kind, xshape)
        self.value_layer[node.output] = path

    def dense(self, node):
        if len(node.inputs) < 2:
            return self.opaque(node)
        owner = self.owner_of(node.inputs[1])
        xshape = self.shape(node.inputs[0])
        wshape = self.shape(node.inputs[1])
        if owner is None or owner[1] is None or xshape is None or node.shape is None or len(xshape) != 2 \
                or wshape is None or tuple(wshape) != (node.shape[1], xshape[1]):
            return self.opaque(node, f"a matrix product that is not a dense layer on (batch, features) "
                                     f"({node.scope})")
        path, cell = owner
        kind = match_layer_kind(cell, node.op)
        if kind is None:
            return self.opaque(node, f"dense layer {path} is a {type(cell).__name__}, not an nn.Dense or a "
                                     f"registered layer kind")
        self.val[node.output] = self.layer(node, path, cell, kind, xshape)
        self.value_layer[node.output] = path

    def batchnorm(self, node):
        owner = self.owner_of(node.inputs[1]) if len(node.inputs) > 1 else None
        xshape = self.shape(node.inputs[0])
        if owner is None or owner[1] is None or xshape is None:
            return self.opaque(node)
        path, cell = owner
        kind = match_layer_kind(cell, node.op)
        if kind is None or kind.makes_channels or len(xshape) != 4:
            return self.opaque(node, f"BatchNorm {path} is a {type(cell).__name__} on a {len(xshape)}-D input; "
                                     f"only nn.BatchNorm2d (or a registered layer kind) is resampled")
        segs = self.layer(node, path, cell, kind, xshape)
        self.val[node.output] = ("tuple", [segs])
        src = self.g.source(node.inputs[0])
        made_by = self.value_layer.get(src)
        if made_by is not None and len(self.users.get(src, [])) == 1:
            self.bn_after[path] = made_by

    def bias_add(self, node):
        src = self.g.source(node.inputs[0])
        if self.ax(src) != 1:  # a bias along axis 1, not the channels
            return self.opaque(node)
        self.val[node.output] = self.segs(node.inputs[0])
        if src in self.value_layer and len(self.users.get(src, [])) == 1:
            self.value_layer[node.output] = self.value_layer[src]

    def tuple_get(self, node):
        tup = self.segs(node.inputs[0])
        index = self.g.constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if isinstance(tup, tuple) and isinstance(index, int) and 0 <= index < len(tup[1]):
            axes = self.axis.get(self.g.source(node.inputs[0]))
            self.put(node.output, tup[1][index], axes[index] if isinstance(axes, list) else 1)
        elif isinstance(tup, tuple):
            self.val[node.output] = None
        else:
            self.opaque(node)

    def concat(self, node):
        tup_name = self.g.source(node.inputs[0])
        parts = self.segs(tup_name)
        pshapes = self.g.shapes.get(tup_name)
        out = node.shape
        axes = self.axis.get(tup_name)
        if isinstance(parts, tuple) and isinstance(pshapes, list) and isinstance(axes, list) and \
                any(isinstance(s, list) and a != 1 for s, a in zip(parts[1], axes)):
            return self.concat_tokens(node, parts[1], pshapes, axes)
        if not isinstance(parts, tuple) or not isinstance(pshapes, list) or out is None or \
                any(s is None or len(s) != len(out) or s[0] != out[0] or tuple(s[2:]) != tuple(out[2:])
                    for s in pshapes) or sum(s[1] for s in pshapes) != out[1]:
            return self.opaque(node, f"a concatenation not on the channel axis ({node.scope})")
        segs = []
        for s, shape in zip(parts[1], pshapes):
            segs += s if isinstance(s, list) else self.new(shape, "not made by a known layer")
        self.val[node.output] = segs

    def concat_tokens(self, node, parts, pshapes, axes):
        """A concatenation of tensors whose channels are on another axis
        than 1 (tokens ``(B, N, C)`` joined along ``N``): the parts must
        carry their channels on one axis ``t`` and be joined along another,
        and then share them, as operands of an ``Add`` do."""
        out = node.shape
        bad = out is None or isinstance(out, list) or \
            any(s is None or isinstance(s, list) or len(s) != len(out) for s in pshapes)
        joined_along = set() if bad else {i for s in pshapes for i in range(len(out)) if s[i] != out[i]}
        tracked = {a for s, a in zip(parts, axes) if isinstance(s, list)} - joined_along
        t = tracked.pop() if len(tracked) == 1 and len(joined_along) == 1 else None
        if t is None:
            return self.opaque(node, f"a concatenation of tensors with channels on different axes ({node.scope})")
        for s, a in zip(parts, axes):
            if isinstance(s, list) and a != t:
                self.pin_segs(s, f"op Concat joins along these channels ({node.scope})")
        joined = [s for s, a in zip(parts, axes) if isinstance(s, list) and a == t]
        for other in joined[1:]:
            if not self.union_segs(joined[0], other):
                for s in joined:
                    self.pin_segs(s, f"op Concat joins channels of different layouts ({node.scope})")
        if len(joined) < len(parts):
            self.pin_segs(joined[0], f"op Concat joins these channels with a tensor no known layer made, e.g. a "
                                     f"class token ({node.scope})")
        self.put(node.output, joined[0], t)

    def binary(self, node):
        out = node.shape
        if out is None or isinstance(out, list) or len(out) < 2:
            return self.opaque(node)
        shapes = [self.shape(name) for name in node.inputs[:2]]
        shapes = [None if s is None or isinstance(s, list) else tuple(s) for s in shapes]
        # The channel axis of the output: that of the first operand with more than one channel known
        # (operands are aligned to the output from their last axis, as broadcasting does).
        tracked = [shape is not None and len(shape) >= 2 and isinstance(self.segs(name), list)
                   for name, shape in zip(node.inputs[:2], shapes)]
        axis = next((self.ax(name) + len(out) - len(shape) for name, shape, t in
                     zip(node.inputs[:2], shapes, tracked) if t and shape[self.ax(name)] > 1), 1)
        operands, param = [], None
        for name, shape, t in zip(node.inputs[:2], shapes, tracked):
            k = None if shape is None else axis - (len(out) - len(shape))
            segs, why = self.segs(name), "not made by a known layer"
            if t and self.ax(name) != k:  # its channels are on another axis: never dropped unseen
                if shape[self.ax(name)] > 1:
                    why = f"op {node.op} joins channels on different axes ({node.scope})"
                    self.pin_segs(segs, why)
                segs = None
            if k is None or k < 0 or shape[k] == 1:
                continue  # a scalar, or broadcast along the channels
            if self.is_param(name):
                param = f"a per-channel parameter outside a known layer ({node.scope})"
                continue
            if not isinstance(segs, list):
                segs = [(self.uf.new(shape[k], why), 1)]
            operands.append(segs)
        if not operands:
            self.val[node.output] = self.new(out, param or "not made by a known layer")
            return
        for other in operands[1:]:
            if not self.union_segs(operands[0], other):
                reason = f"op {node.op} joins channels of different layouts ({node.scope})"
                for s in operands:
                    self.pin_segs(s, reason)
        if param:
            for s in operands:
                self.pin_segs(s, param)
        self.put(node.output, operands[0], axis)

    def channelwise(self, node):
        x = node.inputs[0]
        xshape, out = self.shape(x), node.shape
        segs = self.segs(x)
        if xshape is None or out is None or isinstance(out, list) or isinstance(xshape, list) \
                or len(xshape) < 2:
            return self.opaque(node)
        axis = self.ax(x) if isinstance(segs, list) else 1
        if not isinstance(segs, list):
            segs = self.new(xshape, "not made by a known layer")
        if node.op in RESHAPE_OPS:
            moved = _moved_axis(xshape, axis, out) if len(out) >= 2 else None
            if moved is not None:
                self.put(node.output, segs, moved)
            elif axis == 1 and len(out) == 2 and len(xshape) > 2 and out[0] == xshape[0] and \
                    out[1] == int(np.prod(xshape[1:])):  # a flatten: channel-major features
                spatial = int(np.prod(xshape[2:]))
                self.val[node.output] = [(v, s * spatial) for v, s in segs]
            else:
                self.opaque(node, f"op {node.op} changes the channel axis ({node.scope})")
        elif node.op in ELEMENTWISE_OPS and tuple(out) == tuple(xshape):
            self.put(node.output, segs, axis)
        elif axis == 1 and len(out) >= 2 and tuple(out[:2]) == tuple(xshape[:2]):
            self.val[node.output] = segs  # pooling, padding, resizing: spatial axes only
        else:
            self.opaque(node, f"op {node.op} changes the channel axis ({node.scope})")

    def transpose(self, node):
        """A transpose moves the channels to the axis the permutation puts theirs."""
        x = node.inputs[0]
        perm = self.g.constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
        xshape, segs = self.shape(x), self.segs(x)
        if not isinstance(perm, tuple) or xshape is None or isinstance(xshape, list) or len(xshape) < 2 \
                or sorted(perm) != list(range(len(xshape))):
            return self.opaque(node)
        axis = self.ax(x) if isinstance(segs, list) else 1
        if not isinstance(segs, list):
            segs = self.new(xshape, "not made by a known layer")
        moved = perm.index(axis)
        if moved == 0:
            return self.opaque(node, f"op Transpose moves the channels to the batch axis ({node.scope})")
        self.put(node.output, segs, moved)

    def layernorm(self, node):
        """A LayerNorm normalises over its last axis: those channels stay
        discrete (no integral LayerNorm yet) and pass on, pinned."""
        x = node.inputs[0]
        xshape, segs = self.shape(x), self.segs(x)
        if xshape is None or isinstance(xshape, list) or len(xshape) < 2:
            return self.opaque(node)
        owner = self.owner_of(node.inputs[1]) if len(node.inputs) > 1 else None
        where = owner[0] if owner is not None else node.scope
        reason = f"normalised over its channels by LayerNorm ({where}; no integral LayerNorm yet)"
        last = len(xshape) - 1
        if isinstance(segs, list) and self.ax(x) == last:
            self.pin_segs(segs, reason)
            out = segs
        else:
            self.pin_segs(segs, f"used by op {node.op} ({node.scope})")
            out = self.new(xshape, reason, axis=last)
        self.val[node.output] = ("tuple", [out, None, None])
        self.axis[node.output] = [last, 1, 1]

    def run(self, pinned_inputs=True):
        g = self.g
        for name in g.inputs:
            self.val[name] = self.new(g.shapes.get(name), "network input" if pinned_inputs else None)
        handlers = {**{op: self.conv for op in CONV_OPS}, **{op: self.dense for op in DENSE_OPS},
                    **{op: self.batchnorm for op in BN_OPS}, **{op: self.binary for op in BINARY_OPS},
                    **{op: self.layernorm for op in LAYERNORM_OPS},
                    "BiasAdd": self.bias_add, "TupleGetItem": self.tuple_get, "Concat": self.concat,
                    "Transpose": self.transpose}
        for node in g.nodes:
            if node.op in ("UpdateState", "Constant"):
                continue
            if node.op in ("Load", "Depend", "StopGradient", "Identity"):
                self.val[node.output] = self.segs(node.inputs[0]) if node.inputs else None
                continue
            if node.op == "MakeTuple":
                self.val[node.output] = ("tuple", [self.segs(i) for i in node.inputs])
                self.axis[node.output] = [self.ax(i) for i in node.inputs]
                continue
            handler = handlers.get(node.op)
            if handler is None and node.op in CHANNELWISE_OPS:
                handler = self.channelwise
            if handler is None:
                self.opaque(node)
            else:
                handler(node)
        for name in g.outputs:
            segs = self.segs(name)
            if isinstance(segs, tuple):
                for s in segs[1]:
                    self.pin_segs(s, "network output")
            else:
                self.pin_segs(segs, "network output")


def find_channel_groups(network, *example_inputs, discrete_dims=None, continuous_dims=None, graph=None):
    """Channel groups of ``network`` (a MindSpore Cell) for example inputs.

    ``discrete_dims`` / ``continuous_dims``: ``{parameter name: [axes]}`` in
    the manner of TorchIntegral: axis 0 of a weight is its output channels,
    axis 1 its input channels. A discrete dim pins its group; a continuous
    dim frees a group pinned only for being the network's input or output
    (a group pinned because an op may mix its channels cannot be freed).
    """
    graph = graph if graph is not None else trace(network, *example_inputs)
    a = _Analysis(graph, network)
    a.run()
    uf = a.uf

    def dims_vars(spec, what):
        out = []
        for pname, axes in (spec or {}).items():
            owner = a.owner.get(pname)
            if owner is None:
                raise ValueError(f"{what}: the network has no parameter {pname!r}")
            path = owner[0]
            if path not in a.layers:
                raise ValueError(f"{what}: parameter {pname!r} belongs to {path!r}, which the graph does not "
                                 f"use as a layer of a registered kind (convolution, dense, BatchNorm ...)")
            kind, out_segs, in_segs = a.layers[path]
            for axis in ([axes] if isinstance(axes, int) else axes):
                if axis not in (0, 1):
                    raise ValueError(f"{what}: axis {axis!r} of {pname!r}: only 0 (output channels) and "
                                     f"1 (input channels) are channel axes")
                segs = out_segs if axis == kind.out_axis else in_segs
                out += [(v, f"{pname} axis {axis}") for v, _ in (segs or [])]
        return out

    for v, label in dims_vars(discrete_dims, "discrete_dims"):
        uf.pin(v, f"pinned by discrete_dims ({label})")
    for v, label in dims_vars(continuous_dims, "continuous_dims"):
        r = uf.find(v)
        hard = [x for x in uf.reasons[r] if x not in ("network input", "network output")]
        if hard:
            raise ValueError(f"continuous_dims: {label} cannot be continuous: {'; '.join(hard)}")
        uf.reasons[r] = []

    names, groups = {}, OrderedDict()

    def group_of(v):
        r = uf.find(v)
        if r not in names:
            names[r] = None
        return r

    # Name each group after its first producer layer (in graph order).
    for path, (kind, out_segs, in_segs) in a.layers.items():
        for segs in (in_segs, out_segs):
            for v, _ in segs or []:
                group_of(v)
        if kind.makes_channels:
            for v, _ in out_segs or []:
                r = uf.find(v)
                if names[r] is None:
                    names[r] = path
    taken = set()
    for r in list(names):
        base = names[r] or ("input" if "network input" in uf.reasons[r] else "unnamed")
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}#{k}"
        taken.add(name)
        names[r] = name
        producers = []
        reasons = list(uf.reasons[r])
        groups[name] = ChannelGroup(name, uf.size[r], False, reasons, producers, uf.blocks[r])
    layers = OrderedDict()
    for path, (kind, out_segs, in_segs) in a.layers.items():
        out_name = None
        if kind.makes_channels and out_segs:
            out_name = names[uf.find(out_segs[0][0])]
            groups[out_name].producers.append(path)
        inputs = [(names[uf.find(v)], uf.size[uf.find(v)], s) for v, s in (in_segs or [])]
        layers[path] = LayerUse(path, kind.name, out_name, inputs)
    for g in groups.values():
        if not g.producers and not g.reasons:
            g.reasons.append("no convolution or dense layer produces it")
        g.continuous = not g.reasons
    result = ChannelGroups(groups, layers, a.bn_after)
    logger.info("found %d channel groups (%d continuous)", len(groups), len(result.continuous))
    return result
