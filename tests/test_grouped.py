"""Grouped (non-depthwise) convolutions with continuous channels: the group
count is kept and the channels of every group are resampled (blocked
partitions), checked against numpy per-block references and a real PyTorch
ResNeXt-like network."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from inn_ms.convert import convert
from inn_ms.convert.permute import permute_group
from inn_ms.graph.channels import find_channel_groups
from inn_ms.layers import IntegralConv2d
from inn_ms.partition import BlockedPartition, allowed_size, size_range, size_step
from inn_ms.train import RandomWidthTrainer
from helpers import randomize_torch_bn
from reference import ref_sample, ref_sample_bias, ref_weight, uniform_nodes

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class TorchResNeXtLike(torch.nn.Module):
    """A ResNeXt bottleneck: 1x1 reduce, 3x3 with 4 groups, 1x1 expand, residual add."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stem_bn = torch.nn.BatchNorm2d(16)
        self.reduce = torch.nn.Conv2d(16, 16, 1, bias=False)
        self.reduce_bn = torch.nn.BatchNorm2d(16)
        self.grouped = torch.nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False)
        self.grouped_bn = torch.nn.BatchNorm2d(16)
        self.expand = torch.nn.Conv2d(16, 16, 1, bias=False)
        self.expand_bn = torch.nn.BatchNorm2d(16)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x):
        s = torch.relu(self.stem_bn(self.stem(x)))
        y = torch.relu(self.reduce_bn(self.reduce(s)))
        y = torch.relu(self.grouped_bn(self.grouped(y)))
        y = torch.relu(self.expand_bn(self.expand(y)) + s)
        return self.head(y.mean((2, 3)))


class MsResNeXtLike(nn.Cell):
    def __init__(self):
        super().__init__()
        conv = lambda cin, cout, k, **kw: nn.Conv2d(cin, cout, k, pad_mode="pad", padding=k // 2, **kw)  # noqa: E731
        self.stem, self.stem_bn = conv(3, 16, 3), nn.BatchNorm2d(16)
        self.reduce, self.reduce_bn = conv(16, 16, 1), nn.BatchNorm2d(16)
        self.grouped, self.grouped_bn = conv(16, 16, 3, group=4), nn.BatchNorm2d(16)
        self.expand, self.expand_bn = conv(16, 16, 1), nn.BatchNorm2d(16)
        self.head = nn.Dense(16, 5)

    def construct(self, x):
        s = ops.relu(self.stem_bn(self.stem(x)))
        y = ops.relu(self.reduce_bn(self.reduce(s)))
        y = ops.relu(self.grouped_bn(self.grouped(y)))
        y = ops.relu(self.expand_bn(self.expand(y)) + s)
        return self.head(y.mean((2, 3)))


@pytest.fixture(scope="module")
def resnext_like(tmp_path_factory):
    """(torch net, its MindSpore twin with the same weights, input, torch logits)."""
    from inn_ms.convert import load_torch_weights
    torch.manual_seed(0)
    tnet = TorchResNeXtLike()
    randomize_torch_bn(tnet.stem_bn, tnet.reduce_bn, tnet.grouped_bn, tnet.expand_bn)
    tnet.eval()
    path = tmp_path_factory.mktemp("resnext") / "net.pth"
    torch.save(tnet.state_dict(), path)
    x = np.random.default_rng(0).normal(size=(2, 3, 10, 10)).astype(np.float32)
    with torch.no_grad():
        ref = tnet(torch.from_numpy(x)).numpy()
    net = MsResNeXtLike()
    load_torch_weights(net, str(path))
    net.set_train(False)
    return tnet, net, x, ref


def rel(out, ref):
    return float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))


# -- the rule, the partition and the layer ---------------------------------------

def test_blocked_sizes_are_multiples_of_the_blocks_within_the_one_range():
    p = BlockedPartition(32, 4)
    assert size_step(p) == 4 and size_range(p) == (8, 32)  # at least 2 channels per block
    assert [n for n in range(1, 40) if allowed_size(p, n)] == [8, 12, 16, 20, 24, 28, 32]
    p.resize(12)
    assert (p.size, p.sizes, p.block.size) == (12, (3, 3, 3, 3), 3)
    np.testing.assert_allclose(p.nodes(), np.tile(np.linspace(0, 1, 3), 4))
    with pytest.raises(ValueError, match="not a multiple of its 4 blocks"):
        p.resize(10)
    with pytest.raises(ValueError, match="not a multiple of its 4 blocks"):
        BlockedPartition(10, 4)
    assert size_range(BlockedPartition(4, 4)) == (4, 4)  # one channel per block: nothing to resample


@pytest.mark.parametrize("n_in,n_out", [(16, 12), (8, 16), (12, 8)])
def test_grouped_layer_samples_every_block_like_the_numpy_reference(rng, n_in, n_out):
    """Resized, each group's weight block is the per-block cubic resample of
    the discrete block (numpy reference), the discretized layer is a plain
    grouped convolution with the same output."""
    g = 4
    conv = nn.Conv2d(16, 16, 3, group=g, pad_mode="pad", padding=1, has_bias=True)
    conv.weight.set_data(Tensor(rng.normal(size=(16, 4, 3, 3)).astype(np.float32)))
    conv.bias.set_data(Tensor(rng.normal(size=16).astype(np.float32)))
    layer = IntegralConv2d.from_discrete(conv, BlockedPartition(16, g, name="in"), BlockedPartition(16, g, name="out"))
    x = Tensor(rng.normal(size=(2, 16, 6, 6)).astype(np.float32))
    assert rel(layer(x).asnumpy(), conv(x).asnumpy()) < 1e-6  # exact at full size
    layer.partitions["in"].resize(n_in)
    layer.partitions["out"].resize(n_out)
    w, b = conv.weight.asnumpy(), conv.bias.asnumpy()
    co, ci = 16 // g, n_in // g
    expected = np.concatenate([ref_sample(w[k * 4:(k + 1) * 4], n_out // g, ci) for k in range(g)])
    expected_bias = np.concatenate([ref_sample_bias(b[k * 4:(k + 1) * 4], n_out // g) for k in range(g)])
    np.testing.assert_allclose(layer.numpy_weight(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.sample_weight().asnumpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.numpy_bias(), expected_bias, rtol=1e-6, atol=1e-6)
    plain = layer.discretize()
    assert plain.group == g and tuple(plain.weight.shape) == (n_out, ci, 3, 3) and co == 4
    x = Tensor(rng.normal(size=(2, n_in, 6, 6)).astype(np.float32))
    np.testing.assert_allclose(plain(x).asnumpy(), layer(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_grouped_layer_with_a_coarse_control_grid_per_block(rng):
    """Trained from scratch: every block has its own control grid of the
    same size (here 2 output and 2 input control values per group)."""
    layer = IntegralConv2d(16, 16, 3, padding=1, groups=4, control=(8, 2))
    assert tuple(layer.weight.shape) == (8, 2, 3, 3)
    assert tuple(layer.sample_weight().shape) == (16, 4, 3, 3)
    lam = layer.weight.asnumpy().astype(np.float64)
    layer.partitions["out"].resize(12)
    layer.partitions["in"].resize(8)
    expected = np.concatenate([ref_weight(lam[k * 2:(k + 1) * 2], uniform_nodes(3), uniform_nodes(2))
                               * (4 / 2) for k in range(4)])  # quadrature normalised by the block's 4 channels
    np.testing.assert_allclose(layer.numpy_weight(), expected, rtol=1e-6, atol=1e-7)
    assert layer(Tensor(rng.normal(size=(1, 8, 5, 5)).astype(np.float32))).shape == (1, 12, 5, 5)


# -- the graph analysis -------------------------------------------------------------

class TwoGroupCounts(nn.Cell):
    """Grouped convolutions with 2 and 4 groups read the same channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.a = nn.Conv2d(8, 8, 1, group=2)
        self.b = nn.Conv2d(8, 8, 1, group=4)
        self.head = nn.Conv2d(8, 2, 1)

    def construct(self, x):
        s = self.stem(x)
        return self.head(self.a(s) + self.b(s))


class GroupedAfterConcat(nn.Cell):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.grouped = nn.Conv2d(8, 8, 1, group=2)
        self.head = nn.Conv2d(8, 2, 1)

    def construct(self, x):
        return self.head(self.grouped(ops.concat((self.a(x), self.b(x)), 1)))


class ChannelMultiplier(nn.Cell):
    """8 groups of 1 input and 2 output channels each."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 16, 3, group=8)
        self.head = nn.Conv2d(16, 2, 1)

    def construct(self, x):
        return self.head(self.grouped(self.stem(x)))


def test_blocks_that_cannot_be_kept_pin_their_channels_and_say_why():
    x = Tensor(np.zeros((1, 3, 4, 4), np.float32))
    groups = find_channel_groups(TwoGroupCounts(), x)
    stem = groups.groups["stem"]
    assert not stem.continuous and any("2 and 4 groups" in r for r in stem.reasons)
    added = groups.groups["a"]  # a + b: blocks of 2 and of 4 added
    assert not added.continuous and added.reasons == ["grouped convolutions with 2 and 4 groups share these channels"]
    groups = find_channel_groups(GroupedAfterConcat(), x)
    for name in ("a", "b"):
        assert not groups.groups[name].continuous
        assert any("reads channels of several groups" in r for r in groups.groups[name].reasons)
    assert groups.groups["grouped"].continuous and groups.groups["grouped"].blocks == 2
    groups = find_channel_groups(ChannelMultiplier(), x)
    assert groups.groups["stem"].reasons == ["1 channel per group of grouped convolution grouped (Conv2d, groups=8): "
                                             "nothing to resample"]
    assert groups.groups["grouped"].continuous and groups.groups["grouped"].blocks == 8  # 8 blocks of 2


class GroupedOnInputThenConcat(nn.Cell):
    """A grouped convolution on the (pinned) input, its blocks concatenated
    with a plain group and read by one 1x1 convolution."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, group=2, has_bias=True)
        self.stem = nn.Conv2d(4, 6, 3, has_bias=True)
        self.mix = nn.Conv2d(14, 6, 1, has_bias=True)
        self.head = nn.Dense(6, 3)

    def construct(self, x):
        y = ops.concat((ops.relu(self.grouped(x)), ops.relu(self.stem(x))), 1)
        return self.head(ops.relu(self.mix(y)).mean((2, 3)))


def test_blocks_on_a_pinned_input_and_inside_a_concatenation(rng):
    net = GroupedOnInputThenConcat()
    net.set_train(False)
    x = Tensor(rng.normal(size=(2, 4, 8, 8)).astype(np.float32))
    model = convert(net, x)  # checks exactness, integral and discretized
    groups = model.conversion["groups"]
    assert not groups.groups["input"].continuous
    assert [(n, size_step(p)) for n, p in model.groups.items()] == [("grouped", 2), ("stem", 1), ("mix", 1)]
    assert groups.layers["mix"].inputs == [("grouped", 8, 1), ("stem", 6, 1)]
    model.resize(sizes={"grouped": 4, "stem": 3, "mix": 3})
    plain = model.discretize()
    plain.set_train(False)
    assert plain.grouped.group == 2 and tuple(plain.grouped.weight.shape) == (4, 2, 3, 3)  # input kept
    assert tuple(plain.mix.weight.shape) == (3, 7, 1, 1)
    model.set_train(False)
    out = model(x).asnumpy()
    assert rel(plain(x).asnumpy(), out) < 1e-5


class BlocksThroughDepthwiseAndFlatten(nn.Cell):
    """Blocks through a depthwise convolution and a flatten into a dense layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, has_bias=True)
        self.grouped = nn.Conv2d(8, 8, 3, group=2, has_bias=True)
        self.depthwise = nn.Conv2d(8, 8, 3, group=8, has_bias=True)
        self.head = nn.Dense(8 * 8 * 8, 3)  # "same" padding

    def construct(self, x):
        y = ops.relu(self.depthwise(ops.relu(self.grouped(ops.relu(self.stem(x))))))
        return self.head(y.reshape(y.shape[0], -1))


def test_blocks_through_a_depthwise_convolution_and_a_flatten(rng):
    net = BlocksThroughDepthwiseAndFlatten()
    net.set_train(False)
    x = Tensor(rng.normal(size=(2, 3, 8, 8)).astype(np.float32))
    model = convert(net, x)  # checks exactness, integral and discretized
    assert [(n, size_step(p)) for n, p in model.groups.items()] == [("stem", 2), ("grouped", 2)]
    model.resize(keep=0.5)
    plain = model.discretize()
    plain.set_train(False)
    assert plain.grouped.group == 2 and tuple(plain.grouped.weight.shape) == (4, 2, 3, 3)
    assert plain.depthwise.group == 4 and tuple(plain.head.weight.shape) == (3, 4 * 64)
    model.set_train(False)
    assert rel(plain(x).asnumpy(), model(x).asnumpy()) < 1e-5


# -- conversion of a real PyTorch network -------------------------------------------

def test_resnext_like_torch_network_converts_exactly_and_stays_grouped(resnext_like):
    _, net, x, ref = resnext_like
    assert rel(net(Tensor(x)).asnumpy(), ref) < 1e-5
    model = convert(net, x.shape)
    model.set_train(False)
    assert rel(model(Tensor(x)).asnumpy(), ref) < 1e-5
    groups = model.conversion["groups"]
    assert {n: (g.size, g.blocks) for n, g in groups.groups.items() if g.continuous} == \
        {"stem": (16, 1), "reduce": (16, 4), "grouped": (16, 4)}
    assert model.conversion["plan"]["groups"] == [["stem", 16], ["reduce", 16, 4], ["grouped", 16, 4]]
    # The permutation kept every channel in its block, and changed some of them.
    for name in ("reduce", "grouped"):
        order = model.conversion["permutation"][name]["order"]
        assert all(sorted(order[k * 4:(k + 1) * 4]) == list(range(k * 4, (k + 1) * 4)) for k in range(4))
    assert any(not np.array_equal(model.conversion["permutation"][n]["order"], np.arange(16))
               for n in ("reduce", "grouped"))
    full = model.discretize()
    full.set_train(False)
    assert rel(full(Tensor(x)).asnumpy(), ref) < 1e-5
    with pytest.raises(ValueError, match="'reduce' must be an int in \\[8, 16\\] and a multiple of 4"):
        model.resize(sizes={"reduce": 10})
    model.resize(keep=0.5)
    assert dict(model.sizes) == {"stem": 8, "reduce": 8, "grouped": 8}
    plain = model.discretize()
    plain.set_train(False)
    assert plain.grouped.group == 4 and tuple(plain.grouped.weight.shape) == (8, 2, 3, 3)
    assert tuple(plain.reduce.weight.shape) == (8, 8, 1, 1) and tuple(plain.expand.weight.shape) == (8, 8, 1, 1)
    out = model(Tensor(x)).asnumpy()
    assert rel(plain(Tensor(x)).asnumpy(), out) < 1e-5
    ms.set_context(mode=ms.GRAPH_MODE)  # the compiled graph samples the same blocks
    assert rel(model(Tensor(x)).asnumpy(), out) < 1e-5


def test_permutation_that_leaves_a_block_is_refused(resnext_like):
    _, net, x, _ = resnext_like
    model = convert(net, x.shape, permute=False)
    groups = model.conversion["groups"]
    order = np.arange(16)
    order[[3, 4]] = order[[4, 3]]
    with pytest.raises(ValueError, match="4 blocks of 4 channels .* keep every channel in its block"):
        permute_group(model.discretize(), groups, "reduce", order=order)


def test_a_block_order_permutes_the_grouped_weight_inside_each_group(resnext_like):
    """Permuting one block of the group read by the grouped convolution
    (and written by the 1x1 before it) leaves the network's function as it
    was, and moves the grouped weight's columns in that group's rows only."""
    _, net, x, ref = resnext_like
    model = convert(net, x.shape, permute=False)
    order = np.arange(16)
    order[4:8] = [6, 4, 7, 5]
    groups = model.conversion["groups"]
    plain = model.discretize()  # the converted network's tensors, as conversion permutes them
    plain.set_train(False)
    w = plain.grouped.weight.asnumpy().copy()
    before = plain(Tensor(x)).asnumpy()
    permute_group(plain, groups, "reduce", order=order)
    np.testing.assert_allclose(plain(Tensor(x)).asnumpy(), before, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(plain.grouped.weight.asnumpy()[4:8], w[4:8][:, [2, 0, 3, 1]])
    np.testing.assert_array_equal(plain.grouped.weight.asnumpy()[:4], w[:4])
    assert rel(before, ref) < 1e-5


# -- features that do not support blocks yet refuse ----------------------------------

def test_features_without_block_support_refuse_in_one_line(resnext_like, tmp_path):
    from inn_ms.baselines import l1_indices
    from inn_ms.elastic import make_elastic
    from inn_ms.latency import layer_groups
    from inn_ms.repair import repair
    _, net, x, _ = resnext_like
    model = convert(net, x.shape)
    with pytest.raises(ValueError, match="make_elastic: group\\(s\\) \\['reduce', 'grouped'\\] come in blocks"):
        make_elastic(model)
    with pytest.raises(ValueError, match="elastic networks do not support groups in blocks yet .*'reduce' has 4"):
        RandomWidthTrainer(model, nn.SoftmaxCrossEntropyWithLogits(sparse=True), nn.SGD(model.trainable_params()),
                           elastic=True)
    with pytest.raises(ValueError, match="select_channels: group\\(s\\) \\['reduce'\\] come in blocks"):
        model.select_channels(l1_indices(model, {"stem": 8, "reduce": 8}))
    with pytest.raises(ValueError, match="merge_channels: .* come in blocks"):
        model.merge_channels({"grouped": (np.eye(16)[:8], np.eye(16)[:8])})
    with pytest.raises(ValueError, match="repair: .* come in blocks"):
        repair(model, model.discretize(), x)
    with pytest.raises(ValueError, match="latency table: layer 'reduce' is on channels in blocks"):
        layer_groups(model)


def test_artifact_round_trips_the_blocks(resnext_like, tmp_path):
    from inn_ms.artifact import load_artifact, save_artifact
    from inn_ms.builders import register_builder
    _, net, x, ref = resnext_like
    register_builder("test_grouped_resnext_like", discrete=lambda **kw: MsResNeXtLike())
    model = convert(net, x.shape, builder="test_grouped_resnext_like")
    model.resize(keep=0.5)
    path = str(tmp_path / "grouped.inn")
    save_artifact(model, path)
    back = load_artifact(path)
    assert [(n, p.full_size, size_step(p)) for n, p in back.groups.items()] == \
        [("stem", 16, 1), ("reduce", 16, 4), ("grouped", 16, 4)]
    assert dict(back.sizes) == dict(model.sizes)
    back.set_train(False)
    model.set_train(False)
    np.testing.assert_allclose(back(Tensor(x)).asnumpy(), model(Tensor(x)).asnumpy(), rtol=1e-6, atol=1e-6)
    with back.at_sizes(back.full_sizes):
        assert rel(back(Tensor(x)).asnumpy(), ref) < 1e-5
    with pytest.raises(ValueError, match="'reduce' must be multiples of its 4 blocks .* got \\(10, 16\\)"):
        save_artifact(model, str(tmp_path / "bad.inn"), allowed_sizes={"reduce": (10, 16)})


def test_pipeline_b_resizes_groups_of_blocks_instead_of_training_their_nodes(resnext_like):
    from inn_ms.partition_tuning import make_partitions_trainable
    _, net, x, _ = resnext_like
    model = convert(net, x.shape)
    assert make_partitions_trainable(model, {"stem": 8, "reduce": 8}) == ["stem"]
    assert model.groups["reduce"].size == 8 and not model.groups["reduce"].trainable
    with pytest.raises(ValueError, match="'grouped' must be an int in \\[8, 16\\] and a multiple of 4"):
        make_partitions_trainable(model, {"grouped": 10})


def test_random_widths_per_group_draw_multiples_of_the_blocks(resnext_like):
    from inn_ms.train import WidthSampler
    _, net, x, _ = resnext_like
    model = convert(net, x.shape)
    sampler = WidthSampler(model, low=0.25, per_group=True)
    rng = np.random.default_rng(0)
    drawn = [sampler.sample(rng) for _ in range(40)]
    for name in ("reduce", "grouped"):
        sizes = {d[name] for d in drawn}
        assert sizes <= {8, 12, 16} and len(sizes) > 1  # 4 blocks of at least 2 channels
    assert len({d["stem"] for d in drawn}) > 3
    model.resize(sizes=drawn[0])
    assert model(Tensor(x)).shape == (2, 5)
