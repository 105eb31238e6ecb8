"""Builds the same architecture as a discrete or an integral network.

A :class:`LayerFactory` hands out convolutions and dense layers. The discrete
one returns ``nn.Conv2d``/``nn.Dense`` (PyTorch-style padding); the integral
one returns integral layers whose channel axes share one partition per named
channel group, so architecture code says which dimensions belong together
and nothing else.
"""
import math
from collections import OrderedDict

from mindspore import nn
from mindspore.common.initializer import HeUniform, Uniform

from inn_ms.layers import IntegralConv2d, IntegralDense
from inn_ms.layers.plain import Conv2d
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

    def dense(self, cin, cout, has_bias=True, in_group=None, out_group=None):
        return nn.Dense(cin, cout, has_bias=has_bias, weight_init=HeUniform(negative_slope=0),
                        bias_init=_bias_init(cin))


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
        if p.max_size != channels:
            raise ValueError(f"group {name!r} has {p.max_size} channels, a layer asked for {channels}")
        return p

    def conv(self, cin, cout, k, stride=1, padding=0, groups=1, has_bias=True, in_group=None, out_group=None):
        depthwise = groups > 1
        control = self._control(out_group, None if depthwise else in_group, cout, cin // groups)
        return IntegralConv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, has_bias=has_bias,
                              in_partition=self.group(in_group, cin), out_partition=self.group(out_group, cout),
                              quadrature=self.quadrature, control=control)

    def dense(self, cin, cout, has_bias=True, in_group=None, out_group=None):
        return IntegralDense(cin, cout, has_bias=has_bias, in_partition=self.group(in_group, cin),
                             out_partition=self.group(out_group, cout), quadrature=self.quadrature,
                             control=self._control(out_group, in_group, cout, cin))


def finish(net, factory):
    """Name parameters by their path (unique names, which graph mode needs),
    and wrap an integral network in an IntegralModel with its named groups."""
    from inn_ms.convert.cells import name_parameters_by_path
    name_parameters_by_path(net)
    if not factory.integral:
        return net
    from inn_ms.model import IntegralModel
    return IntegralModel(net, groups=factory.groups)


def make_factory(integral, quadrature="trapezoid", control_ratio=1.0):
    return IntegralFactory(quadrature, control_ratio) if integral else DiscreteFactory()
