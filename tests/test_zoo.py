"""The classification model zoo: every entry builds integral and discrete
from one architecture code, the integral network equals its discretized
plain network at full width and shrinks when resampled, channel groups are
the documented ones (and the ones the graph-based finder sees in the
discrete twin), published parameter counts, and the mindcv bridge."""
import numpy as np
import pytest
import mindspore as ms

from inn_ms.artifact import load_artifact, save_artifact
from inn_ms.graph.channels import find_channel_groups
from inn_ms.layers.base import IntegralLayer
from inn_ms.model import IntegralModel, count_parameters
from model_zoo import create_model, list_models

from helpers import randomize_bn, rel_err, run

ZOO = ["nin", "nin_separable", "vgg11", "vgg19", "vgg11_separable", "resnet18", "resnet18_separable", "resnet50",
       "resnet50_separable", "mobilenet_v2"]
# Small and fast: a quarter of the published widths (an eighth for the
# ResNet-50s; sampling a weight costs ~C³) and, where the entry has one, the
# ImageNet stem (a 32×32 input shrinks to 1×1); NIN and the CIFAR VGG head
# work at 32×32 as they are.
SMALL = {name: {"width": 0.125 if name.startswith("resnet50") else 0.25} for name in ZOO}
for _name in ("resnet18", "resnet18_separable", "resnet50", "resnet50_separable", "mobilenet_v2"):
    SMALL[_name]["stem"] = "imagenet"
CLASSES = 7
# Every entry, plus VGG's options: BatchNorm on the conv groups, and the
# ImageNet head (a dense layer on flattened 7×7 maps, continuous channels).
CASES = [(name, SMALL[name]) for name in ZOO] + [("vgg11", {"width": 0.25, "batch_norm": True}),
                                                 ("vgg11", {"width": 0.0625, "stem": "imagenet"})]


def shapes(net):
    return {name: tuple(p.shape) for name, p in net.parameters_and_names()}


def test_all_entries_registered():
    assert set(ZOO) <= set(list_models())


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CASES])
def test_entry_integral_and_discrete(name, options, rng):
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    model = randomize_bn(create_model(name, num_classes=CLASSES, integral=True, **options), rng)
    assert isinstance(model, IntegralModel)
    y = run(model, x)
    assert y.shape == (2, CLASSES)

    plain = model.discretize()
    assert not any(isinstance(c, IntegralLayer) for _, c in plain.cells_and_names())
    assert rel_err(y, run(plain, x)) <= 1e-5

    # The discrete variant is the same architecture: same parameters, same shapes.
    discrete = create_model(name, num_classes=CLASSES, integral=False, **options)
    assert not isinstance(discrete, IntegralModel)
    assert shapes(discrete) == shapes(plain)
    assert run(discrete, x).shape == (2, CLASSES)

    full = count_parameters(plain)
    sizes = model.resize(keep=0.5)
    for group, n in sizes.items():
        assert n == max(round(0.5 * model.full_sizes[group]), model.groups[group].quadrature.min_points), group
    half = model.discretize()
    y_half = run(half, x)
    assert y_half.shape == (2, CLASSES) and np.all(np.isfinite(y_half))
    # Every hidden width halves: weights between two groups shrink ~4x.
    assert count_parameters(half) < 0.45 * full


RESNET18_GROUPS = {f"layer{k}" for k in range(1, 5)} | {f"layer{k}.{j}.a" for k in range(1, 5) for j in range(2)}


def test_resnet18_groups_join_residual_adds():
    model = create_model("resnet18", num_classes=CLASSES, width=0.25)
    assert set(model.groups) == RESNET18_GROUPS and len(model.groups) == 12
    net, g = model.network, model.groups
    # The stem, every block's last conv and the projection shortcuts write into the stage groups.
    assert net.stem.partitions["out"] is g["layer1"]
    assert net.blocks[1].conv2.partitions["out"] is g["layer1"]
    assert net.blocks[2].shortcut.conv.partitions["out"] is g["layer2"]
    assert net.blocks[2].shortcut.bn.partitions["out"] is g["layer2"]
    assert net.blocks[3].conv2.partitions["out"] is g["layer2"]
    assert net.blocks[2].conv1.partitions["in"] is g["layer1"]
    assert net.fc.partitions == {"in": g["layer4"]}  # class scores stay discrete
    assert "in" not in net.stem.partitions  # input pixels stay discrete


def test_separable_depthwise_on_input_group():
    model = create_model("resnet18_separable", num_classes=CLASSES, width=0.25)
    assert set(model.groups) == RESNET18_GROUPS
    conv1 = model.network.blocks[2].conv1  # layer2.0: stride 2 from layer1
    assert conv1.depthwise.depthwise and conv1.depthwise.stride == (2, 2)
    assert conv1.depthwise.partitions["out"] is model.groups["layer1"]
    assert conv1.pointwise.kernel_size == (1, 1)
    assert conv1.pointwise.partitions["in"] is model.groups["layer1"]
    assert conv1.pointwise.partitions["out"] is model.groups["layer2.0.a"]


def test_zoo_artifact_round_trip(rng, tmp_path):
    """Entry options (stem, width) are recorded, so an artifact rebuilds the same network."""
    model = randomize_bn(create_model("resnet18_separable", num_classes=CLASSES, **SMALL["resnet18_separable"]),
                         rng)
    save_artifact(model, str(tmp_path / "net.inn"))
    reloaded = load_artifact(str(tmp_path / "net.inn"))
    assert reloaded.architecture["kwargs"]["stem"] == "imagenet"
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(run(reloaded.discretize(), x), run(model.discretize(), x))


@pytest.mark.parametrize("name, kwargs, groups", [
    ("resnet50", {}, 1 + 4 + 2 * 16),
    ("mobilenet_v2", {}, 1 + 7 + 16 + 1),
    ("nin", {}, 8),
    ("vgg19", {}, 16),
    ("vgg11", {"stem": "imagenet"}, 8 + 2),
])
def test_group_counts(name, kwargs, groups):
    model = create_model(name, num_classes=CLASSES, width=0.125, **kwargs)
    assert len(model.groups) == groups
    expected = {"resnet50": "stem", "mobilenet_v2": "stage2.1.expand", "nin": "b3c2", "vgg19": "conv16",
                "vgg11": "fc2"}[name]
    assert expected in model.groups


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "nin"])
def test_groups_agree_with_graph_finder(name, rng):
    """The converter's graph-based group finder, run on the discrete twin,
    sees as many continuous groups of the same sizes as the entry names."""
    kwargs = dict(SMALL[name])
    model = create_model(name, num_classes=CLASSES, **kwargs)
    discrete = create_model(name, num_classes=CLASSES, integral=False, **kwargs)
    found = find_channel_groups(discrete, rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    assert sorted(found.groups[n].size for n in found.continuous) == sorted(model.full_sizes.values())


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("vgg11", 132_863_336), ("mobilenet_v2", 3_504_872)])
def test_published_parameter_counts(name, expected):
    """Trainable parameters of the published ImageNet networks (torchvision's figures)."""
    net = create_model(name, num_classes=1000, integral=False, stem="imagenet")
    assert sum(int(np.prod(p.shape)) for p in net.trainable_params()) == expected


def test_mindcv_bridge_equals_mindcv(rng, tmp_path):
    mindcv = pytest.importorskip("mindcv")
    reference = randomize_bn(mindcv.create_model("resnet18", pretrained=False, num_classes=10), rng)
    ckpt = str(tmp_path / "resnet18.ckpt")
    ms.save_checkpoint(reference, ckpt)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = run(reference, x)

    plain = create_model("mindcv:resnet18", num_classes=10, integral=False, checkpoint=ckpt)
    assert type(plain) is type(reference)
    np.testing.assert_array_equal(run(plain, x), y)

    # verify=False, permute=False: the check below is this test's own; permuting is tested in test_convert.
    model = create_model("mindcv:resnet18", num_classes=10, integral=True, checkpoint=ckpt,
                         input_shape=(1, 3, 32, 32), verify=False, permute=False)
    assert isinstance(model, IntegralModel) and len(model.groups) == 12
    assert rel_err(run(model, x), y) <= 1e-5
    # The converted model records how to rebuild it: an integral artifact round trip.
    save_artifact(model, str(tmp_path / "resnet18.inn"))
    reloaded = load_artifact(str(tmp_path / "resnet18.inn"))
    np.testing.assert_allclose(run(reloaded.discretize(), x), run(model.discretize(), x), rtol=0, atol=1e-6)
    model.resize(keep=0.5)
    assert run(model.discretize(), x).shape == (2, 10)

    with pytest.raises(ValueError, match="does not fit"):
        create_model("mindcv:resnet18", num_classes=5, integral=False, checkpoint=ckpt)


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*mindcv:<name>"):
        create_model("resnet19")
    with pytest.raises(ValueError, match="mindcv has no model 'resnet19'.*resnet18"):
        create_model("mindcv:resnet19", integral=False)
    with pytest.raises(ValueError, match="need integral=True"):
        create_model("mindcv:resnet18", integral=False, permute=False)
    with pytest.raises(ValueError, match="unexpected arguments"):
        create_model("mindcv:resnet18", integral=True, depth=3)
    with pytest.raises(ValueError, match="input_shape must be"):
        create_model("mindcv:resnet18", integral=True, input_shape=(1, 1, 32, 32))
    with pytest.raises(ValueError, match="stem must be one of"):
        create_model("resnet18", stem="mnist")
    with pytest.raises(ValueError, match="width must be"):
        create_model("vgg11", width=0)


# Every registered model that the detailed cases above do not cover gets
# this test, so a new entry is tested the day it is registered.
OTHERS = [name for name in list_models() if name not in ZOO]


@pytest.mark.parametrize("name", OTHERS)
def test_every_other_registered_model_builds_runs_and_resizes(name, rng):
    """Built from its registration alone (task, input kind, a sample's
    shape): integral, or plain and converted; exact against its discretized
    network at full width; finite at half width."""
    from inn_ms.builders import TASKS, find_builder
    from inn_ms.convert import convert
    b = find_builder(name)
    assert b.task in TASKS and b.input is not None and b.input_shape is not None, name
    x = rng.standard_normal((2,) + b.input_shape).astype(np.float32)
    if b.integral is not None:
        model = randomize_bn(b.integral(), rng)
    else:
        model = convert(randomize_bn(b.discrete(), rng), x)
    y = run(model, x)
    scale = b.upscaling() or 1
    if b.task == "classification":
        assert y.shape == (2, 10)
    else:
        assert y.shape == (2, b.input_shape[0], b.input_shape[1] * scale, b.input_shape[2] * scale)
    assert rel_err(y, run(model.discretize(), x)) <= 1e-5
    model.resize(keep=0.5)
    y_half = run(model.discretize(), x)
    assert y_half.shape == y.shape and np.all(np.isfinite(y_half))
