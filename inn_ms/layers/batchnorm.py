"""Integral batch normalisation: per-channel parameters as functions of the
channel coordinate.

A BatchNorm that cannot be fused into the convolution before it (after a
concatenation, as in DenseNet's BN–ReLU–conv layers, or before a residual
add that joins it) lives on a channel group. Its four per-channel vectors
(γ, β, moving mean, moving variance) are control values sampled at the
group's partition like a layer's output axis: cubic interpolation, no
quadrature (nothing is integrated). At full size with one control value per
channel the sampling matrix is the identity, so a converted BatchNorm is
exact.

Training: batch statistics at the current width normalise the input, as in
``nn.BatchNorm2d``. The moving statistics are updated only at full width
(where a channel is a control value); at other widths they are left alone,
and inference at a smaller width samples the full-width statistics, which
the quadrature normalisation keeps at the right scale (DESIGN.md §2).
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from inn_ms.layers.base import AUTO, IntegralLayer, channel_count, check_channels, resolve_partition
from inn_ms.layers.conv import _check_input, take_channels


class IntegralBatchNorm2d(IntegralLayer):
    """``BatchNorm2d`` over ``num_features`` channels of a channel group.

    ``partition``: the group's partition (``"auto"``: its own uniform one).
    ``momentum`` follows MindSpore: new = momentum·old + (1−momentum)·batch.
    """

    def __init__(self, num_features, partition=AUTO, eps=1e-5, momentum=0.9, quadrature="trapezoid",
                 gamma=None, beta=None, moving_mean=None, moving_variance=None):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_channels(num_features, name, "num_features")
        if partition is None:
            raise ValueError(f"{name}: a discrete BatchNorm is nn.BatchNorm2d; give a partition or 'auto'")
        if not 0 <= momentum <= 1 or not eps > 0:
            raise ValueError(f"{name}: need 0 <= momentum <= 1 and eps > 0, got momentum={momentum}, eps={eps}")
        self.eps, self.momentum = float(eps), float(momentum)
        p = resolve_partition(partition, self.num_features, name, "out", quadrature)
        self._setup_axes(p, None, self.num_features, None)
        self.bias = None
        c = self.num_features

        def param(value, default, pname, grad):
            v = np.full(c, default, np.float32) if value is None else np.asarray(value, np.float32)
            if v.shape != (c,):
                raise ValueError(f"{name}: {pname} must have shape ({c},), got {v.shape}")
            return Parameter(Tensor(v), name=pname, requires_grad=grad)

        self.gamma = param(gamma, 1.0, "gamma", True)
        self.beta = param(beta, 0.0, "beta", True)
        self.moving_mean = param(moving_mean, 0.0, "moving_mean", False)
        self.moving_variance = param(moving_variance, 1.0, "moving_variance", False)

    @property
    def current_in_channels(self):
        return channel_count(self.out_axis, self.num_features)

    current_out_channels = current_in_channels

    def _full_width(self):
        return self.out_axis.size == self.num_features and not self.out_axis.trainable

    def construct(self, x, size_key=None):
        axis = self.out_axis
        gamma = axis.sample_rows(self.gamma.reshape(-1, 1)).reshape(-1)
        beta = axis.sample_rows(self.beta.reshape(-1, 1)).reshape(-1)
        if self.training:
            mean = x.mean((0, 2, 3))
            centred = x - mean.reshape(1, -1, 1, 1)
            var = (centred * centred).mean((0, 2, 3))
            n = x.shape[0] * x.shape[2] * x.shape[3]
            unbiased = var * (n / max(n - 1, 1))
            if axis.runtime_sizes:
                # Sizes known at run time only (inn_ms.elastic.elastic_layers): the same
                # update, weighted 0 unless the group is at its full width.
                rate = axis.at_full_size() * (1 - self.momentum)
                ops.assign(self.moving_mean, self.moving_mean + rate * (mean - self.moving_mean))
                ops.assign(self.moving_variance, self.moving_variance + rate * (unbiased - self.moving_variance))
            elif self._full_width():
                ops.assign(self.moving_mean, self.momentum * self.moving_mean + (1 - self.momentum) * mean)
                ops.assign(self.moving_variance,
                           self.momentum * self.moving_variance + (1 - self.momentum) * unbiased)
        else:
            mean = axis.sample_rows(self.moving_mean.reshape(-1, 1)).reshape(-1)
            var = ops.maximum(axis.sample_rows(self.moving_variance.reshape(-1, 1)).reshape(-1), 0.0)
            centred = x - mean.reshape(1, -1, 1, 1)
        scale = gamma / ops.sqrt(var + self.eps)
        return centred * scale.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)

    def __call__(self, x, *args, **kwargs):
        _check_input(x, 4, self.current_in_channels, type(self).__name__)
        return super().__call__(x, *args, **kwargs)

    def sampled(self):
        """γ, β, moving mean and variance at the current partition (float64 numpy)."""
        a = self.out_axis.numpy_matrix()
        out = [a @ p.asnumpy().astype(np.float64) for p in
               (self.gamma, self.beta, self.moving_mean, self.moving_variance)]
        out[3] = np.maximum(out[3], 0.0)
        return out

    def numpy_weight(self):
        return self.sampled()[0]

    def numpy_bias(self):
        return self.sampled()[1]

    def discretize(self, out_index=None, in_index=None):
        """A plain ``nn.BatchNorm2d`` at the current width (``out_index``:
        keep only those channels)."""
        values = self.sampled()
        if out_index is not None:
            values = [take_channels(v, out_index, 0) for v in values]
        bn = nn.BatchNorm2d(len(values[0]), eps=self.eps, momentum=self.momentum)
        for p, v in zip((bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance), values):
            p.set_data(Tensor(np.asarray(v, np.float32)))
        return bn

    @classmethod
    def from_discrete(cls, bn, partition=AUTO, quadrature="trapezoid"):
        """An integral BatchNorm equal to ``bn`` (an ``nn.BatchNorm2d``) at full size."""
        if not isinstance(bn, nn.BatchNorm2d):
            raise ValueError(f"{cls.__name__}.from_discrete: expected nn.BatchNorm2d, got {type(bn).__name__}")
        c = int(bn.moving_mean.shape[0])
        # nn.BatchNorm2d stores 1 - momentum in its `momentum` attribute.
        layer = cls(c, partition, eps=float(bn.eps), momentum=1.0 - float(bn.momentum), quadrature=quadrature,
                    gamma=bn.gamma.asnumpy(), beta=bn.beta.asnumpy(), moving_mean=bn.moving_mean.asnumpy(),
                    moving_variance=bn.moving_variance.asnumpy())
        layer._check_full_size(layer.partitions.get("out"), "channel")
        return layer
