"""MindSpore twins of the conversion zoo: five small PyTorch CNNs of different shapes.

``scripts/make_torch_zoo.py`` defines each network in PyTorch, trains it on
the offline MNIST subset (``mnist_subset(4000, 1000, seed=0)``) and ships its
``state_dict`` as ``model_zoo/checkpoints/mnist_<name>.safetensors``. The
classes here are the same networks as plain MindSpore Cells with the same
attribute names, so ``inn_ms.convert.load_torch_weights`` loads the
state_dicts by name and the logits agree to float32 rounding
(``tests/test_torch_zoo.py``). They are what pipeline A's recipe is checked
on (``scripts/evidence_pipeline_a.py``):

=================  ==========================================================
``mnist_plain``     conv-BN-ReLU stack, no skip (5 convs, 2 linear layers)
``mnist_resnet_bn`` residual blocks with BatchNorm: identity and projection
                    shortcuts, two residual groups of three layers each
``mnist_resnet_nobn`` the same residual network without BatchNorm (biases)
``mnist_densenet``  two dense blocks (channel concatenations) with
                    pre-activation BN-ReLU-conv: BatchNorms on
                    concatenations, which conversion cannot fold
``mnist_mobilenet`` depthwise-separable blocks and an inverted residual
=================  ==========================================================

Each builder: ``create_model("mnist_<name>", integral=False,
checkpoint_torch="bundled")`` (or a path; ``None``: untrained). Only
standard cells and ops, residual adds as ``+`` and concatenations as
``ops.concat``, so the graph-based channel-group finder sees them.
"""
import os

from mindspore import nn, ops

from model_zoo.registry import register_model

_INTEGRAL_ONLY = ("quadrature", "control_ratio")
CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")


def bundled_checkpoint(name):
    """Path of the shipped PyTorch checkpoint of ``mnist_<name>``."""
    path = os.path.join(CHECKPOINT_DIR, f"mnist_{name}.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the bundled checkpoint is missing: {path} (make it with scripts/make_torch_zoo.py)")
    return path


def _conv(cin, cout, k=3, stride=1, group=1, bias=True):
    return nn.Conv2d(cin, cout, k, stride=stride, pad_mode="pad", padding=k // 2, group=group, has_bias=bias)


def _bn(c):
    # MindSpore momentum 0.9 == PyTorch momentum 0.1; eps as PyTorch's default.
    return nn.BatchNorm2d(c, momentum=0.9, eps=1e-5)


class PlainNet(nn.Cell):
    """conv(1→16)-BN-ReLU, maxpool, conv(16→32)-BN-ReLU, conv(32→32)-BN-ReLU,
    maxpool, conv(32→64)-BN-ReLU, conv(64→64)-BN-ReLU, global average pool,
    Dense(64→64)-ReLU, Dense(64→classes)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1, self.bn1 = _conv(in_channels, 16), _bn(16)
        self.conv2, self.bn2 = _conv(16, 32), _bn(32)
        self.conv3, self.bn3 = _conv(32, 32), _bn(32)
        self.conv4, self.bn4 = _conv(32, 64), _bn(64)
        self.conv5, self.bn5 = _conv(64, 64), _bn(64)
        self.fc1 = nn.Dense(64, 64)
        self.fc2 = nn.Dense(64, num_classes)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def construct(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.pool(self.relu(self.bn3(self.conv3(x))))
        x = self.relu(self.bn4(self.conv4(x)))
        x = self.relu(self.bn5(self.conv5(x)))
        return self.fc2(self.relu(self.fc1(ops.mean(x, (2, 3)))))


class Block(nn.Cell):
    """conv3x3-(BN)-ReLU-conv3x3-(BN) + shortcut (identity, or conv1x1-(BN)), ReLU."""

    def __init__(self, cin, cout, stride=1, bn=True):
        super().__init__()
        self.bn = bn
        self.conv1 = _conv(cin, cout, stride=stride, bias=not bn)
        self.conv2 = _conv(cout, cout, bias=not bn)
        if bn:
            self.bn1, self.bn2 = _bn(cout), _bn(cout)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.short = _conv(cin, cout, 1, stride=stride, bias=not bn)
            if bn:
                self.short_bn = _bn(cout)
        self.relu = nn.ReLU()

    def construct(self, x):
        y = self.conv1(x)
        if self.bn:
            y = self.bn1(y)
        y = self.conv2(self.relu(y))
        if self.bn:
            y = self.bn2(y)
        s = x
        if self.project:
            s = self.short(x)
            if self.bn:
                s = self.short_bn(s)
        return self.relu(y + s)


class ResNet(nn.Cell):
    """conv(1→24)-(BN)-ReLU, maxpool, blocks 24, 24 (14²), 24→48 stride 2
    with a projection shortcut, 48 (7²), global average pool, Dense(48→classes)."""

    def __init__(self, num_classes=10, in_channels=1, bn=True):
        super().__init__()
        self.use_bn = bn
        self.stem = _conv(in_channels, 24, bias=not bn)
        if bn:
            self.stem_bn = _bn(24)
        self.block1 = Block(24, 24, bn=bn)
        self.block2 = Block(24, 24, bn=bn)
        self.block3 = Block(24, 48, stride=2, bn=bn)
        self.block4 = Block(48, 48, bn=bn)
        self.fc = nn.Dense(48, num_classes)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def construct(self, x):
        x = self.stem(x)
        if self.use_bn:
            x = self.stem_bn(x)
        x = self.pool(self.relu(x))
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(ops.mean(x, (2, 3)))


class DenseLayer(nn.Cell):
    """BN-ReLU-conv3x3 on the concatenation so far (``growth`` new channels)."""

    def __init__(self, cin, growth):
        super().__init__()
        self.bn = _bn(cin)
        self.conv = _conv(cin, growth, bias=False)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.conv(self.relu(self.bn(x)))


class DenseNet(nn.Cell):
    """conv(1→24)-BN-ReLU, maxpool; dense block 24→48→72 (growth 24);
    transition BN-ReLU-conv1x1(72→48), avgpool; dense block 48→72→96;
    BN-ReLU, global average pool, Dense(96→classes)."""

    def __init__(self, num_classes=10, in_channels=1, growth=24):
        super().__init__()
        self.stem, self.stem_bn = _conv(in_channels, 24), _bn(24)
        self.dense1a, self.dense1b = DenseLayer(24, growth), DenseLayer(24 + growth, growth)
        c = 24 + 2 * growth
        self.trans_bn, self.trans = _bn(c), _conv(c, 48, 1, bias=False)
        self.dense2a, self.dense2b = DenseLayer(48, growth), DenseLayer(48 + growth, growth)
        c = 48 + 2 * growth
        self.final_bn = _bn(c)
        self.fc = nn.Dense(c, num_classes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2)

    def construct(self, x):
        x = self.maxpool(self.relu(self.stem_bn(self.stem(x))))
        x = ops.concat((x, self.dense1a(x)), 1)
        x = ops.concat((x, self.dense1b(x)), 1)
        x = self.avgpool(self.trans(self.relu(self.trans_bn(x))))
        x = ops.concat((x, self.dense2a(x)), 1)
        x = ops.concat((x, self.dense2b(x)), 1)
        x = self.relu(self.final_bn(x))
        return self.fc(ops.mean(x, (2, 3)))


class MobileNet(nn.Cell):
    """conv(1→16)-BN-ReLU (28²); dw3x3/2(16)-BN-ReLU pw(16→32)-BN-ReLU,
    dw3x3(32)-BN-ReLU pw(32→64)-BN-ReLU, dw3x3/2(64)-BN-ReLU pw(64→96)-BN-ReLU
    (7²); inverted residual [pw(96→192)-BN-ReLU6, dw3x3(192)-BN-ReLU6,
    pw(192→96)-BN] + x; global average pool, Dense(96→classes)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.stem, self.stem_bn = _conv(in_channels, 16, bias=False), _bn(16)
        self.dw1, self.dw1_bn = _conv(16, 16, stride=2, group=16, bias=False), _bn(16)
        self.pw1, self.pw1_bn = _conv(16, 32, 1, bias=False), _bn(32)
        self.dw2, self.dw2_bn = _conv(32, 32, group=32, bias=False), _bn(32)
        self.pw2, self.pw2_bn = _conv(32, 64, 1, bias=False), _bn(64)
        self.dw3, self.dw3_bn = _conv(64, 64, stride=2, group=64, bias=False), _bn(64)
        self.pw3, self.pw3_bn = _conv(64, 96, 1, bias=False), _bn(96)
        self.expand, self.expand_bn = _conv(96, 192, 1, bias=False), _bn(192)
        self.dw4, self.dw4_bn = _conv(192, 192, group=192, bias=False), _bn(192)
        self.project, self.project_bn = _conv(192, 96, 1, bias=False), _bn(96)
        self.fc = nn.Dense(96, num_classes)
        self.relu = nn.ReLU()
        self.relu6 = nn.ReLU6()

    def construct(self, x):
        x = self.relu(self.stem_bn(self.stem(x)))
        x = self.relu(self.pw1_bn(self.pw1(self.relu(self.dw1_bn(self.dw1(x))))))
        x = self.relu(self.pw2_bn(self.pw2(self.relu(self.dw2_bn(self.dw2(x))))))
        x = self.relu(self.pw3_bn(self.pw3(self.relu(self.dw3_bn(self.dw3(x))))))
        y = self.relu6(self.expand_bn(self.expand(x)))
        y = self.relu6(self.dw4_bn(self.dw4(y)))
        x = x + self.project_bn(self.project(y))
        return self.fc(ops.mean(x, (2, 3)))


NETWORKS = {"plain": PlainNet, "resnet_bn": ResNet, "resnet_nobn": lambda **kw: ResNet(bn=False, **kw),
            "densenet": DenseNet, "mobilenet": MobileNet}
ZOO_NAMES = [f"mnist_{name}" for name in NETWORKS]


def _build(name, num_classes, integral, checkpoint_torch, in_channels, kw):
    if integral:
        raise ValueError(f"mnist_{name} is a plain network for conversion: build it with integral=False "
                         f"(create_model('mnist_{name}', integral=False, checkpoint_torch='bundled')) and convert "
                         f"it with the converter (inn_ms.convert)")
    kw = {k: v for k, v in kw.items() if k not in _INTEGRAL_ONLY}
    if kw:
        raise TypeError(f"mnist_{name}: unexpected arguments {sorted(kw)}")
    net = NETWORKS[name](num_classes=num_classes, in_channels=in_channels)
    if checkpoint_torch is not None:
        from inn_ms.convert import load_torch_weights
        load_torch_weights(net, bundled_checkpoint(name) if checkpoint_torch == "bundled" else checkpoint_torch)
    net.set_train(False)
    return net


@register_model(input_shape=(1, 28, 28), plain=True)
def mnist_plain(num_classes=10, integral=False, checkpoint_torch=None, in_channels=1, **kw):
    """Plain conv-BN-ReLU stack (``PlainNet``); ``checkpoint_torch="bundled"``: the shipped weights."""
    return _build("plain", num_classes, integral, checkpoint_torch, in_channels, kw)


@register_model(input_shape=(1, 28, 28), plain=True)
def mnist_resnet_bn(num_classes=10, integral=False, checkpoint_torch=None, in_channels=1, **kw):
    """Residual network with BatchNorm (``ResNet``); ``checkpoint_torch="bundled"``: the shipped weights."""
    return _build("resnet_bn", num_classes, integral, checkpoint_torch, in_channels, kw)


@register_model(input_shape=(1, 28, 28), plain=True)
def mnist_resnet_nobn(num_classes=10, integral=False, checkpoint_torch=None, in_channels=1, **kw):
    """Residual network without BatchNorm (``ResNet(bn=False)``); ``"bundled"``: the shipped weights."""
    return _build("resnet_nobn", num_classes, integral, checkpoint_torch, in_channels, kw)


@register_model(input_shape=(1, 28, 28), plain=True)
def mnist_densenet(num_classes=10, integral=False, checkpoint_torch=None, in_channels=1, **kw):
    """DenseNet-like network with concatenations (``DenseNet``); ``"bundled"``: the shipped weights."""
    return _build("densenet", num_classes, integral, checkpoint_torch, in_channels, kw)


@register_model(input_shape=(1, 28, 28), plain=True)
def mnist_mobilenet(num_classes=10, integral=False, checkpoint_torch=None, in_channels=1, **kw):
    """Depthwise-separable network with an inverted residual (``MobileNet``); ``"bundled"``: the shipped weights."""
    return _build("mobilenet", num_classes, integral, checkpoint_torch, in_channels, kw)
