"""Partitions of [0, 1]: where a continuous channel dimension is sampled.

A partition belongs to a *channel group* (all dimensions that must be sampled
at the same points: a conv's output channels and the next layer's input
channels, say). Its size is the group's channel count. Kinds:

* :class:`UniformPartition` — the quadrature rule's own nodes (evenly spaced
  for composite rules); its size can be changed (:meth:`resize`).
* :class:`TrainablePartition` — non-uniform nodes learnt by gradient descent
  (pipeline B of the paper); ordered and inside [0, 1] by construction.
* :class:`CompositePartition` — a concatenation of sub-partitions, for the
  channels after a ``Concat``; its kernel matrix is block-diagonal.
* :class:`BlockedPartition` — ``blocks`` copies of one uniform partition,
  for the channels a grouped convolution reads or writes (one block per
  convolution group); resized as a whole, every block to the same size.

Random widths for training come from a :class:`SizeDistribution`
(:class:`UniformSizes`, :class:`NormalSizes`) that draws sizes for a
partition at each step.

Layers sample their weights through :class:`inn_ms.sampler.AxisSampler`,
which listens to its partition: a resize recomputes the fixed matrices once,
not at every forward pass.
"""
import weakref

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from inn_ms.quadrature import get_quadrature
from inn_ms.resampling import check_rule


def check_size(size, what):
    """An int ≥ 1, or a ValueError naming ``what`` and the value."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"{what}: size must be an int, got {size!r}")
    if size < 1:
        raise ValueError(f"{what}: size must be >= 1, got {size}")
    return int(size)


MIN_GROUP_SIZE = 2


def size_range(partition):
    """``(low, high)``: the sizes a channel group may be resized to — the one
    rule every resize, keep ratio, budget, artifact, pipeline B and elastic
    MindIR checks against. At least 2 channels (a one-node partition has no
    spacing: pipeline B cannot learn it, the elastic network cannot compute
    it, and it is never a useful width), at least the quadrature's own
    minimum, at most its full size (a trainable partition: its own fixed
    size); a group whose full size is below that minimum keeps its full size
    only. A group of blocks (:class:`BlockedPartition`, the channels of a
    grouped convolution) applies this to each block: its sizes are the
    multiples of :func:`size_step` (its block count) in the range."""
    blocks = size_step(partition)
    high = int(partition.size if partition.trainable else partition.full_size) // blocks
    low = min(max(MIN_GROUP_SIZE, partition.quadrature.min_points), high)
    return low * blocks, high * blocks


def size_step(partition):
    """The sizes a group takes are multiples of this (part of the rule of
    :func:`size_range`): its number of blocks, 1 for an ordinary group."""
    return int(getattr(partition, "blocks", 1))


def allowed_size(partition, size):
    """Whether ``size`` is one of the sizes :func:`size_range` and
    :func:`size_step` allow ``partition``."""
    low, high = size_range(partition)
    return not isinstance(size, bool) and isinstance(size, (int, np.integer)) and low <= size <= high \
        and size % size_step(partition) == 0


def describe_sizes(partition):
    """The allowed sizes in words, for error messages."""
    low, high = size_range(partition)
    step = size_step(partition)
    return f"an int in [{low}, {high}]" + (f" and a multiple of {step} (its blocks)" if step > 1 else "")


def leaf_parts(partition):
    """The partitions an axis is sampled on, block by block: the parts of a
    concatenation (recursively), the blocks of a :class:`BlockedPartition`,
    or the partition itself."""
    parts = getattr(partition, "parts", None)
    if parts is None:
        return [partition]
    return [leaf for p in parts for leaf in leaf_parts(p)]


class _Listened:
    """Keeps weak references to samplers to notify when the partition changes."""

    def _init_listeners(self):
        self._listeners = weakref.WeakSet()

    def add_listener(self, listener):
        self._listeners.add(listener)

    def _changed(self):
        for listener in list(self._listeners):
            listener.partition_changed()

    @property
    def resampling(self):
        """The rule sampling the group's weight functions at its nodes
        (:mod:`inn_ms.resampling`): ``"point"`` or ``"antialiased"``."""
        return self._resampling

    @resampling.setter
    def resampling(self, rule):
        rule = check_rule(rule, self.name)
        if rule != getattr(self, "_resampling", None):
            self._resampling = rule
            self._changed()


class UniformPartition(_Listened):
    """``size`` nodes of ``quadrature`` (uniform for composite rules).

    ``full_size``: the group's channel count at full width (the number of
    control values along it, what quadrature weights are normalised by, and
    the largest size :meth:`resize` takes); by default the initial size.
    """

    trainable = False

    def __init__(self, size, quadrature="trapezoid", name="partition", full_size=None, resampling="point"):
        self.name = name
        self.quadrature = get_quadrature(quadrature)
        self._size = check_size(size, name)
        self.full_size = check_size(full_size if full_size is not None else size, name)
        if self._size > self.full_size:
            raise ValueError(f"{name}: size {self._size} exceeds full_size {self.full_size}")
        if self._size < self.quadrature.min_points:
            raise ValueError(f"{name}: {self.quadrature.name} quadrature needs at least "
                             f"{self.quadrature.min_points} points, got {self._size}")
        self._init_listeners()
        self._resampling = check_rule(resampling, name)

    @property
    def size(self):
        return self._size

    @property
    def sizes(self):
        """Sizes of the blocks this partition is made of (one block here)."""
        return (self._size,)

    def resize(self, size):
        """Change the number of nodes (the group's channel count)."""
        size = check_size(size, self.name)
        if size > self.full_size:
            raise ValueError(f"{self.name}: size {size} exceeds the full size {self.full_size}")
        if size < self.quadrature.min_points:
            raise ValueError(f"{self.name}: {self.quadrature.name} quadrature needs at least "
                             f"{self.quadrature.min_points} points, got {size}")
        if size != self._size:
            self._size = size
            self._changed()

    def nodes(self):
        """Current nodes as a float64 numpy array."""
        return self.quadrature.nodes(self._size)

    def weights(self):
        """Quadrature weights of the current nodes (numpy)."""
        return self.quadrature.weights(self.nodes())

    def __repr__(self):
        return f"UniformPartition({self.name!r}, size={self._size}, quadrature={self.quadrature.name!r})"


class TrainablePartition(nn.Cell, _Listened):
    """Nodes ``x_0 = 0 < x_1 < … < x_{n-1} = 1`` with learnable spacing.

    The spacing is ``softmax(θ)``: positive and summing to one, so the nodes
    stay ordered and inside [0, 1] whatever the optimiser does; ``θ = 0``
    is the uniform partition. :meth:`construct` returns the nodes as a
    tensor (differentiable); :meth:`nodes` returns them in numpy.
    """

    trainable = True

    def __init__(self, size, quadrature="trapezoid", name="partition", nodes=None, full_size=None,
                 resampling="point"):
        nn.Cell.__init__(self)
        self._init_listeners()
        self.name = name
        self._resampling = check_rule(resampling, name)
        self.quadrature = get_quadrature(quadrature)
        size = check_size(size, name)
        if size < 2:
            raise ValueError(f"{name}: a trainable partition needs at least 2 nodes, got {size}")
        if size < self.quadrature.min_points:
            raise ValueError(f"{name}: {self.quadrature.name} quadrature needs at least "
                             f"{self.quadrature.min_points} points, got {size}")
        # Fail now, not at the first forward pass, for rules with fixed nodes.
        self.quadrature.weights(Tensor(np.linspace(0, 1, size), ms.float32))
        if nodes is None:
            theta = np.zeros(size - 1, np.float32)
        else:
            nodes = np.asarray(nodes, np.float64)
            if nodes.shape != (size,) or nodes[0] != 0 or nodes[-1] != 1 or np.any(np.diff(nodes) <= 0):
                raise ValueError(f"{name}: nodes must be {size} increasing values from 0 to 1")
            theta = np.log(np.diff(nodes)).astype(np.float32)
        self.theta = Parameter(Tensor(theta), name="theta")
        # The group's channel count at full width: quadrature weights are
        # normalised by it (inn_ms.sampler), so a trainable partition that
        # samples a group at fewer points keeps the layer's output scale.
        self.full_size = check_size(full_size if full_size is not None else size, name)

    @property
    def size(self):
        return int(self.theta.shape[0]) + 1

    @property
    def sizes(self):
        return (self.size,)

    def resize(self, size):
        if check_size(size, self.name) != self.size:
            raise ValueError(f"{self.name}: a trainable partition has a fixed size ({self.size}); "
                             f"make a new one to change it (asked for {size})")

    def construct(self):
        h = ops.softmax(self.theta)
        return ops.concat([ops.zeros(1, h.dtype), ops.cumsum(h, 0)])

    def nodes(self):
        theta = self.theta.asnumpy().astype(np.float64)
        h = np.exp(theta - theta.max())
        return np.concatenate([[0.0], np.cumsum(h / h.sum())])

    def weights(self):
        return self.quadrature.weights(self.nodes())

    def __repr__(self):
        return f"TrainablePartition({self.name!r}, size={self.size}, quadrature={self.quadrature.name!r})"


class CompositePartition(_Listened):
    """Concatenation of sub-partitions (the channels after a ``Concat``).

    Each block is its own copy of [0, 1] with its own control grid, so a
    layer reading these channels has a block-diagonal kernel matrix and the
    quadrature weights of each block in turn.
    """

    trainable = False

    def __init__(self, parts, name="composite"):
        self._init_listeners()
        if not parts:
            raise ValueError(f"{name}: a composite partition needs at least one part")
        for p in parts:
            if getattr(p, "trainable", False):
                raise ValueError(f"{name}: trainable parts are not supported in a composite partition")
        self.name = name
        self.parts = list(parts)
        for p in self.parts:
            p.add_listener(self)

    def partition_changed(self):
        self._changed()

    @property
    def resampling(self):
        """The parts' rule (a tuple, one per part, when they differ)."""
        rules = tuple(p.resampling for p in self.parts)
        return rules[0] if len(set(rules)) == 1 else rules

    @resampling.setter
    def resampling(self, rule):
        raise ValueError(f"{self.name}: set the resampling rule of the parts of a composite partition "
                         f"(its channel groups), not of the whole")

    @property
    def size(self):
        return sum(p.size for p in self.parts)

    @property
    def sizes(self):
        return tuple(p.size for p in self.parts)

    @property
    def full_size(self):
        return sum(p.full_size for p in self.parts)

    def resize(self, size):
        raise ValueError(f"{self.name}: resize the parts of a composite partition, not the whole")

    def nodes(self):
        return np.concatenate([p.nodes() for p in self.parts])

    def weights(self):
        return np.concatenate([p.weights() for p in self.parts])

    def __repr__(self):
        return f"CompositePartition({self.name!r}, parts={self.parts!r})"


class BlockedPartition(_Listened):
    """``blocks`` copies of one uniform partition side by side: the channels
    a grouped convolution with ``blocks`` groups reads or writes.

    Each block is its own segment of the weight functions along the axis
    (its own copy of [0, 1] with its own control values), so the function
    is piecewise continuous with ``blocks`` pieces. Resizing the whole to
    ``blocks · c`` samples every block at the same ``c`` nodes, and the
    convolution stays grouped with ``blocks`` groups. ``size`` and
    ``full_size`` count all channels (multiples of ``blocks``); ``block``
    is the per-block partition (not a channel group of its own).
    """

    trainable = False

    def __init__(self, size, blocks, quadrature="trapezoid", name="partition", full_size=None, resampling="point"):
        self._init_listeners()
        self.name = name
        self.blocks = check_size(blocks, f"{name}: blocks")
        size = check_size(size, name)
        full_size = check_size(full_size if full_size is not None else size, name)
        for what, v in (("size", size), ("full size", full_size)):
            if v % self.blocks:
                raise ValueError(f"{name}: {what} {v} is not a multiple of its {self.blocks} blocks")
        self.block = UniformPartition(size // self.blocks, quadrature=quadrature, name=f"{name}.block",
                                      full_size=full_size // self.blocks, resampling=resampling)
        self.block.add_listener(self)

    def partition_changed(self):
        self._changed()

    @property
    def quadrature(self):
        return self.block.quadrature

    @property
    def resampling(self):
        return self.block.resampling

    @resampling.setter
    def resampling(self, rule):
        self.block.resampling = rule  # the block tells this partition, which tells its samplers

    @property
    def size(self):
        return self.blocks * self.block.size

    @property
    def full_size(self):
        return self.blocks * self.block.full_size

    @property
    def sizes(self):
        return (self.block.size,) * self.blocks

    @property
    def parts(self):
        """The blocks, in channel order (the same partition ``blocks`` times)."""
        return [self.block] * self.blocks

    def resize(self, size):
        """Resize to ``size`` channels: every block to ``size / blocks``."""
        size = check_size(size, self.name)
        if size % self.blocks:
            raise ValueError(f"{self.name}: size {size} is not a multiple of its {self.blocks} blocks (the "
                             f"channels of a grouped convolution with {self.blocks} groups)")
        self.block.resize(size // self.blocks)

    def nodes(self):
        return np.tile(self.block.nodes(), self.blocks)

    def weights(self):
        return np.tile(self.block.weights(), self.blocks)

    def __repr__(self):
        return (f"BlockedPartition({self.name!r}, size={self.size}, blocks={self.blocks}, "
                f"quadrature={self.quadrature.name!r})")


class SizeDistribution:
    """Draws partition sizes in ``[low, high]`` that are multiples of ``step``
    (``high`` itself is always allowed). Subclasses set the probabilities."""

    def __init__(self, low, high, step=1):
        low, high, step = (check_size(v, type(self).__name__) for v in (low, high, step))
        if low > high:
            raise ValueError(f"{type(self).__name__}: low {low} > high {high}")
        self.low, self.high, self.step = low, high, step
        first = -(-low // step) * step
        sizes = list(range(first, high + 1, step))
        if not sizes or sizes[-1] != high:
            sizes.append(high)
        self.support = np.array(sizes)

    def probabilities(self):
        raise NotImplementedError

    def sample(self, rng):
        """One size, drawn with the numpy ``Generator`` ``rng``."""
        return int(rng.choice(self.support, p=self.probabilities()))

    def __repr__(self):
        return f"{type(self).__name__}(low={self.low}, high={self.high}, step={self.step})"


class UniformSizes(SizeDistribution):
    """Every allowed size equally likely."""

    def probabilities(self):
        return np.full(len(self.support), 1.0 / len(self.support))


class NormalSizes(SizeDistribution):
    """Sizes near ``high`` more likely: a half-normal falling from ``high``
    towards ``low`` with scale ``sigma`` (as a fraction of the range).

    Our reading of the paper's normal-like width sampling: the full width is
    the one used most, every width still gets trained.
    """

    def __init__(self, low, high, step=1, sigma=0.5):
        super().__init__(low, high, step)
        if not sigma > 0:
            raise ValueError(f"NormalSizes: sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def probabilities(self):
        span = max(self.high - self.low, 1)
        z = (self.high - self.support) / (span * self.sigma)
        p = np.exp(-0.5 * z * z)
        return p / p.sum()
