"""Conversion of discrete networks to integral ones: BatchNorm folding, channel
permutation, exactness at full size on real architectures, resampling and
discretizing the result."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

mindcv = pytest.importorskip("mindcv")

from inn_ms.convert.bn import fold_bn  # noqa: E402
from inn_ms.convert.convert import clone_network, convert  # noqa: E402
from inn_ms.convert.permute import permute_channels  # noqa: E402
from inn_ms.graph.channels import find_channel_groups  # noqa: E402
from inn_ms.layers import IntegralConv2d, IntegralDense  # noqa: E402
from inn_ms.layers.batchnorm import IntegralBatchNorm2d  # noqa: E402
from inn_ms.model import count_parameters  # noqa: E402
from model_zoo import create_model  # noqa: E402

from helpers import randomize_bn, rel_err, run  # noqa: E402


def test_fold_bn_matches_numpy(rng):
    conv = nn.Conv2d(3, 6, 3, pad_mode="pad", padding=1, has_bias=True)
    bn = randomize_bn(nn.BatchNorm2d(6, eps=1e-3), rng)
    bn.set_train(False)
    x = rng.normal(size=(2, 3, 7, 7)).astype(np.float32)
    ref = bn(conv(Tensor(x))).asnumpy()
    folded = fold_bn(conv, bn)
    assert folded.has_bias and rel_err(folded(Tensor(x)).asnumpy(), ref) < 1e-5
    # The formula itself, in numpy: s = γ/√(σ²+ε), W' = s·W, b' = s·(b−μ)+β.
    g, b, m, v = (p.asnumpy().astype(np.float64) for p in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    s = g / np.sqrt(v + 1e-3)
    np.testing.assert_allclose(folded.weight.asnumpy(), conv.weight.asnumpy() * s[:, None, None, None], rtol=1e-5)
    np.testing.assert_allclose(folded.bias.asnumpy(), (conv.bias.asnumpy() - m) * s + b, rtol=1e-5, atol=1e-6)
    dense = nn.Dense(5, 4, has_bias=False)
    bn1 = randomize_bn(nn.BatchNorm1d(4), rng)
    bn1.set_train(False)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    assert rel_err(fold_bn(dense, bn1)(Tensor(x)).asnumpy(), bn1(dense(Tensor(x))).asnumpy()) < 1e-5
    with pytest.raises(ValueError, match="BatchNorm"):
        fold_bn(conv, conv)


def test_permutation_keeps_the_function_and_lowers_total_variation(rng):
    net = randomize_bn(mindcv.create_model("resnet18", pretrained=False, num_classes=10), rng)
    x = rng.normal(size=(1, 3, 32, 32)).astype(np.float32)
    ref = run(net, x)
    perm = clone_network(net)
    groups = find_channel_groups(perm, x.shape)
    report = permute_channels(perm, groups)
    assert set(report) == set(groups.continuous)
    for r in report.values():
        assert not np.array_equal(r["order"], np.arange(len(r["order"])))
        assert r["tv_after"] < r["tv_before"]  # random weights: some order is always shorter
    assert rel_err(run(perm, x), ref) < 1e-5
    # The weights did move: a conv's rows are a permutation of the original's.
    w0, w1 = net.conv1.weight.asnumpy(), perm.conv1.weight.asnumpy()
    order = report["conv1"]["order"]
    np.testing.assert_array_equal(w1, w0[order])
    inner = report["layer1.0.conv1"]["order"]  # layer1.0.conv1: rows of its own group, columns of conv1's
    np.testing.assert_array_equal(perm.layer1[0].conv1.weight.asnumpy(),
                                  net.layer1[0].conv1.weight.asnumpy()[inner][:, order])


def check_converted(net, x, keep=0.5, tol=1e-5, solver=None):
    """Exact at full size, the user's network untouched, and at ``keep`` the
    integral model equals its discretized (thinner, plain) network.
    ``solver``: the channel-order search's settings (convert's)."""
    before = {n: p.asnumpy().copy() for n, p in net.parameters_and_names()}
    ref = run(net, x)
    model = convert(net, x.shape, verify=False, solver=solver)
    assert rel_err(run(model, x), ref) <= tol
    for n, p in net.parameters_and_names():
        np.testing.assert_array_equal(p.asnumpy(), before[n])
    model.resize(keep=keep)
    plain = model.discretize()
    assert not any(isinstance(c, (IntegralConv2d, IntegralDense, IntegralBatchNorm2d))
                   for _, c in plain.cells_and_names())
    assert rel_err(run(plain, x), run(model, x)) < 1e-4
    assert count_parameters(plain) < 0.6 * count_parameters(net)
    model.resize(keep=1.0)
    return model


def test_convert_resnet18_exact_and_prunable(rng):
    net = randomize_bn(mindcv.create_model("resnet18", pretrained=False, num_classes=10), rng)
    x = rng.normal(size=(1, 3, 32, 32)).astype(np.float32)
    model = check_converted(net, x)
    assert len(model.conversion["folded_bn"]) == 20
    assert len(model.groups) == 12
    model.resize(keep=0.5)
    plain = model.discretize()
    assert tuple(plain.layer4[0].conv1.weight.shape) == (256, 128, 3, 3)  # real thinner convolutions


def test_convert_mobilenet_v2_depthwise(rng):
    net = randomize_bn(mindcv.create_model("mobilenet_v2_100", pretrained=False, num_classes=10), rng)
    x = rng.normal(size=(1, 3, 32, 32)).astype(np.float32)
    model = check_converted(net, x)
    dw = model.network.features[5].layers[3]
    assert isinstance(dw, IntegralConv2d) and dw.depthwise


def test_convert_densenet121_concat_and_unfolded_batchnorm(rng):
    net = randomize_bn(mindcv.create_model("densenet121", pretrained=False, num_classes=10), rng)
    x = rng.normal(size=(1, 3, 32, 32)).astype(np.float32)
    # A short order search: any permutation of the concatenated parts must keep the function; how
    # short the order gets is tested on resnet18 and the trained CNN below.
    model = check_converted(net, x, solver={"n_starts": 1, "max_passes": 2})
    assert any(not np.array_equal(r["order"], np.arange(len(r["order"])))
               for r in model.conversion["permutation"].values())
    norm1 = model.network.features.denseblock1.cell_list[3].norm1
    assert isinstance(norm1, IntegralBatchNorm2d)  # reads a concatenation: cannot be folded
    assert len(norm1.out_axis.sizes) == 4  # the stem's group and three layers' outputs


class FlattenNet(nn.Cell):
    """Conv–BN–ReLU, pooling, flatten of C×4×4 features, two dense layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, pad_mode="pad", padding=1, has_bias=True)
        self.bn1 = nn.BatchNorm2d(12)
        self.conv2 = nn.Conv2d(12, 16, 3, stride=2, pad_mode="pad", padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Dense(16 * 4 * 4, 24)
        self.fc2 = nn.Dense(24, 5)
        self.relu = nn.ReLU()

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


def test_convert_flatten_before_dense(rng):
    net = randomize_bn(FlattenNet(), rng)
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    model = check_converted(net, x)
    fc1 = model.network.fc1
    assert isinstance(fc1, IntegralDense) and fc1.in_spatial == 16
    model.resize(sizes={"conv2": 8})
    assert tuple(model.discretize().fc1.weight.shape) == (24, 8 * 16)


def test_convert_zoo_network_in_graph_mode(rng):
    ms.set_context(mode=ms.GRAPH_MODE)
    net = create_model("resnet_small", integral=False)
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    ms.set_context(mode=ms.PYNATIVE_MODE)  # the references in PyNative: the integral model is what compiles
    ref = run(net, x)
    ms.set_context(mode=ms.GRAPH_MODE)
    model = convert(net, x.shape)
    assert rel_err(run(model, x), ref) <= 1e-5
    model.resize(keep=0.75)
    y = run(model, x)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    assert rel_err(run(model.discretize(), x), y) < 1e-4


def test_integral_batchnorm_exact_and_trains_like_batchnorm(rng):
    bn = randomize_bn(nn.BatchNorm2d(6, momentum=0.8), rng)
    ibn = IntegralBatchNorm2d.from_discrete(bn)
    x = rng.normal(size=(4, 6, 5, 5)).astype(np.float32) * 2 + 1
    bn.set_train(False)
    ibn.set_train(False)
    assert rel_err(ibn(Tensor(x)).asnumpy(), bn(Tensor(x)).asnumpy()) < 1e-5
    # Training at full width: batch statistics, moving statistics updated as nn.BatchNorm2d does.
    bn.set_train(True)
    ibn.set_train(True)
    y_ref, y = bn(Tensor(x)).asnumpy(), ibn(Tensor(x)).asnumpy()
    assert rel_err(y, y_ref) < 1e-4
    np.testing.assert_allclose(ibn.moving_mean.asnumpy(), bn.moving_mean.asnumpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ibn.moving_variance.asnumpy(), bn.moving_variance.asnumpy(), rtol=1e-4)
    # At a smaller width: batch statistics of that width, moving statistics untouched.
    ibn.out_axis.get_partition().resize(4)
    mean_before = ibn.moving_mean.asnumpy().copy()
    xs = x[:, :4]
    y = ibn(Tensor(xs)).asnumpy()
    g, b = ibn.sampled()[:2]
    mu, var = xs.mean((0, 2, 3)), xs.var((0, 2, 3))
    ref = (xs - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) * g[None, :, None, None] \
        + b[None, :, None, None]
    assert rel_err(y, ref) < 1e-4
    np.testing.assert_array_equal(ibn.moving_mean.asnumpy(), mean_before)
    assert isinstance(ibn.discretize(), nn.BatchNorm2d) and ibn.discretize().moving_mean.shape == (4,)


def test_convert_errors():
    with pytest.raises(ValueError, match="Cell"):
        convert(lambda x: x, (1, 3, 8, 8))
    single = nn.Conv2d(3, 4, 3)  # input and output both discrete: nothing to resample
    with pytest.raises(ValueError, match="no channel group"):
        convert(single, (1, 3, 8, 8))


def test_permutation_on_trained_weights(rng):
    """The PyTorch CNN shipped in the zoo (trained): permuting every group
    leaves its outputs unchanged and lowers each group's total variation by
    at least 20 % (measured 30-48 %)."""
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    ref = run(net, x)
    perm = clone_network(net)
    groups = find_channel_groups(perm, x.shape)
    report = permute_channels(perm, groups)
    assert len(report) == 6
    for name, r in report.items():
        assert r["tv_after"] <= 0.8 * r["tv_before"], name
    assert rel_err(run(perm, x), ref) < 1e-5


def test_with_fast_convolutions_is_the_same_function(rng):
    from inn_ms.layers.plain import Conv2d, with_fast_convolutions
    net = randomize_bn(FlattenNet(), rng)
    fast = with_fast_convolutions(net)
    assert type(fast.conv1) is Conv2d and type(net.conv1) is nn.Conv2d  # the original is untouched
    assert fast.conv1.weight is not net.conv1.weight
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    assert rel_err(run(fast, x), run(net, x)) < 1e-5
    assert len({p.name for p in fast.get_parameters()}) == len(list(fast.get_parameters()))


def test_integral_dense_after_flatten_checks_its_input():
    dense = nn.Dense(10, 3)
    with pytest.raises(ValueError, match="do not split"):
        IntegralDense.from_discrete(dense, in_spatial=4)
    layer = IntegralDense.from_discrete(nn.Dense(12, 3), in_spatial=4)
    assert layer.in_channels == 3 and tuple(layer.weight.shape) == (3, 3, 4)
    with pytest.raises(ValueError, match="12"):
        layer(Tensor(np.zeros((2, 10), np.float32)))


class _Aliased(nn.Cell):
    """One convolution held under two names (as mindcv's SqueezeNet holds
    ``final_conv`` in ``classifier``); only the container calls it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, has_bias=True)
        self.final = nn.Conv2d(8, 4, 1, has_bias=True)
        self.head = nn.SequentialCell([nn.ReLU(), self.final])

    def construct(self, x):
        return self.head(self.conv1(x)).mean(axis=(2, 3))


def test_a_layer_held_under_two_names_is_replaced_under_both(rng):
    net = _Aliased()
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    model = convert(net, (2, 3, 8, 8))
    assert rel_err(run(model, x), run(net, x)) < 1e-5
    assert model.network.head[1] is model.network.final
    model.resize(keep=0.5)  # the conv1 group halves: the head's convolution must follow (it failed here)
    assert run(model, x).shape == (2, 4)
    assert model.discretize().head[1].in_channels == 4
