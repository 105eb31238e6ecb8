"""Integral layers refuse bad input with a ValueError that names the layer
(or its partition) and the offending value."""
import re

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from inn_ms.layers import IntegralConv2d, IntegralDense, SeparableIntegralConv2d
from inn_ms.partition import BlockedPartition, CompositePartition, TrainablePartition, UniformPartition


def raises(*fragments):
    """pytest.raises(ValueError) whose message contains every fragment, in order."""
    return pytest.raises(ValueError, match=".*".join(re.escape(str(f)) for f in fragments))


def zeros(*shape):
    return Tensor(np.zeros(shape, np.float32))


# --------------------------------------------------------------------------
# Sizes and channel counts
# --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -3])
def test_channel_counts_below_one(bad):
    with raises("IntegralConv2d", "in_channels", bad):
        IntegralConv2d(bad, 4, 3)
    with raises("IntegralConv2d", "out_channels", bad):
        IntegralConv2d(4, bad, 3)
    with raises("IntegralConv2d", "groups", bad):
        IntegralConv2d(4, 4, 3, groups=bad)
    with raises("IntegralDense", "in_channels", bad):
        IntegralDense(bad, 4)
    with raises("IntegralDense", "out_channels", bad):
        IntegralDense(4, bad)
    with raises("SeparableIntegralConv2d", bad):
        SeparableIntegralConv2d(bad, 4, 3)


@pytest.mark.parametrize("bad", [4.0, "4", True, None, np.float32(4)])
def test_channel_counts_must_be_ints(bad):
    with raises("IntegralConv2d", "in_channels", repr(bad)):
        IntegralConv2d(bad, 4, 3)
    with raises("IntegralDense", "out_channels", repr(bad)):
        IntegralDense(4, bad)


def test_numpy_int_channel_counts_are_accepted():
    layer = IntegralConv2d(np.int64(3), np.int32(4), 3)
    assert (layer.in_channels, layer.out_channels) == (3, 4)
    assert type(layer.in_channels) is int


@pytest.mark.parametrize("bad", [0, -1])
def test_resize_below_one(bad):
    layer = IntegralConv2d(5, 4, 3)
    with raises("IntegralConv2d.in", bad):
        layer.partitions["in"].resize(bad)
    with raises("IntegralConv2d.in", "int", "2.0"):
        layer.partitions["in"].resize(2.0)
    assert layer.partitions["in"].size == 5  # a refused resize changes nothing


def test_resize_above_full_size():
    layer = IntegralDense(5, 4)
    with raises("IntegralDense.out", 5, "full size", 4):
        layer.partitions["out"].resize(5)
    with raises("IntegralDense.in", 9, "full size", 5):
        layer.partitions["in"].resize(9)
    assert (layer.current_out_channels, layer.current_in_channels) == (4, 5)


def test_trainable_partition_cannot_be_resized():
    part = TrainablePartition(5, name="tp")
    layer = IntegralConv2d(5, 4, 3, in_partition=part)
    with raises("tp", "fixed size", 3):
        layer.partitions["in"].resize(3)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

def test_conv_input_rank():
    layer = IntegralConv2d(5, 4, 3)
    with raises("IntegralConv2d", "4-D", "(2, 5, 7)"):
        layer(zeros(2, 5, 7))
    with raises("IntegralConv2d", "4-D", "(1, 2, 5, 7, 7)"):
        layer(zeros(1, 2, 5, 7, 7))
    with raises("IntegralConv2d", "4-D", "None"):
        layer(np.zeros((2, 5, 7, 7)).tolist())


def test_dense_input_rank():
    """Features on the last axis, any rank from 2 (as nn.Dense: tokens)."""
    layer = IntegralDense(5, 4)
    with raises("IntegralDense", "rank 2 or more", "(5,)"):
        layer(zeros(5))
    with raises("IntegralDense", "1 features on its last axis", "reads 5"):
        layer(zeros(2, 5, 1, 1))
    assert layer(zeros(2, 3, 5)).shape == (2, 3, 4)


@pytest.mark.parametrize("mode_name", ["pynative", "graph"])
def test_input_channel_count(mode_name):
    ms.set_context(mode=ms.GRAPH_MODE if mode_name == "graph" else ms.PYNATIVE_MODE)
    conv = IntegralConv2d(5, 4, 3)
    with raises("IntegralConv2d", "6 channels", 5):
        conv(zeros(1, 6, 7, 7))
    conv.partitions["in"].resize(3)
    with raises("IntegralConv2d", "5 channels", 3):   # the full count no longer fits
        conv(zeros(1, 5, 7, 7))
    dense = IntegralDense(5, 4)
    with raises("IntegralDense", "4 features", "reads 5"):
        dense(zeros(2, 4))


def test_depthwise_input_channel_count_follows_its_group():
    layer = IntegralConv2d(6, 6, 3, groups=6)
    layer.partitions["out"].resize(4)
    with raises("IntegralConv2d", "6 channels", 4):
        layer(zeros(1, 6, 5, 5))
    assert layer(zeros(1, 4, 5, 5)).shape == (1, 4, 3, 3)


def test_separable_input_channel_count():
    layer = SeparableIntegralConv2d(6, 4, 3)
    with raises("IntegralConv2d", "5 channels", 6):
        layer(zeros(1, 5, 5, 5))


# --------------------------------------------------------------------------
# Partitions
# --------------------------------------------------------------------------

def test_partition_full_size_must_match_channels():
    with raises("IntegralConv2d", "in", 5, "channels", "group", "full size", 6):
        IntegralConv2d(5, 4, 3, in_partition=UniformPartition(6, name="group"))
    with raises("IntegralConv2d", "out", 4, "channels", "group", "full size", 6):
        IntegralConv2d(5, 4, 3, out_partition=UniformPartition(6, name="group"))
    with raises("IntegralDense", "in", 5, "channels", "cat", "full size", 7):
        IntegralDense(5, 4, in_partition=CompositePartition([UniformPartition(3), UniformPartition(4)], name="cat"))
    # Its full size, not its current size, is what must match.
    group = UniformPartition(8, name="group")
    group.resize(5)
    with raises("IntegralDense", "5 channels", "group", "full size", 8):
        IntegralDense(5, 4, in_partition=group)


def test_partition_argument_must_be_partition_none_or_auto():
    with raises("IntegralConv2d", "in_partition", "'uniform'"):
        IntegralConv2d(5, 4, 3, in_partition="uniform")
    with raises("IntegralDense", "out_partition", "'Auto'"):
        IntegralDense(5, 4, out_partition="Auto")


def test_depthwise_needs_one_partition():
    a, b = UniformPartition(6, name="a"), UniformPartition(6, name="b")
    with raises("IntegralConv2d", "depthwise", "same partition"):
        IntegralConv2d(6, 6, 3, groups=6, in_partition=a, out_partition=b)


@pytest.mark.parametrize("given", ["in", "out", "both"])
def test_depthwise_shares_a_given_partition(given):
    """A depthwise conv is one channel group: the partition given for either
    axis is the layer's only partition, whichever argument names it."""
    group = UniformPartition(6, name="group")
    kwargs = {"in": dict(in_partition=group), "out": dict(out_partition=group),
              "both": dict(in_partition=group, out_partition=group)}[given]
    layer = IntegralConv2d(6, 6, 3, groups=6, **kwargs)
    assert layer.partitions == {"out": group}
    group.resize(4)
    assert layer(zeros(1, 4, 5, 5)).shape == (1, 4, 3, 3)


def test_layer_built_on_a_resized_shared_partition():
    """A new layer on a group that is currently smaller: its control values
    describe the full-size weight, and it runs at the group's current size."""
    group = UniformPartition(8, name="group")
    group.resize(4)
    layer = IntegralConv2d(8, 5, 3, in_partition=group)
    assert layer.weight.shape == (5, 8, 3, 3)
    assert layer(zeros(1, 4, 5, 5)).shape == (1, 5, 3, 3)
    group.resize(8)
    # Same seed, same initial full-size weight as a layer built on the group
    # at full size: not one scaled by the quadrature of the smaller size.
    ms.set_seed(7)
    full_group = UniformPartition(8, name="full")
    reference = IntegralConv2d(8, 5, 3, in_partition=full_group)
    ms.set_seed(7)
    group.resize(4)
    layer = IntegralConv2d(8, 5, 3, in_partition=group)
    group.resize(8)
    np.testing.assert_allclose(layer.numpy_weight(), reference.numpy_weight(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.weight.asnumpy(), reference.weight.asnumpy(), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------
# Geometry and control tensors
# --------------------------------------------------------------------------

def test_grouped_conv_with_continuous_channels():
    # A grouped convolution's continuous axes are partitions of one block per group.
    with raises("IntegralConv2d", "2 groups", "BlockedPartition of 2 blocks", "in channels"):
        IntegralConv2d(4, 6, 3, groups=2, in_partition=UniformPartition(4))
    with raises("IntegralConv2d", "2 groups", "BlockedPartition of 2 blocks", "out channels"):
        IntegralConv2d(4, 6, 3, groups=2, out_partition=BlockedPartition(6, 3))
    layer = IntegralConv2d(4, 6, 3, groups=2)  # "auto": blocked partitions
    assert [p.blocks for p in layer.partitions.values()] == [2, 2]
    with raises("size 5", "multiple of its 2 blocks"):
        layer.partitions["out"].resize(5)
    # Discrete channel axes are fine.
    layer = IntegralConv2d(4, 6, 3, groups=2, in_partition=None, out_partition=None)
    assert layer(zeros(1, 4, 5, 5)).shape == (1, 6, 3, 3)


def test_groups_must_divide_channels():
    with raises("IntegralConv2d", 5, 6, "divisible", 4):
        IntegralConv2d(5, 6, 3, groups=4, in_partition=None, out_partition=None)


@pytest.mark.parametrize("kwargs,fragments", [
    (dict(kernel_size=(3, 3, 3)), ("kernel_size", "(3, 3, 3)")),
    (dict(kernel_size=2.5), ("kernel_size", "2.5")),
    (dict(stride=(1,)), ("stride", "(1,)")),
    (dict(dilation="2"), ("dilation", "'2'")),
    (dict(padding=-1), ("padding", "-1")),
    (dict(padding=(1, -2)), ("padding", "(1, -2)")),
    (dict(padding=(0, 1, -1, 0)), ("padding", "(0, 1, -1, 0)")),
    (dict(padding=(0, 1, 1.5, 0)), ("padding", "(0, 1, 1.5, 0)")),
    (dict(padding="full"), ("padding", "'full'")),
])
def test_bad_conv_geometry(kwargs, fragments):
    args = dict(kernel_size=3)
    args.update(kwargs)
    with raises("IntegralConv2d", *fragments):
        IntegralConv2d(4, 5, **args)


def test_control_weight_of_wrong_shape():
    with raises("IntegralConv2d", "(4, 5, 3, 3)", "(4, 5, 3)"):
        IntegralConv2d(5, 4, 3, weight=np.zeros((4, 5, 3), np.float32))
    with raises("IntegralConv2d", "(4, 5, 3, 3)", "(5, 4, 3, 3)"):
        IntegralConv2d(5, 4, 3, weight=np.zeros((5, 4, 3, 3), np.float32))
    with raises("IntegralConv2d", "(6, 1, 3, 3)", "(6, 6, 3, 3)"):
        IntegralConv2d(6, 6, 3, groups=6, weight=np.zeros((6, 6, 3, 3), np.float32))
    with raises("IntegralDense", "(4, 5)", "(5, 4)"):
        IntegralDense(5, 4, weight=np.zeros((5, 4), np.float32))


# --------------------------------------------------------------------------
# Conversion from discrete layers
# --------------------------------------------------------------------------

def test_from_discrete_wrong_layer_type():
    with raises("IntegralConv2d.from_discrete", "nn.Conv2d", "Dense"):
        IntegralConv2d.from_discrete(nn.Dense(4, 3))
    with raises("IntegralDense.from_discrete", "nn.Dense", "Conv2d"):
        IntegralDense.from_discrete(nn.Conv2d(4, 3, 1))
    with raises("SeparableIntegralConv2d.from_discrete", "Dense"):
        SeparableIntegralConv2d.from_discrete(nn.Dense(4, 4), nn.Conv2d(4, 3, 1))
    with raises("SeparableIntegralConv2d.from_discrete", "ReLU"):
        SeparableIntegralConv2d.from_discrete(nn.Conv2d(4, 4, 3, group=4), nn.ReLU())


def test_separable_from_discrete_wrong_structure():
    with raises("SeparableIntegralConv2d.from_discrete", "depthwise", "groups=1"):
        SeparableIntegralConv2d.from_discrete(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 3, 1))
    with raises("SeparableIntegralConv2d.from_discrete", "1x1", 4):
        SeparableIntegralConv2d.from_discrete(nn.Conv2d(4, 4, 3, group=4), nn.Conv2d(4, 3, 3))
    with raises("SeparableIntegralConv2d.from_discrete", "1x1", 4):
        SeparableIntegralConv2d.from_discrete(nn.Conv2d(4, 4, 3, group=4), nn.Conv2d(5, 3, 1))


@pytest.mark.parametrize("rule", ["left", "right"])
def test_from_discrete_with_zero_quadrature_weight(rule):
    """Left/right Riemann sums give one channel weight 0: its discrete weight
    cannot be represented, so conversion must refuse rather than lose it."""
    with raises("IntegralConv2d.in", rule, "weight 0"):
        IntegralConv2d.from_discrete(nn.Conv2d(5, 4, 3), quadrature=rule)
    with raises("IntegralDense.in", rule, "weight 0"):
        IntegralDense.from_discrete(nn.Dense(5, 4), quadrature=rule)
    # Nothing is integrated in a depthwise conv: any rule is exact there.
    IntegralConv2d.from_discrete(nn.Conv2d(4, 4, 3, group=4), quadrature=rule)


@pytest.mark.parametrize("make", [
    lambda: dict(quadrature="gauss-legendre"),
    lambda: dict(in_partition=TrainablePartition(5, name="trained", nodes=[0, 0.1, 0.3, 0.6, 1])),
])
def test_from_discrete_with_non_uniform_full_size_nodes(make):
    """Exactness needs the full-size nodes on the control grid; Gauss-Legendre
    nodes or trained positions are elsewhere: refuse instead of silently
    building a different layer."""
    with raises("IntegralDense", "not uniform", "exactly"):
        IntegralDense.from_discrete(nn.Dense(5, 4), **make())


def test_from_discrete_with_shared_partition_not_at_full_size():
    group = UniformPartition(5, name="group")
    group.resize(3)
    with raises("IntegralConv2d", "group", "full size", 5, "it is 3"):
        IntegralConv2d.from_discrete(nn.Conv2d(5, 4, 3), in_partition=group)
    with raises("IntegralDense", "group", "full size", 5, "it is 3"):
        IntegralDense.from_discrete(nn.Dense(4, 5), out_partition=group)


def test_refused_conversion_leaves_shared_partition_untouched():
    group = UniformPartition(5, name="group")
    with pytest.raises(ValueError):
        IntegralDense.from_discrete(nn.Dense(6, 4), in_partition=group)
    assert (group.size, group.full_size) == (5, 5)
    group.resize(2)   # still usable
