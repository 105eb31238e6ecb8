"""Integral fully connected layer: ``F_O(x_out) = ∫ F_W(x_out, x_in) F_I(x_in) dx_in``."""
import numpy as np
from mindspore import Tensor, nn, ops

from inn_ms.layers.base import (AUTO, IntegralLayer, channel_count, check_channels, init_control,
                                control_sizes, make_parameters, resolve_partition,
                                set_plain_weights)
from inn_ms.layers.conv import _select


class IntegralDense(IntegralLayer):
    """A dense layer whose weight is a continuous function of its output and
    input coordinates. ``in_partition``/``out_partition`` as in
    :class:`~inn_ms.layers.conv.IntegralConv2d`, and so is ``control``.

    ``in_spatial``: a dense layer after a flatten reads each input channel
    at ``in_spatial`` positions (``H·W``; features are channel-major, as
    ``Flatten`` of NCHW lays them out). The input has
    ``in_channels · in_spatial`` features; the channel axis is continuous,
    the positions are a discrete axis of the control tensor.

    As for ``nn.Dense``, the input may have any rank of at least 2, with
    the features on its last axis: a transformer's tokens ``(batch, tokens,
    channels)``.
    """

    def __init__(self, in_channels, out_channels, has_bias=True, in_partition=AUTO,
                 out_partition=AUTO, quadrature="trapezoid", weight=None, bias=None, control=None,
                 in_spatial=1):
        super().__init__()
        name = type(self).__name__
        self.in_channels = check_channels(in_channels, name, "in_channels")
        self.out_channels = check_channels(out_channels, name, "out_channels")
        self.in_spatial = check_channels(in_spatial, name, "in_spatial")
        out_p = resolve_partition(out_partition, self.out_channels, name, "out", quadrature)
        in_p = resolve_partition(in_partition, self.in_channels, name, "in", quadrature)
        shape = control_sizes(control, self.out_channels, self.in_channels, out_p, in_p, name)
        self._setup_axes(out_p, in_p, *shape)
        if self.in_spatial > 1:
            shape = shape + (self.in_spatial,)
        if weight is None:
            weight, init_bias = init_control(shape, self.in_channels * self.in_spatial, in_p, has_bias=has_bias)
            bias = init_bias if bias is None else bias
        elif tuple(np.shape(weight)) != shape:
            raise ValueError(f"{name}: control weight must have shape {shape}, got {np.shape(weight)}")
        make_parameters(self, weight, bias if has_bias else None)

    @property
    def current_in_channels(self):
        return channel_count(self.in_axis, self.in_channels)

    @property
    def current_out_channels(self):
        return channel_count(self.out_axis, self.out_channels)

    def construct(self, x, size_key=None):
        return self.forward_sampled(x, self.sample_weight(), self.sample_bias())

    def forward_sampled(self, x, w, b):
        """The layer with an already sampled weight ``w`` and bias ``b`` (see
        :meth:`IntegralConv2d.forward_sampled`)."""
        if self.in_spatial > 1:
            w = w.reshape(w.shape[0], -1)
        return ops.dense(x, w, b)

    def __call__(self, x, *args, **kwargs):
        name = type(self).__name__
        shape = getattr(x, "shape", None)
        features = self.current_in_channels * self.in_spatial
        if shape is None or len(shape) < 2:
            raise ValueError(f"{name}: expected an input of rank 2 or more (features last), got shape {shape}")
        if shape[-1] != features:
            raise ValueError(f"{name}: input has {shape[-1]} features on its last axis but the layer reads "
                             f"{features} ({self.current_in_channels} channels x {self.in_spatial} positions)")
        return super().__call__(x, *args, **kwargs)

    def discretize(self, out_index=None, in_index=None):
        """A plain ``nn.Dense`` with the current sampled weight and bias;
        ``out_index``/``in_index`` keep only those (output, input) channels."""
        w, b = _select(self.numpy_weight(), self.numpy_bias(), out_index, in_index)
        w = w.reshape(w.shape[0], -1)
        dense = nn.Dense(w.shape[1], w.shape[0], has_bias=b is not None)
        return set_plain_weights(dense, w, b)

    @classmethod
    def from_discrete(cls, dense, in_partition=AUTO, out_partition=AUTO, quadrature="trapezoid", in_spatial=1):
        """An integral dense layer equal to the ``nn.Dense`` ``dense`` at full size."""
        if not isinstance(dense, nn.Dense):
            raise ValueError(f"{cls.__name__}.from_discrete: expected nn.Dense, got {type(dense).__name__}")
        if dense.in_channels % in_spatial:
            raise ValueError(f"{cls.__name__}.from_discrete: {dense.in_channels} input features do not split "
                             f"into channels of {in_spatial} positions")
        layer = cls(dense.in_channels // in_spatial, dense.out_channels, has_bias=dense.has_bias,
                    in_partition=in_partition, out_partition=out_partition, quadrature=quadrature,
                    in_spatial=in_spatial)
        parts = layer.partitions
        for what in ("in", "out"):
            layer._check_full_size(parts.get(what), what)
        w = dense.weight.asnumpy()
        if in_spatial > 1:
            w = w.reshape(w.shape[0], -1, in_spatial)
        layer.weight.set_data(Tensor(cls.control_from_discrete(w, parts.get("in"))))
        if dense.has_bias:
            layer.bias.set_data(Tensor(dense.bias.asnumpy().astype(np.float32)))
        return layer
