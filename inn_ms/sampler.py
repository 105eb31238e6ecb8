"""Sampling one continuous axis of a layer's control tensor at its partition.

An :class:`AxisSampler` holds the ``n × m`` matrix that maps the axis's ``m``
control values to its ``n`` current channels. On the integrated (input)
axis the quadrature weights are folded into the rows, so a layer's weight
is just ``A_out · λ · B_inᵀ``: two matmuls, nothing else.

Normalisation: the quadrature weights are multiplied by the partition's full
size ``N`` (``partition.full_size``: the group's channel count at full width,
also for a trainable partition sampling it at fewer points) (they sum to ``N`` instead of 1). At full size each weight is then
about 1, so control values have the scale of ordinary weights, which is what
optimisers and initialisers are tuned for (without it the control values are
``N`` times larger and Adam's steps ``N`` times too small). At a smaller size
``n`` the weights grow by about ``(N-1)/(n-1)``, keeping the integral's
magnitude (DESIGN.md §2).

The rule that samples the axis is the partition's ``resampling``
(:mod:`inn_ms.resampling`: point sampling or antialiased).

For fixed partitions the matrix is computed in numpy when the partition
changes and enters the graph as a constant. Sampling the integrated axis
of an ``s × m × r`` control tensor is one 2-D matmul on a reshaped view
(:func:`apply_along_axis1`): memory of the order of the weight itself.

When the matrix is diagonal (a uniform partition sampled at its control grid: a converted layer at full width, one
control value per channel) the axis multiplies by the diagonal instead of a
matmul: the matmul costs ``n`` times more (C³ per layer; a full-width
converted ResNet-18 forward spent seconds sampling its weights). For a trainable partition it is
computed in the graph from the partition's nodes, so gradients reach them.
"""
import numpy as np
from mindspore import Tensor, nn, ops

from inn_ms.cells import remove_cell
from inn_ms.keyed import SizeKeyed
from inn_ms.partition import leaf_parts
from inn_ms.resampling import sampling_matrix


def block_diagonal(blocks):
    """numpy block-diagonal matrix of 2-D blocks."""
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols), dtype=blocks[0].dtype)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r += b.shape[0]
        c += b.shape[1]
    return out


def fixed_matrix(partition, control_sizes, integrate):
    """The numpy sampling matrix of a fixed (uniform, composite or blocked)
    partition: block-diagonal over its :func:`~inn_ms.partition.leaf_parts`."""
    parts = leaf_parts(partition)
    if len(parts) != len(control_sizes):
        raise ValueError(f"{partition.name}: {len(parts)} blocks but {len(control_sizes)} control sizes")
    blocks = []
    for part, m in zip(parts, control_sizes):
        x = part.nodes()
        k = sampling_matrix(x, m, part.resampling)
        if integrate:
            k = k * (part.quadrature.weights(x) * part.full_size)[:, None]
        blocks.append(k)
    return block_diagonal(blocks)


_MATMUL_BT = ops.MatMul(transpose_b=True)


def apply_along_axis1(matrix, x):
    """``matrix`` (``n × m``) applied along axis 1 of a 3-D ``x`` (``s × m × r``
    → ``s × n × r``) by one 2-D matmul.

    ``ops.matmul(matrix, x)`` computes the same, but MindSpore broadcasts the
    matrix to ``s × n × m`` first: 16 GB of peak memory for ResNet-50's
    2048 → 1000 head sampled at half its input width, whose weight is 4 MB.
    Here the work is ``x`` viewed as ``(s·r) × m`` times ``matrixᵀ``: with
    ``r = 1`` (a dense layer) the reshapes are free and nothing is copied
    but the result; otherwise two transposes, each of the size of the
    weight. Works in both modes and is differentiable in both arguments.
    """
    s, m, r = x.shape
    if r == 1:
        return _MATMUL_BT(x.reshape(s, m), matrix).reshape(s, -1, 1)
    rows = ops.transpose(x, (0, 2, 1)).reshape(s * r, m)
    out = _MATMUL_BT(rows, matrix).reshape(s, r, -1)
    return ops.transpose(out, (0, 2, 1))


class AxisSampler(SizeKeyed, nn.Cell):
    """Samples one continuous axis (``control_size`` values) at ``partition``.

    ``integrate=True`` folds the partition's quadrature weights into the
    matrix (the input-channel axis of a layer). ``control_size`` may be a
    tuple, one per block (:func:`~inn_ms.partition.leaf_parts`: the parts of
    a concatenation, the blocks of a blocked partition).

    ``one_block=True`` (a :class:`~inn_ms.partition.BlockedPartition` only):
    the axis holds the channels of one block, sampled at the block's nodes
    (the input axis of a grouped convolution's weight, which every group of
    output rows reads in its own block); ``size`` is then the block's size.
    """

    runtime_sizes = False  # the size is the partition's, fixed in the graph (ElasticAxis: True)

    def __init__(self, partition, control_size, integrate, one_block=False):
        super().__init__()
        self.one_block = bool(one_block)
        if self.one_block and getattr(partition, "block", None) is None:
            raise ValueError(f"{partition.name}: one_block sampling needs a BlockedPartition")
        if isinstance(control_size, (tuple, list)):
            control_sizes = tuple(int(m) for m in control_size)
        else:
            control_sizes = (int(control_size),)
        leaves = leaf_parts(self._sampled(partition))
        blocks = getattr(self._sampled(partition), "blocks", None)
        if len(control_sizes) == 1 and blocks and control_size % blocks == 0:
            control_sizes = (control_size // blocks,) * blocks  # a grid of its own per block, alike
        elif len(control_sizes) == 1 and len(leaves) > 1:
            control_sizes = tuple(p.full_size for p in leaves)
            if sum(control_sizes) != control_size:
                raise ValueError(f"{partition.name}: control size {control_size} does not split "
                                 f"into the blocks' sizes {control_sizes}")
        self.control_sizes = control_sizes
        self.control_size = sum(control_sizes)
        self.integrate = bool(integrate)
        self.trainable = bool(getattr(partition, "trainable", False))
        if self.trainable:
            self.partition = partition  # a Cell: its nodes are parameters
        else:
            self._partition = [partition]  # a list: not a sub-cell
        partition.add_listener(self)
        self.size = partition.size
        self.sizes = tuple(partition.sizes)
        self.matrix = None
        self.partition_changed()

    def rebind(self, partition):
        """Sample at ``partition`` from now on (pipeline B swaps a group's
        uniform partition for a trainable one). The control values stay."""
        if len(leaf_parts(self._sampled(partition))) != len(self.control_sizes):
            raise ValueError(f"{partition.name}: {len(leaf_parts(self._sampled(partition)))} blocks but this "
                             f"axis has {len(self.control_sizes)}")
        self.trainable = bool(getattr(partition, "trainable", False))
        if self.trainable:
            self.partition = partition
        else:
            remove_cell(self, "partition")
            self._partition = [partition]
        partition.add_listener(self)
        self.partition_changed()

    def get_partition(self):
        return self.partition if self.trainable else self._partition[0]

    def _sampled(self, partition):
        """The partition whose nodes the axis is sampled at: the block of a
        blocked partition in one-block mode, else ``partition`` itself."""
        return partition.block if self.one_block else partition

    def partition_changed(self):
        """Recompute the fixed matrix and size after the partition changed."""
        p = self._sampled(self.get_partition())
        self.size = p.size
        self.sizes = tuple(p.sizes)
        self.diagonal = None
        if not self.trainable:
            matrix = fixed_matrix(p, self.control_sizes, self.integrate)
            self.matrix = Tensor(matrix.astype(np.float32))
            if matrix.shape[0] == matrix.shape[1]:
                d = np.diag(matrix).copy()
                off = matrix - np.diag(d)
                if np.abs(off).max(initial=0.0) <= 1e-12 * max(np.abs(d).max(initial=0.0), 1.0):
                    self.diagonal = Tensor(d.astype(np.float32))

    def numpy_matrix(self):
        """The current matrix in numpy (float64 for fixed partitions)."""
        p = self._sampled(self.get_partition())
        if self.trainable:
            x = p.nodes()
            k = sampling_matrix(x, self.control_size, p.resampling)
            return k * (p.quadrature.weights(x) * p.full_size)[:, None] if self.integrate else k
        return fixed_matrix(p, self.control_sizes, self.integrate)

    def size_key(self):
        # Block sizes (a composite can keep its total) and the rule: both
        # change the matrix, which graph mode bakes in as a constant.
        p = self.get_partition()
        return self.sizes + (p.resampling,)

    def sample_rows(self, x):
        """``A · x``: the axis sampled from control rows ``x`` (``m × …``, 2-D)."""
        if self.diagonal is not None:
            return x * self.diagonal.reshape(-1, 1)
        return ops.matmul(self.construct(), x)

    def sample_columns(self, x):
        """``A`` applied along axis 1 of a 3-D ``x`` (``s × m × r`` → ``s × n × r``)."""
        if self.diagonal is not None:
            return x * self.diagonal.reshape(1, -1, 1)
        return apply_along_axis1(self.construct(), x)

    def construct(self, size_key=None):
        if self.trainable:
            x = self.partition()
            k = sampling_matrix(x, self.control_size, self.partition.resampling)
            if self.integrate:
                k = k * (self.partition.quadrature.weights(x) * self.partition.full_size).reshape(-1, 1)
            return k
        return self.matrix
