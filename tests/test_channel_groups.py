"""Channel groups found from the graph of real architectures (mindcv's
ResNet-18/50, VGG-11, MobileNetV2, DenseNet-121 and the zoo's networks),
checked against what each architecture implies."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

mindcv = pytest.importorskip("mindcv")

from inn_ms.graph.channels import find_channel_groups  # noqa: E402
from model_zoo import create_model  # noqa: E402


def _groups(name, size=32, **kw):
    net = mindcv.create_model(name, pretrained=False, num_classes=10)
    return find_channel_groups(net, (2, 3, size, size), **kw)


def out_group(cg, path):
    return cg.layers[path].out


def in_groups(cg, path):
    return [g for g, _, _ in cg.layers[path].inputs]


def test_resnet18_stages_share_groups():
    cg = _groups("resnet18")
    # The stem and every block output of stage 1 are one group (identity shortcuts).
    stem = out_group(cg, "conv1")
    assert out_group(cg, "layer1.0.conv2") == out_group(cg, "layer1.1.conv2") == stem
    assert in_groups(cg, "layer1.0.conv1") == in_groups(cg, "layer2.0.conv1") == [stem]
    assert in_groups(cg, "layer2.0.down_sample.0") == [stem]
    for k in (2, 3, 4):
        g = out_group(cg, f"layer{k}.0.conv2")
        assert out_group(cg, f"layer{k}.0.down_sample.0") == g == out_group(cg, f"layer{k}.1.conv2")
        assert in_groups(cg, f"layer{k}.1.conv1") == [g]
        assert g != out_group(cg, f"layer{k}.0.conv1")  # the inner width is its own group
        assert cg.groups[g].continuous and cg.groups[g].size == 64 * 2 ** (k - 1)
    assert in_groups(cg, "classifier") == [out_group(cg, "layer4.1.conv2")]
    # Input channels and class scores stay discrete, everything else is continuous.
    assert not cg.groups[in_groups(cg, "conv1")[0]].continuous
    assert cg.groups[out_group(cg, "classifier")].reasons == ["network output"]
    assert len(cg.continuous) == 1 + 3 + 8  # stem with stage 1, stages 2-4, 8 inner widths
    inner = [out_group(cg, f"layer{k}.{b}.conv1") for k in (1, 2, 3, 4) for b in (0, 1)]
    assert len(set(inner)) == 8 and set(inner) <= set(cg.continuous)
    # Each BatchNorm follows a convolution that only it reads: all fusable.
    assert len(cg.bn_after) == 20 and cg.bn_after["layer2.0.down_sample.1"] == "layer2.0.down_sample.0"


def test_resnet50_bottleneck_groups():
    cg = _groups("resnet50")
    for k, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        g = out_group(cg, f"layer{k}.0.conv3")
        assert out_group(cg, f"layer{k}.0.down_sample.0") == g
        assert all(out_group(cg, f"layer{k}.{b}.conv3") == g for b in range(blocks))
        assert all(in_groups(cg, f"layer{k}.{b}.conv1") == [g] for b in range(1, blocks))
        assert cg.groups[g].size == 256 * 2 ** (k - 1)
        for b in range(blocks):  # conv1 → conv2 → conv3: two inner groups per block
            g1, g2 = out_group(cg, f"layer{k}.{b}.conv1"), out_group(cg, f"layer{k}.{b}.conv2")
            assert in_groups(cg, f"layer{k}.{b}.conv2") == [g1] and in_groups(cg, f"layer{k}.{b}.conv3") == [g2]
            assert len({g, g1, g2}) == 3
    assert len(cg.continuous) == 1 + 4 + 2 * 16


def test_vgg11_flatten_before_dense():
    cg = _groups("vgg11", size=224)  # mindcv's VGG flattens 512×7×7 features
    last = out_group(cg, "features.18")
    assert cg.layers["classifier.0"].inputs == [(last, 512, 49)]
    assert out_group(cg, "classifier.0") in cg.continuous and out_group(cg, "classifier.3") in cg.continuous
    assert len(cg.continuous) == 8 + 2
    assert not cg.bn_after  # no BatchNorm in VGG-11


def test_mobilenet_v2_depthwise_shares_its_input_group():
    cg = _groups("mobilenet_v2_100")
    depthwise = [p for p, u in cg.layers.items() if u.kind == "depthwise"]
    assert len(depthwise) == 17
    for path in depthwise:  # features.N.layers.3 (N>3) reads the expansion conv features.N.layers.0
        block = path.rsplit(".", 1)[0]
        n = int(block.split(".")[1])
        if n > 3:
            expand = out_group(cg, f"{block}.0")
            assert in_groups(cg, path) == [expand]
            assert in_groups(cg, f"{block}.6") == [expand]  # the projection reads the depthwise output
    # Inverted residual: blocks 7 and 8 add into the output group of block 6 (32 channels).
    g = out_group(cg, "features.6.layers.6")
    assert all(out_group(cg, f"features.{n}.layers.6") == g for n in (7, 8))
    # One group per (non-depthwise) convolution, less one for each of the 10
    # residual adds, each of which joins a block's output to its input group.
    assert len(cg.continuous) == len([u for u in cg.layers.values() if u.kind == "conv"]) - 10


def test_densenet121_concat_is_a_parent_of_its_parts():
    cg = _groups("densenet121")
    block = "features.denseblock1.cell_list"
    stem = out_group(cg, "features.conv0")
    for j in range(6):
        parts = cg.layers[f"{block}.{j}.norm1"].inputs
        assert [g for g, _, _ in parts] == [stem] + [out_group(cg, f"{block}.{i}.conv2") for i in range(j)]
        assert [c for _, c, _ in parts] == [64] + [32] * j
        assert cg.layers[f"{block}.{j}.conv1"].inputs == parts
    # The transition reads the whole block: 64 + 6·32 channels in 7 parts.
    assert sum(c for _, c, _ in cg.layers["features.transition1.features.conv"].inputs) == 256
    # Pre-activation BatchNorms read concatenations: not fusable; BN after conv1 is.
    assert f"{block}.0.norm1" not in cg.bn_after and cg.bn_after[f"{block}.0.norm2"] == f"{block}.0.conv1"
    assert all(cg.groups[g].continuous for g, _, _ in parts)


class Mixer(nn.Cell):
    """A conv whose output meets a channel softmax (an op that mixes channels)
    and a per-channel scale outside any layer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1)
        self.b = nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1)
        self.c = nn.Conv2d(8, 8, 1)
        self.scale = ms.Parameter(ms.Tensor(np.ones((1, 8, 1, 1), np.float32)), name="scale")
        self.fc = nn.Dense(8, 4)

    def construct(self, x):
        x = ops.softmax(self.a(x), axis=1)
        y = self.c(self.b(x)) * self.scale
        return self.fc(y.mean((2, 3)))


def test_unknown_ops_and_free_parameters_keep_channels_discrete():
    cg = find_channel_groups(Mixer(), (2, 3, 8, 8))
    assert not cg.groups[out_group(cg, "a")].continuous  # softmax over channels
    assert any("Softmax" in r for r in cg.groups[out_group(cg, "a")].reasons)
    assert cg.groups[out_group(cg, "b")].continuous  # b → c is an ordinary chain
    assert not cg.groups[out_group(cg, "c")].continuous  # multiplied by a free parameter
    assert any("per-channel parameter" in r for r in cg.groups[out_group(cg, "c")].reasons)


def test_user_pinned_and_freed_dims():
    net = mindcv.create_model("resnet18", pretrained=False, num_classes=10)
    cg = find_channel_groups(net, (1, 3, 32, 32), discrete_dims={"layer2.0.conv1.weight": [0]})
    g = out_group(cg, "layer2.0.conv1")
    assert not cg.groups[g].continuous and "discrete_dims" in cg.groups[g].reasons[0]
    cg = find_channel_groups(net, (1, 3, 32, 32), continuous_dims={"classifier.weight": [0]})
    assert cg.groups[out_group(cg, "classifier")].continuous
    with pytest.raises(ValueError, match="no parameter"):
        find_channel_groups(net, (1, 3, 32, 32), discrete_dims={"nope.weight": [0]})
    with pytest.raises(ValueError, match="axis"):
        find_channel_groups(net, (1, 3, 32, 32), discrete_dims={"conv1.weight": [2]})
    with pytest.raises(ValueError, match="cannot be continuous"):
        find_channel_groups(Mixer(), (2, 3, 8, 8), continuous_dims={"a.weight": [0]})


def test_zoo_networks_match_their_declared_groups():
    """The zoo declares its groups by hand when built integral; the graph of
    the discrete build must find the same partition of the layers."""
    for name, shape in (("resnet_small", (2, 3, 32, 32)), ("mnist_cnn", (2, 1, 28, 28))):
        integral = create_model(name, integral=True, control_ratio=1.0)
        declared = {}
        for path, layer in integral.network.cells_and_names():
            for axis, p in getattr(layer, "partitions", {}).items():
                declared[(path, axis)] = p.name
        cg = find_channel_groups(create_model(name, integral=False), shape)
        found = {}
        for path, use in cg.layers.items():
            if use.out is not None and cg.groups[use.out].continuous:
                found[(path, "out")] = use.out
            if use.inputs and cg.groups[use.inputs[0][0]].continuous:
                found[(path, "in")] = use.inputs[0][0]
        assert set(found) == set(declared), name
        # Same partition of axes into groups, whatever the names.
        pairs = {(declared[k], found[k]) for k in declared}
        assert len(pairs) == len(set(declared.values())) == len(set(found.values())), name


def test_untraceable_input_is_a_clear_error():
    net = mindcv.create_model("resnet18", pretrained=False, num_classes=10)
    with pytest.raises(ValueError, match="could not compile"):
        find_channel_groups(net, (2, 5, 32, 32))  # 5 input channels for a 3-channel stem
    with pytest.raises(ValueError, match="example input"):
        find_channel_groups(net)
