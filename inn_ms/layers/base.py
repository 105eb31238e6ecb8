"""What every integral layer shares: partitions per channel axis, sampling of
the control tensor, size-keyed compilation and exact conversion.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn
from mindspore.common.initializer import Uniform, initializer

from inn_ms.keyed import SizeKeyed
from inn_ms.partition import BlockedPartition, UniformPartition, check_size, leaf_parts
from inn_ms.sampler import AxisSampler

AUTO = "auto"


def resolve_partition(partition, channels, layer, axis, quadrature, blocks=1):
    """A partition for one channel axis of a layer.

    ``"auto"``: a new uniform partition of ``channels`` nodes (``blocks > 1``,
    the channels of a grouped convolution: a :class:`BlockedPartition` of
    that many blocks); ``None``: the axis stays discrete; a partition:
    shared, and its full size (and, for ``blocks > 1``, its block count)
    must match.
    """
    if partition is None:
        return None
    if isinstance(partition, str):
        if partition != AUTO:
            raise ValueError(f"{layer}: {axis}_partition must be a partition, None or 'auto', got {partition!r}")
        if blocks > 1:
            return BlockedPartition(channels, blocks, quadrature=quadrature, name=f"{layer}.{axis}")
        return UniformPartition(channels, quadrature=quadrature, name=f"{layer}.{axis}")
    if partition.full_size != channels:
        raise ValueError(f"{layer}: {axis} has {channels} channels but partition "
                         f"{partition.name!r} has full size {partition.full_size}")
    if blocks > 1 and getattr(partition, "blocks", 1) != blocks:
        raise ValueError(f"{layer}: a grouped convolution with {blocks} groups needs a BlockedPartition of "
                         f"{blocks} blocks on its {axis} channels, got {partition!r}")
    return partition


class IntegralLayer(SizeKeyed, nn.Cell):
    """Base of the integral layers: a control tensor ``weight`` of shape
    ``(m_out, m_in, …)``, an optional control ``bias`` of shape ``(m_out,)``,
    and an :class:`AxisSampler` per continuous channel axis."""

    def _setup_axes(self, out_partition, in_partition, m_out, m_in, integrate_in=True, in_one_block=False):
        self.out_axis = None if out_partition is None else AxisSampler(out_partition, m_out, integrate=False)
        self.in_axis = None if in_partition is None else AxisSampler(in_partition, m_in, integrate=integrate_in,
                                                                     one_block=in_one_block)

    def record_output_statistics(self, mean, std):
        """Keep the per-channel mean and standard deviation of this layer's
        output in the full network (a BatchNorm folded into it knew them):
        non-trainable Parameters ``output_mean``/``output_std`` of the full
        channel count, saved with the weights, read by data-free repair."""
        n = int(self.weight.shape[0]) if self.out_axis is None else self.out_axis.get_partition().full_size
        for name, v in (("output_mean", mean), ("output_std", std)):
            v = np.asarray(v, np.float32)
            if v.shape != (n,) or not np.isfinite(v).all():
                raise ValueError(f"{self.cls_name}: {name} must be {n} finite values, got shape {v.shape}")
            setattr(self, name, Parameter(Tensor(v), name=name, requires_grad=False))

    def output_statistics(self):
        """``(mean, std)`` recorded by :meth:`record_output_statistics`, or None."""
        mean = getattr(self, "output_mean", None)
        if mean is None:
            return None
        return mean.asnumpy().astype(np.float64), self.output_std.asnumpy().astype(np.float64)

    @property
    def partitions(self):
        """The partitions of the continuous axes: ``{'out': …, 'in': …}``."""
        out = {}
        if self.out_axis is not None:
            out["out"] = self.out_axis.get_partition()
        if self.in_axis is not None:
            out["in"] = self.in_axis.get_partition()
        return out

    def size_key(self):
        # Block sizes, not just totals (a composite partition can keep its
        # total while its blocks change), and the resampling rules: all of
        # them change the sampling matrices (AxisSampler.size_key).
        return tuple(k for axis in (self.out_axis, self.in_axis) if axis is not None for k in axis.size_key())

    def sample_weight(self):
        """The weight at the current partitions, quadrature included."""
        w = self.weight
        shape = w.shape
        if self.out_axis is not None:
            rows = self.out_axis.sample_rows(w.reshape(shape[0], -1))
            w = rows.reshape((rows.shape[0],) + shape[1:])
        if self.in_axis is not None:
            s = w.shape
            cols = self.in_axis.sample_columns(w.reshape(s[0], s[1], -1))
            w = cols.reshape((s[0], cols.shape[1]) + s[2:])
        return w

    def sample_bias(self):
        if self.bias is None:
            return None
        if self.out_axis is None:
            return self.bias
        return self.out_axis.sample_rows(self.bias.reshape(-1, 1)).reshape(-1)

    def numpy_bias(self):
        """The sampled bias in float64 numpy, or None."""
        if self.bias is None:
            return None
        b = self.bias.asnumpy().astype(np.float64)
        return b if self.out_axis is None else self.out_axis.numpy_matrix() @ b

    def numpy_weight(self):
        """The sampled weight in float64 numpy (a reference for tests and export)."""
        w = self.weight.asnumpy().astype(np.float64)
        if self.out_axis is not None:
            w = np.tensordot(self.out_axis.numpy_matrix(), w, axes=(1, 0))
        if self.in_axis is not None:
            w = np.moveaxis(np.tensordot(self.in_axis.numpy_matrix(), w, axes=(1, 1)), 0, 1)
        return w

    @staticmethod
    def control_from_discrete(weight, in_partition, integrate_in=True):
        """Control values that reproduce ``weight`` exactly at full size.

        The quadrature multiplies the input axis, so the control values are
        the discrete weights divided by the full-size quadrature weights.
        """
        w = np.asarray(weight, np.float64)
        if in_partition is not None and integrate_in:
            q = full_size_weights(in_partition)
            if np.any(q <= 0):
                raise ValueError(f"{in_partition.name}: {in_partition.quadrature.name} quadrature gives "
                                 f"weight 0 to some channels, so a discrete layer cannot be represented "
                                 f"exactly; use 'trapezoid' or 'simpson'")
            w = w / q.reshape((1, -1) + (1,) * (w.ndim - 2))
        return w.astype(np.float32)

    def _check_full_size(self, partition, what):
        if partition is not None and partition.size != partition.full_size:
            raise ValueError(f"{self.cls_name}: {what} partition {partition.name!r} must be at its full size "
                             f"{partition.full_size} to build from a discrete layer (it is {partition.size})")
        # Exactness needs the full-size nodes on the control grid j/(n-1),
        # where the kernel matrix is the identity: not so for Gauss-Legendre
        # nodes or trained (non-uniform) positions.
        for p in leaf_parts(partition) if partition is not None else []:
            x = np.asarray(p.nodes(), np.float64)
            if len(x) > 1 and not np.allclose(x, np.linspace(0.0, 1.0, len(x)), rtol=0, atol=1e-6):
                raise ValueError(f"{self.cls_name}: {what} partition {p.name!r} ({p.quadrature.name} quadrature) "
                                 f"is not uniform at full size, so a discrete layer cannot be reproduced "
                                 f"exactly; use a uniform partition with 'trapezoid' or 'simpson'")


def full_size_weights(partition):
    """Quadrature weights of ``partition`` at its full size (numpy), whatever
    its current size: control values always describe the full-size weight."""
    parts = getattr(partition, "parts", None)
    if parts is not None:
        return np.concatenate([full_size_weights(p) for p in parts])
    if partition.size == partition.full_size:
        q = partition.weights()
    else:
        rule = partition.quadrature
        q = rule.weights(rule.nodes(partition.full_size))
    # Normalised as in inn_ms.sampler: weights sum to the full size.
    return np.asarray(q, np.float64) * partition.full_size


def init_control(shape, fan_in, in_partition, integrate_in=True, has_bias=True):
    """Control values for a new layer: He-uniform (ReLU gain, variance
    2/fan_in of the full-size weight) drawn on the control grid. MindSpore's
    own conv/dense default (negative_slope=√5, variance 1/(3·fan_in)) shrinks
    the signal at every layer; networks without normalisation then start
    with vanishing activations and train slowly. When the input control grid
    has one value per channel, the values are divided by the full-size
    quadrature weights as for a converted layer. Biases: U(±1/√fan_in)."""
    bound = math.sqrt(6.0 / fan_in)
    w = initializer(Uniform(bound), shape, ms.float32).init_data().asnumpy()
    if in_partition is not None and shape[1] == in_partition.full_size:
        w = IntegralLayer.control_from_discrete(w, in_partition, integrate_in)
    bias = None
    if has_bias:
        bias = initializer(Uniform(1 / math.sqrt(fan_in)), (shape[0],), ms.float32).init_data().asnumpy()
    return w, bias


def control_sizes(control, out_channels, in_channels, out_partition, in_partition, layer):
    """Control grid sizes ``(m_out, m_in)``. ``control`` is None (one control
    value per channel: exact conversion of discrete layers) or a pair whose
    entries (None: per channel) set a grid size for a continuous axis. A
    grid smaller than the channel count makes the weight smooth along that
    axis by construction, which is what lets a network trained from scratch
    work at every width in its range, not only at the widths it was trained
    at (README: the main job's measurements)."""
    if control is None:
        return out_channels, in_channels
    if not isinstance(control, (tuple, list)) or len(control) != 2:
        raise ValueError(f"{layer}: control must be None or a pair (m_out, m_in), got {control!r}")
    sizes = []
    for m, full, p, axis in zip(control, (out_channels, in_channels), (out_partition, in_partition), ("out", "in")):
        if m is None:
            sizes.append(full)
            continue
        m = check_size(m, f"{layer}: {axis} control size")
        if p is None and m != full:
            raise ValueError(f"{layer}: the {axis} axis is discrete, its control size must be {full}, got {m}")
        sizes.append(m)
    return tuple(sizes)


def set_plain_weights(cell, weight, bias):
    """Load a sampled (numpy) weight and bias into a plain ``nn.Conv2d``/``nn.Dense``."""
    cell.weight.set_data(Tensor(np.asarray(weight, np.float32)))
    if bias is not None:
        cell.bias.set_data(Tensor(np.asarray(bias, np.float32)))
    return cell


def make_parameters(cell, control, bias):
    cell.weight = Parameter(Tensor(np.ascontiguousarray(control), ms.float32), name="weight")
    cell.bias = None if bias is None else Parameter(Tensor(np.asarray(bias, np.float32)), name="bias")


def channel_count(axis, full):
    """Current channel count of an axis (its partition's size, or ``full`` if discrete)."""
    return full if axis is None else axis.size


def check_channels(value, layer, what):
    return check_size(value, f"{layer}: {what}")
