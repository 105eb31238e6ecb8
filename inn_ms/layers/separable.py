"""Separable integral convolution (Lin et al., 2024): a depthwise integral
operator along the channel axis followed by a pointwise integral operator.

The depthwise kernel is continuous along its single channel axis, which is
the input channel group; the pointwise (1×1) kernel is continuous along both
its axes and integrates over the input group.
"""
from mindspore import nn

from inn_ms.keyed import SizeKeyed
from inn_ms.layers.base import AUTO
from inn_ms.layers.conv import IntegralConv2d
from inn_ms.partition import UniformPartition


class SeparableIntegralConv2d(SizeKeyed, nn.Cell):
    """Depthwise ``kernel_size`` convolution on ``in_channels`` then a 1×1
    convolution to ``out_channels``; both integral."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 has_bias=True, in_partition=AUTO, out_partition=AUTO, quadrature="trapezoid"):
        super().__init__()
        if isinstance(in_partition, str) and in_partition == AUTO:
            in_partition = UniformPartition(in_channels, quadrature=quadrature,
                                            name="SeparableIntegralConv2d.in")
        self.depthwise = IntegralConv2d(in_channels, in_channels, kernel_size, stride=stride,
                                        padding=padding, dilation=dilation, groups=in_channels,
                                        has_bias=has_bias, in_partition=in_partition,
                                        out_partition=in_partition, quadrature=quadrature)
        self.pointwise = IntegralConv2d(in_channels, out_channels, 1, has_bias=has_bias,
                                        in_partition=in_partition, out_partition=out_partition,
                                        quadrature=quadrature)

    def size_key(self):
        return self.depthwise.size_key() + self.pointwise.size_key()

    def construct(self, x, size_key=None):
        return self.pointwise(self.depthwise(x))

    def discretize(self):
        """``nn.SequentialCell`` of the two plain convolutions at the current size."""
        return nn.SequentialCell([self.depthwise.discretize(), self.pointwise.discretize()])

    @classmethod
    def from_discrete(cls, depthwise, pointwise, in_partition=AUTO, out_partition=AUTO,
                      quadrature="trapezoid"):
        """From a depthwise ``nn.Conv2d`` and a 1×1 ``nn.Conv2d`` that follows it."""
        for conv in (depthwise, pointwise):
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"{cls.__name__}.from_discrete: expected two nn.Conv2d, got "
                                 f"{type(conv).__name__}")
        if depthwise.group != depthwise.in_channels or depthwise.out_channels != depthwise.in_channels:
            raise ValueError(f"{cls.__name__}.from_discrete: first conv must be depthwise "
                             f"(groups == in == out), got groups={depthwise.group}")
        if tuple(pointwise.kernel_size) != (1, 1) or pointwise.in_channels != depthwise.out_channels:
            raise ValueError(f"{cls.__name__}.from_discrete: second conv must be 1x1 on "
                             f"{depthwise.out_channels} channels")
        if isinstance(in_partition, str) and in_partition == AUTO:
            in_partition = UniformPartition(depthwise.in_channels, quadrature=quadrature,
                                            name=f"{cls.__name__}.in")
        layer = cls.__new__(cls)  # the two parts are built here, not by __init__
        nn.Cell.__init__(layer)
        layer.depthwise = IntegralConv2d.from_discrete(depthwise, in_partition, in_partition, quadrature)
        layer.pointwise = IntegralConv2d.from_discrete(pointwise, in_partition, out_partition, quadrature)
        return layer
