"""Builds the same architecture as a discrete or an integral network.

A :class:`LayerFactory` hands out convolutions and dense layers. The discrete
one returns ``nn.Conv2d``/``nn.Dense`` (PyTorch-style padding); the integral
one returns integral layers whose channel axes share one partition per named
channel group, so architecture code says which dimensions belong together
and nothing else.
"""
import math
import numbers
from collections import OrderedDict

from mindspore import nn
from mindspore.common.initializer import HeUniform, Uniform

from inn_ms.cells import name_parameters_by_path
from inn_ms.layers import IntegralBatchNorm2d, IntegralConv2d, IntegralDense
from inn_ms.layers.plain import Conv2d
from inn_ms.model import IntegralModel
from inn_ms.partition import UniformPartition

DISCRETE = None  # group name for an axis that stays discrete


def _area(k):
    return k * k if isinstance(k, int) else k[0] * k[1]


def _bias_init(fan_in):
    return Uniform(1 / math.sqrt(fan_in))


class DiscreteFactory:
    """Plain layers, initialised like the integral ones (He-uniform weights,
    see inn_ms.layers.base.init_control), so baselines start alike."""

    integral = False

    def conv(self, cin, cout, k, stride=1, padding=0, groups=1, has_bias=True, in_group=None, out_group=None):
        pad = (padding, padding, padding, padding) if isinstance(padding, int) else padding
        return Conv2d(cin, cout, k, stride=stride, pad_mode="pad", padding=pad, group=groups, has_bias=has_bias,
                      weight_init=HeUniform(negative_slope=0), bias_init=_bias_init(cin // groups * _area(k)))

    def dense(self, cin, cout, has_bias=True, in_group=None, out_group=None, in_spatial=1):
        return nn.Dense(cin * in_spatial, cout, has_bias=has_bias, weight_init=HeUniform(negative_slope=0),
                        bias_init=_bias_init(cin * in_spatial))

    def bn(self, channels, group=None):
        return _plain_bn(channels)

    def separable(self, cin, cout, k, stride=1, padding=0, has_bias=True, in_group=None, out_group=None):
        return _separable(self, cin, cout, k, stride, padding, has_bias, in_group, out_group)


class IntegralFactory:
    """Integral layers; ``in_group``/``out_group`` name the channel group of
    each axis (``None``: discrete). Groups are created on first use.

    ``control_ratio`` < 1 gives every continuous axis a control grid of
    ``max(4, round(ratio · channels))`` values instead of one per channel:
    smooth weights by construction, for networks trained from scratch.
    """

    integral = True

    def __init__(self, quadrature="trapezoid", control_ratio=1.0):
        if not 0 < control_ratio <= 1:
            raise ValueError(f"control_ratio must be in (0, 1], got {control_ratio!r}")
        self.quadrature = quadrature
        self.control_ratio = control_ratio
        self.groups = OrderedDict()

    def _control(self, out_group, in_group, cout, cin):
        if self.control_ratio == 1.0:
            return None
        size = lambda group, c: None if group is None else min(c, max(4, round(self.control_ratio * c)))
        return (size(out_group, cout), size(in_group, cin))

    def group(self, name, channels):
        if name is None:
            return None
        if name not in self.groups:
            self.groups[name] = UniformPartition(channels, quadrature=self.quadrature, name=name)
        p = self.groups[name]
        if p.full_size != channels:
            raise ValueError(f"group {name!r} has {p.full_size} channels, a layer asked for {channels}")
        return p

    def conv(self, cin, cout, k, stride=1, padding=0, groups=1, has_bias=True, in_group=None, out_group=None):
        depthwise = groups > 1
        control = self._control(out_group, None if depthwise else in_group, cout, cin // groups)
        return IntegralConv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, has_bias=has_bias,
                              in_partition=self.group(in_group, cin), out_partition=self.group(out_group, cout),
                              quadrature=self.quadrature, control=control)

    def dense(self, cin, cout, has_bias=True, in_group=None, out_group=None, in_spatial=1):
        return IntegralDense(cin, cout, has_bias=has_bias, in_partition=self.group(in_group, cin),
                             out_partition=self.group(out_group, cout), quadrature=self.quadrature,
                             control=self._control(out_group, in_group, cout, cin), in_spatial=in_spatial)

    def bn(self, channels, group=None):
        """BatchNorm on a channel group: its per-channel parameters are sampled
        at the group's partition, so it follows the convolution it normalises."""
        if group is None:
            return _plain_bn(channels)
        return IntegralBatchNorm2d(channels, partition=self.group(group, channels), eps=1e-5, momentum=0.9,
                                   quadrature=self.quadrature)

    def separable(self, cin, cout, k, stride=1, padding=0, has_bias=True, in_group=None, out_group=None):
        return _separable(self, cin, cout, k, stride, padding, has_bias, in_group, out_group)


def _plain_bn(channels):
    # MindSpore momentum 0.9 is PyTorch's 0.1; eps as PyTorch's default.
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


class SeparableConv(nn.Cell):
    """A ``k×k`` depthwise convolution on the input channels followed by a
    1×1 convolution to the output channels (Lin et al.'s separable integral
    operator when its two layers are integral: the depthwise kernel lives on
    the input group, the pointwise one integrates over it). Nothing sits
    between the two: the pair replaces one ``k×k`` convolution."""

    def __init__(self, depthwise, pointwise):
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = pointwise

    def construct(self, x):
        return self.pointwise(self.depthwise(x))


def _separable(f, cin, cout, k, stride, padding, has_bias, in_group, out_group):
    depthwise = f.conv(cin, cin, k, stride=stride, padding=padding, groups=cin, has_bias=False,
                       in_group=in_group, out_group=in_group)
    pointwise = f.conv(cin, cout, 1, has_bias=has_bias, in_group=in_group, out_group=out_group)
    return SeparableConv(depthwise, pointwise)


def finish(net, factory):
    """Name parameters by their path (unique names, which graph mode needs),
    and wrap an integral network in an IntegralModel with its named groups."""
    name_parameters_by_path(net)
    if not factory.integral:
        return net
    return IntegralModel(net, groups=factory.groups)


def make_factory(integral, quadrature="trapezoid", control_ratio=1.0):
    return IntegralFactory(quadrature, control_ratio) if integral else DiscreteFactory()


STEMS = ("cifar", "imagenet")


def check_stem(stem, model):
    """Validate a zoo entry's ``stem`` option: ``'cifar'`` (32×32 inputs,
    no early downsampling) or ``'imagenet'`` (224×224, the published stem)."""
    if stem not in STEMS:
        raise ValueError(f"{model}: stem must be one of {STEMS}, got {stem!r}")
    return stem


def check_widths(widths, model, names=None):
    """``widths`` as a tuple of positive ints, one per name of ``names``
    (any number >= 1 without): a wrong length or value is named here
    rather than failing somewhere inside the network's constructor."""
    want = f"{len(names)} channel counts ({', '.join(names)})" if names else "one or more channel counts"
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__"):
        raise ValueError(f"{model}: widths must be a list of {want}, got {widths!r}")
    if (names and len(widths) != len(names)) or not len(widths) or \
            any(isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1 for w in widths):
        raise ValueError(f"{model}: widths must be {want}, positive ints, got {list(widths)!r}")
    return tuple(int(w) for w in widths)


def scaled(channels, width, model):
    """``channels`` times the width multiplier ``width`` (rounded, at least 1):
    the same architecture thinner or wider, for quick experiments and tests."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"{model}: width must be a number > 0, got {width!r}")
    return max(1, round(channels * width))
