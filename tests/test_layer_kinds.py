"""The layer-kind registry (inn_ms.graph.kinds): the built-in kinds, and a
user's Cell that the tracer does not know, which converts exactly once its
kind is registered and stays discrete without it."""
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn, ops

from inn_ms.convert.convert import convert, rebuild_converted
from inn_ms.graph.channels import ChannelGroups, find_channel_groups
from inn_ms.graph.kinds import (BUILTIN_KINDS, CONV_OPS, LayerKind, layer_kind, layer_kinds, match_layer_kind,
                                register_layer_kind, unregister_layer_kind)
from inn_ms.layers import IntegralBatchNorm2d, IntegralConv2d

SHAPE = (2, 3, 8, 8)


class TapConv(nn.Cell):
    """A 3x3 convolution of the user's own: its weight and bias run through
    the ``Conv2D`` primitive and ``BiasAdd``, not an ``nn.Conv2d``."""

    def __init__(self, cin, cout, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)
        self.weight = Parameter(Tensor(w.astype(np.float32)), name="weight")
        self.bias = Parameter(Tensor((0.1 * rng.standard_normal(cout)).astype(np.float32)), name="bias")
        self.conv = ops.Conv2D(out_channel=cout, kernel_size=3, pad_mode="pad", pad=1)
        self.bias_add = ops.BiasAdd()

    def construct(self, x):
        return self.bias_add(self.conv(x, self.weight), self.bias)

    def as_conv2d(self):
        """The same function as an ``nn.Conv2d``."""
        cout, cin = self.weight.shape[:2]
        conv = nn.Conv2d(cin, cout, 3, pad_mode="pad", padding=1, has_bias=True)
        conv.weight.set_data(self.weight.data.copy())
        conv.bias.set_data(self.bias.data.copy())
        return conv


def tap_integral(cell, use, in_partition, out_partition, quadrature):
    return IntegralConv2d.from_discrete(cell.as_conv2d(), in_partition=in_partition, out_partition=out_partition,
                                        quadrature=quadrature)


class Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1, has_bias=True)
        self.tap = TapConv(8, 12, seed=1)
        self.bn = nn.BatchNorm2d(12)  # after a user layer: not folded, made integral on the user layer's group
        self.conv = nn.Conv2d(12, 16, 3, pad_mode="pad", padding=1, has_bias=True)
        self.relu = nn.ReLU()
        self.fc = nn.Dense(16, 10)

    def construct(self, x):
        x = self.relu(self.conv(self.relu(self.bn(self.tap(self.relu(self.stem(x)))))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def tap_kind():
    kind = register_layer_kind(name="tap_conv", cells=TapConv, ops=CONV_OPS, integral=tap_integral)
    yield kind
    unregister_layer_kind("tap_conv")


def _net():
    net = Net()
    rng = np.random.default_rng(0)
    for _, p in net.parameters_and_names():  # non-trivial biases everywhere
        p.set_data(Tensor((rng.standard_normal(p.shape) * (0.3 if len(p.shape) > 1 else 0.1)).astype(np.float32)))
    net.bn.moving_variance.set_data(Tensor(rng.uniform(0.5, 2.0, 12).astype(np.float32)))
    net.bn.gamma.set_data(Tensor(rng.uniform(0.5, 1.5, 12).astype(np.float32)))
    net.set_train(False)
    return net


def test_builtin_kinds_keep_their_names():
    assert [k.name for k in BUILTIN_KINDS] == ["conv", "depthwise", "grouped", "dense", "bn"]
    assert match_layer_kind(nn.Conv2d(4, 8, 3)).name == "conv"
    assert match_layer_kind(nn.Conv2d(4, 4, 3, group=4)).name == "depthwise"
    assert match_layer_kind(nn.Conv2d(4, 8, 3, group=2)).name == "grouped"
    assert match_layer_kind(nn.Dense(4, 8), "MatMul").name == "dense"
    assert match_layer_kind(nn.Dense(4, 8), "Conv2D") is None  # not through a convolution op
    assert match_layer_kind(nn.BatchNorm2d(4)).name == "bn"
    assert match_layer_kind(nn.ReLU()) is None
    assert layer_kind("depthwise").makes_channels is False and not layer_kind("grouped").discrete
    assert layer_kind("grouped").blocks(nn.Conv2d(4, 8, 3, group=2)) == 2  # channels in blocks, one per group


def test_registration_is_checked():
    with pytest.raises(ValueError, match="built-in kind"):
        register_layer_kind(name="conv", cells=TapConv, ops=CONV_OPS)
    with pytest.raises(ValueError, match="ops must be graph ops"):
        register_layer_kind(name="x", cells=TapConv, ops={"Softmax"})
    with pytest.raises(ValueError, match="cells must be Cell classes"):
        register_layer_kind(name="x", cells=int, ops=CONV_OPS)
    with pytest.raises(ValueError, match="refit must be one of"):
        register_layer_kind(name="x", cells=TapConv, ops=CONV_OPS, refit="lstsq")
    with pytest.raises(ValueError, match="unknown layer kind 'tap_conv'"):
        layer_kind("tap_conv")
    kind = register_layer_kind(LayerKind("x", TapConv, CONV_OPS))
    try:
        assert layer_kinds()[0] is kind and match_layer_kind(TapConv(2, 2, 0), "Conv2D") is kind
        with pytest.raises(ValueError, match="registered already"):
            register_layer_kind(name="x", cells=TapConv, ops=CONV_OPS)
        again = register_layer_kind(name="x", cells=TapConv, ops=CONV_OPS, replace=True)
        assert layer_kind("x") is again
    finally:
        unregister_layer_kind("x")
    assert match_layer_kind(TapConv(2, 2, 0)) is None


def test_unregistered_cell_stays_discrete():
    cg = find_channel_groups(_net(), SHAPE)
    assert "tap" not in cg.layers
    stem = cg.layers["stem"].out
    assert not cg.groups[stem].continuous
    assert any("TapConv" in r or "Conv2D" in r for r in cg.groups[stem].reasons), cg.groups[stem].reasons
    assert cg.continuous == ["conv"]  # only the group the user's cell does not touch


def test_registered_cell_converts_exactly(tap_kind):
    net = _net()
    cg = find_channel_groups(net, SHAPE)
    assert cg.layers["tap"].kind == "tap_conv"
    assert cg.layers["tap"].out == "tap" and [g for g, _, _ in cg.layers["tap"].inputs] == ["stem"]
    assert cg.continuous == ["stem", "tap", "conv"]

    model = convert(net, SHAPE)  # checks the integral and the discretized network on two inputs
    assert list(model.groups) == ["stem", "tap", "conv"]
    assert isinstance(model.network.tap, IntegralConv2d)
    assert isinstance(model.network.bn, IntegralBatchNorm2d) and model.conversion["folded_bn"] == []
    report = model.conversion["permutation"]["tap"]
    assert report["tv_after"] <= report["tv_before"]
    x = Tensor(np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32))
    ref = net(x).asnumpy()
    scale = np.abs(ref).max()
    assert np.abs(model(x).asnumpy() - ref).max() / scale < 1e-5
    plain = model.discretize()
    plain.set_train(False)
    assert np.abs(plain(x).asnumpy() - ref).max() / scale < 1e-5

    model.resize(keep=0.5)  # the user's layer resizes with its groups
    assert model.sizes["tap"] == 6
    small = model.discretize()
    small.set_train(False)
    assert small.tap.weight.shape == (6, 4, 3, 3) and small(x).shape == ref.shape

    plan = model.conversion["plan"]
    assert ["tap", "tap_conv", "tap", [["stem", 8, 1]]] in plan["layers"]
    rebuilt = rebuild_converted(net, plan)  # an artifact's path: the plan's kinds come from the registry
    assert isinstance(rebuilt.network.tap, IntegralConv2d)


def test_plan_with_an_unregistered_kind_is_refused(tap_kind):
    plan = convert(_net(), SHAPE).conversion["plan"]
    unregister_layer_kind("tap_conv")
    try:
        with pytest.raises(ValueError, match="unknown layer kind 'tap_conv'"):
            ChannelGroups.from_plan(plan)
    finally:
        register_layer_kind(tap_kind)


def test_a_kind_can_claim_a_subclass_of_a_builtin_cell():
    class FrozenConv(nn.Conv2d):
        """A convolution the user wants never resized."""

    class Small(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, pad_mode="same")
            self.b = FrozenConv(8, 8, 3, pad_mode="same")
            self.c = nn.Conv2d(8, 4, 3, pad_mode="same")

        def construct(self, x):
            return self.c(self.b(self.a(x)))

    assert find_channel_groups(Small(), SHAPE).continuous == ["a", "b"]
    register_layer_kind(name="frozen_conv", cells=FrozenConv, ops=CONV_OPS, discrete=True)
    try:
        cg = find_channel_groups(Small(), SHAPE)
        assert cg.layers["b"].kind == "frozen_conv" and cg.continuous == []
        assert any("frozen_conv layer b" in r for r in cg.groups["a"].reasons)
    finally:
        unregister_layer_kind("frozen_conv")


def test_artifact_with_a_user_kind_round_trips(tmp_path, tap_kind):
    from inn_ms.artifact import load_artifact, save_artifact
    model = convert(_net(), SHAPE, builder="tap_net")
    path = str(tmp_path / "tap.inn")
    save_artifact(model, path)
    builders = {"tap_net": lambda **kw: _net()}
    loaded = load_artifact(path, builders=builders)  # the plan's kind 'tap_conv' comes from the registry
    x = Tensor(np.random.default_rng(4).standard_normal(SHAPE).astype(np.float32))
    for keep in (1.0, 0.5):
        model.resize(keep=keep)
        loaded.resize(keep=keep)
        np.testing.assert_array_equal(loaded(x).asnumpy(), model(x).asnumpy())
    unregister_layer_kind("tap_conv")
    try:
        with pytest.raises(ValueError, match="unknown layer kind 'tap_conv'"):
            load_artifact(path, builders=builders)
    finally:
        register_layer_kind(tap_kind)
