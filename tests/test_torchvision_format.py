"""torchvision-format checkpoints: ResNet-18 and MobileNetV2 state_dicts
load into the zoo's networks (and mindcv's) by names and rename tables, the
same from ``.pth`` (module order), ``.safetensors`` (sorted keys, as on
model hubs) and ``.npz``; the zoo's ImageNet networks compute what
torchvision's do. torchvision does not install beside torch 2.13, so the
two architectures are written here with torchvision's module names and
padding, and run by real torch."""
import logging

import numpy as np
import pytest
from mindspore import Tensor

torch = pytest.importorskip("torch")
tnn = torch.nn

from inn_ms.convert import load_torch_weights  # noqa: E402
from model_zoo import create_model  # noqa: E402
from helpers import save_torch_state_dict  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")
CLASSES = 10


class TvBasicBlock(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class TvResNet18(tnn.Module):
    """torchvision's resnet18: module names, registration order, max-pool padding 1."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        cin = 64
        for k, cout in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if k == 1 else 2
            setattr(self, f"layer{k}", tnn.Sequential(TvBasicBlock(cin, cout, stride), TvBasicBlock(cout, cout, 1)))
            cin = cout
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _conv_bn_relu6(cin, cout, k, stride=1, groups=1):
    return tnn.Sequential(tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                          tnn.BatchNorm2d(cout), tnn.ReLU6())


class TvInvertedResidual(tnn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.use_res_connect = stride == 1 and cin == cout
        layers = [_conv_bn_relu6(cin, hidden, 1)] if t != 1 else []
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   tnn.Conv2d(hidden, cout, 1, 1, 0, bias=False), tnn.BatchNorm2d(cout)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TvMobileNetV2(tnn.Module):
    """torchvision's mobilenet_v2 at width 1.0."""

    def __init__(self, num_classes):
        super().__init__()
        features, cin = [_conv_bn_relu6(3, 32, 3, 2)], 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                features.append(TvInvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(_conv_bn_relu6(cin, 1280, 1))
        self.features = tnn.Sequential(*features)
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

    def forward(self, x):
        x = tnn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def _randomized(net):
    """Random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def tv_resnet18():
    torch.manual_seed(0)
    return _randomized(TvResNet18(CLASSES))


@pytest.fixture(scope="module")
def tv_mobilenet_v2():
    torch.manual_seed(0)
    return _randomized(TvMobileNetV2(CLASSES))


def _compare(torch_net, ms_net, size=64):
    x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref = torch_net(torch.from_numpy(x)).numpy()
    ms_net.set_train(False)
    got = ms_net(Tensor(x)).asnumpy()
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def _weights(net):
    return {n: p.asnumpy() for n, p in net.parameters_and_names()}


def test_zoo_resnet18_is_torchvision_resnet18_from_every_format(tmp_path, tv_resnet18):
    """The sorted .safetensors loads (it was refused), all three formats give
    the same parameters, and the logits are torchvision's (the max-pool
    padding made them 2.8 % off)."""
    loaded = []
    for ext in (".pth", ".safetensors", ".npz"):
        net = create_model("resnet18", num_classes=CLASSES, integral=False, stem="imagenet")
        load_torch_weights(net, save_torch_state_dict(tv_resnet18, tmp_path / f"resnet18{ext}"))
        assert _compare(tv_resnet18, net) <= 1e-5, ext
        loaded.append(_weights(net))
    for other in loaded[1:]:
        assert all(np.array_equal(loaded[0][n], other[n]) for n in loaded[0])


def test_zoo_mobilenet_v2_is_torchvision_mobilenet_v2(tmp_path, tv_mobilenet_v2):
    net = create_model("mobilenet_v2", num_classes=CLASSES, integral=False, stem="imagenet")
    load_torch_weights(net, save_torch_state_dict(tv_mobilenet_v2, tmp_path / "mobilenet_v2.safetensors"))
    assert _compare(tv_mobilenet_v2, net) <= 1e-5


def test_mindcv_mobilenet_v2_loads_torchvision_weights(tmp_path, tv_mobilenet_v2, caplog):
    """mindcv's MobileNetV2 computes torchvision's function: its weights
    load by the rename table, and silently (nothing to warn about)."""
    mindcv = pytest.importorskip("mindcv")
    net = mindcv.create_model("mobilenet_v2_100", pretrained=False, num_classes=CLASSES)
    with caplog.at_level(logging.WARNING, logger="inn_ms"):
        load_torch_weights(net, save_torch_state_dict(tv_mobilenet_v2, tmp_path / "mobilenet_v2.safetensors"))
    assert not caplog.records
    assert _compare(tv_mobilenet_v2, net) <= 1e-5


def test_mindcv_resnet18_loads_torchvision_weights_and_says_its_pooling_differs(tmp_path, tv_resnet18, caplog):
    """mindcv's ResNet-18 takes the weights (downsample/fc are its
    down_sample/classifier) but pools with pad_mode='same': the load warns,
    naming the cell, and the logits indeed differ from torchvision's."""
    mindcv = pytest.importorskip("mindcv")
    net = mindcv.create_model("resnet18", pretrained=False, num_classes=CLASSES)
    with caplog.at_level(logging.WARNING, logger="inn_ms"):
        load_torch_weights(net, save_torch_state_dict(tv_resnet18, tmp_path / "resnet18.safetensors"))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "max_pool" in warned[0] and "pad_mode='same'" in warned[0], warned
    np.testing.assert_array_equal(net.classifier.weight.asnumpy(), tv_resnet18.fc.weight.detach().numpy())
    np.testing.assert_array_equal(net.layer2[0].down_sample[0].weight.asnumpy(),
                                  tv_resnet18.layer2[0].downsample[0].weight.detach().numpy())
    assert _compare(tv_resnet18, net) > 1e-3  # what the warning is about
