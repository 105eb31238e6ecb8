"""Integral 2-D convolution: continuous output and input channel axes,
discrete spatial kernel."""
import numpy as np
from mindspore import Tensor, nn

from inn_ms.functional import conv2d, conv_backend
from inn_ms.layers.plain import Conv2d
from inn_ms.layers.base import (AUTO, IntegralLayer, channel_count, check_channels, init_control,
                                control_sizes, make_parameters, resolve_partition,
                                set_plain_weights)


def _pair(v, what, layer):
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return tuple(v)
    raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {v!r}")


def padding_args(padding, layer):
    """``(pad_mode, padding)`` for MindSpore from PyTorch-style padding.

    An int or ``(ph, pw)`` pads symmetrically as PyTorch does; ``'same'`` and
    ``'valid'`` are passed through; a 4-tuple is MindSpore's
    ``(top, bottom, left, right)``.
    """
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{layer}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        return padding, 0
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding):
            raise ValueError(f"{layer}: padding must be ints >= 0, got {padding!r}")
        return "pad", tuple(padding)
    ph, pw = _pair(padding, "padding", layer)
    if min(ph, pw) < 0:
        raise ValueError(f"{layer}: padding must be >= 0, got {padding!r}")
    return "pad", (ph, ph, pw, pw)


class IntegralConv2d(IntegralLayer):
    """A convolution whose weight is a continuous function of its output and
    input channel coordinates, sampled at the current partitions.

    ``in_partition``/``out_partition``: ``"auto"`` (own uniform partition),
    a shared partition (a channel group), or ``None`` for a discrete axis.
    ``groups`` may be 1 or, for a depthwise convolution, equal to
    ``in_channels == out_channels``: then the single partition is shared by
    input and output and nothing is integrated (each channel sees one input
    channel). Any other group count ``g`` (a grouped convolution) keeps its
    ``g`` groups and resamples the channels *per group*: each continuous
    axis is a :class:`~inn_ms.partition.BlockedPartition` of ``g`` blocks
    (``"auto"`` makes one), the output rows sampled block by block, and the
    weight's input axis (one group's channels) sampled at the block's nodes
    and integrated over one block.
    ``control``: control grid sizes ``(m_out, m_in)`` (None: one value per
    channel, as conversion needs); see :func:`~inn_ms.layers.base.control_sizes`.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, has_bias=True, in_partition=AUTO, out_partition=AUTO,
                 quadrature="trapezoid", weight=None, bias=None, control=None):
        super().__init__()
        name = type(self).__name__
        in_channels = check_channels(in_channels, name, "in_channels")
        out_channels = check_channels(out_channels, name, "out_channels")
        groups = check_channels(groups, name, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels {in_channels} and out_channels {out_channels} "
                             f"must be divisible by groups {groups}")
        self.kernel_size = _pair(kernel_size, "kernel_size", name)
        self.stride = _pair(stride, "stride", name)
        self.dilation = _pair(dilation, "dilation", name)
        self.pad_mode, self.padding = padding_args(padding, name)
        self._padding4 = self.padding if self.pad_mode == "pad" else (0, 0, 0, 0)
        self.conv_backend = conv_backend()  # see inn_ms.functional
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.depthwise = groups > 1 and groups == in_channels == out_channels
        blocks = 1 if self.depthwise else groups
        out_p = resolve_partition(out_partition, out_channels, name, "out", quadrature, blocks)
        if self.depthwise and isinstance(out_partition, str) and out_partition == AUTO \
                and in_partition is not None and not isinstance(in_partition, str):
            # One channel group: a given input partition is the output's too.
            out_partition = in_partition
            out_p = resolve_partition(out_partition, out_channels, name, "out", quadrature)
        if self.depthwise:
            in_p = resolve_partition(in_partition, in_channels, name, "in", quadrature)
            if out_p is not None and in_p is not None and in_p is not out_p and in_partition != AUTO:
                raise ValueError(f"{name}: a depthwise convolution has one channel group; "
                                 f"in_partition and out_partition must be the same partition")
            out_p = out_p if out_p is not None else in_p
            in_p = None
            m_in = 1
        else:
            in_p = resolve_partition(in_partition, in_channels, name, "in", quadrature, blocks)
            m_in = in_channels // groups
        fan_in = m_in * self.kernel_size[0] * self.kernel_size[1]
        m_out, m_in = control_sizes(control, out_channels, m_in, out_p, in_p, name)
        self._setup_axes(out_p, in_p, m_out, m_in, in_one_block=blocks > 1)
        shape = (m_out, m_in) + self.kernel_size
        if weight is None:
            weight, init_bias = init_control(shape, fan_in, self._control_partition(), has_bias=has_bias)
            bias = init_bias if bias is None else bias
        elif tuple(np.shape(weight)) != shape:
            raise ValueError(f"{name}: control weight must have shape {shape}, got {np.shape(weight)}")
        make_parameters(self, weight, bias if has_bias else None)

    def _control_partition(self):
        """The partition of the weight's input axis (for a grouped
        convolution, one block's), or None when it is discrete."""
        if self.in_axis is None:
            return None
        p = self.in_axis.get_partition()
        return p.block if self.in_axis.one_block else p

    @property
    def current_in_channels(self):
        if self.depthwise:
            return self.out_axis.size if self.out_axis is not None else self.in_channels
        if self.in_axis is not None and self.in_axis.one_block:
            return self.in_axis.size * self.groups
        return channel_count(self.in_axis, self.in_channels)

    @property
    def current_out_channels(self):
        return channel_count(self.out_axis, self.out_channels)

    def _current_groups(self):
        return self.current_out_channels if self.depthwise else self.groups

    def construct(self, x, size_key=None):
        return self.forward_sampled(x, self.sample_weight(), self.sample_bias())

    def forward_sampled(self, x, w, b):
        """The convolution with an already sampled weight ``w`` and bias ``b``
        (what ``construct`` runs after sampling; the elastic network calls it
        with samples it keeps between calls)."""
        groups = self.out_axis.size if self.depthwise and self.out_axis is not None else self.groups
        return conv2d(x, w, b, self.stride, self.pad_mode, self._padding4, self.dilation, groups,
                      self.conv_backend)

    def __call__(self, x, *args, **kwargs):
        _check_input(x, 4, self.current_in_channels, type(self).__name__)
        return super().__call__(x, *args, **kwargs)

    def discretize(self, out_index=None, in_index=None):
        """A plain convolution (an ``nn.Conv2d``) with the current sampled weight
        and bias; ``out_index``/``in_index`` keep only those channels of the
        sampled weight, or combine them (matrices; channel selection and
        merging baselines, :func:`take_channels`)."""
        w = self.numpy_weight()
        b = self.numpy_bias()
        if self.groups > 1 and not self.depthwise and (out_index is not None or in_index is not None):
            raise ValueError(f"{self.cls_name}: choosing or merging channels of a grouped convolution "
                             f"(groups={self.groups}) is not supported; resize its groups instead")
        if self.depthwise:
            in_index = None
            if out_index is not None:
                w = take_channels(w, out_index, 0)
                b = None if b is None else take_channels(b, out_index, 0)
        else:
            w, b = _select(w, b, out_index, in_index)
        groups = w.shape[0] if self.depthwise else self.groups
        conv = Conv2d(w.shape[1] * groups, w.shape[0], self.kernel_size,
                      stride=self.stride, pad_mode=self.pad_mode, padding=self.padding,
                      dilation=self.dilation, group=groups, has_bias=b is not None)
        return set_plain_weights(conv, w, b)

    @classmethod
    def from_discrete(cls, conv, in_partition=AUTO, out_partition=AUTO, quadrature="trapezoid"):
        """An integral convolution equal to the ``nn.Conv2d`` ``conv`` at full size."""
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"{cls.__name__}.from_discrete: expected nn.Conv2d, got {type(conv).__name__}")
        pad_mode = conv.pad_mode
        padding = conv.padding if pad_mode == "pad" else pad_mode
        if pad_mode == "pad" and isinstance(padding, int):
            padding = (padding, padding)
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=padding, dilation=conv.dilation, groups=conv.group,
                    has_bias=conv.has_bias, in_partition=in_partition, out_partition=out_partition,
                    quadrature=quadrature)
        in_p = None if layer.in_axis is None else layer.in_axis.get_partition()
        for what, p in (("in", in_p), ("out", layer.partitions.get("out"))):
            layer._check_full_size(p, what)
        control = cls.control_from_discrete(conv.weight.asnumpy(), layer._control_partition())
        layer.weight.set_data(Tensor(control))
        if conv.has_bias:
            layer.bias.set_data(Tensor(conv.bias.asnumpy().astype(np.float32)))
        return layer


def take_channels(a, index, axis):
    """Channels ``index`` of ``a`` along ``axis``: an index array keeps
    those channels; an ``n × N`` matrix makes channel ``i`` the combination
    ``Σ_c index[i, c] · a[c]`` (channel merging baselines)."""
    index = np.asarray(index)
    if index.ndim == 2:
        return np.moveaxis(np.tensordot(index, a, axes=(1, axis)), 0, axis)
    return np.take(a, index, axis=axis)


def _select(w, b, out_index, in_index):
    """Rows ``out_index`` and columns ``in_index`` of a sampled weight
    (index arrays or matrices, :func:`take_channels`)."""
    if out_index is not None:
        w = take_channels(w, out_index, 0)
        b = None if b is None else take_channels(b, out_index, 0)
    if in_index is not None:
        w = take_channels(w, in_index, 1)
    return w, b


def _check_input(x, rank, channels, layer):
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != rank:
        raise ValueError(f"{layer}: expected a {rank}-D input, got shape {shape}")
    if shape[1] != channels:
        raise ValueError(f"{layer}: input has {shape[1]} channels but the layer's input "
                         f"partition has {channels}")
