"""ResNet-18 and ResNet-50 (He et al., 2016) with BatchNorm, for
classification.

BatchNorm lives on channel groups: every convolution is followed by an
``IntegralBatchNorm2d`` on that convolution's output group (a plain
``nn.BatchNorm2d`` in the discrete variant), so the normalisation is
resampled with the channels it normalises and the residual adds join
normalised tensors exactly as in the published network. (Folding BN into
the convolutions would change the architecture that is trained; keeping it
is what makes the discrete variant the standard network.)

Channel groups: a residual ``Add`` joins its operands, so every block of a
stage writes into the stage group ``layer{k}`` (k = 1…4), and so do the
stage's projection shortcuts. Each block's inner widths are its own groups
``layer{k}.{j}.a`` (and ``.b`` in a bottleneck). The stem's output is the
input of stage 1: with basic blocks (ResNet-18) stage 1 adds it to its
output, so it *is* ``layer1``; with bottlenecks (ResNet-50) stage 1 projects
it, so it is its own group ``stem``. ResNet-18 thus has 4 + 8 = 12 groups,
ResNet-50 1 + 4 + 2·16 = 37. Input pixels and class scores stay discrete.

``stem``: ``"cifar"`` (default; a 3×3 stride-1 convolution and no max
pooling, for 32×32 inputs) or ``"imagenet"`` (the published 7×7 stride-2
convolution and 3×3 stride-2 max pooling padded by one pixel on every side
as torchvision pads it: an explicit −∞ pad, then an unpadded pooling.
MindSpore's ``pad_mode="same"``, which mindcv uses, pads only after an even
input and shifts every window: ResNet-18 logits move by 1.6–2.8 % at 224×224).
Downsampling in a bottleneck is on its 3×3 convolution (the common "v1.5"
placement), as in torchvision. ``width``: a multiplier of every stage's
width (1.0: the published network).

torchvision weights: the discrete network (``integral=False``) with
``stem="imagenet"`` at width 1.0 is torchvision's ``resnet18`` /
``resnet50``; :meth:`ResNet.torch_module_map` tells
:func:`inn_ms.convert.load_torch_weights` which torchvision module is which
of its own (``layer2.0.downsample.0`` is ``blocks.2.shortcut.conv``).

``*_separable``: every 3×3 convolution after the stem is a depthwise 3×3 on
its input group (carrying the stride) followed by a 1×1 convolution to the
output group, then the BatchNorm (Lin et al., 2024).
"""
from mindspore import nn, ops

from model_zoo.factory import check_stem, finish, make_factory, scaled
from model_zoo.registry import register_model


def _conv3x3(f, cin, cout, stride, in_group, out_group, separable):
    if separable:
        return f.separable(cin, cout, 3, stride=stride, padding=1, has_bias=False, in_group=in_group,
                           out_group=out_group)
    return f.conv(cin, cout, 3, stride=stride, padding=1, has_bias=False, in_group=in_group, out_group=out_group)


class _Shortcut(nn.Cell):
    """1×1 projection + BatchNorm onto the stage group."""

    def __init__(self, f, cin, cout, stride, in_group, out_group):
        super().__init__()
        self.conv = f.conv(cin, cout, 1, stride=stride, has_bias=False, in_group=in_group, out_group=out_group)
        self.bn = f.bn(cout, out_group)

    def construct(self, x):
        return self.bn(self.conv(x))


class BasicBlock(nn.Cell):
    expansion = 1

    def __init__(self, f, cin, width, stride, in_group, out_group, prefix, separable=False):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv3x3(f, cin, width, stride, in_group, f"{prefix}.a", separable)
        self.bn1 = f.bn(width, f"{prefix}.a")
        self.conv2 = _conv3x3(f, width, cout, 1, f"{prefix}.a", out_group, separable)
        self.bn2 = f.bn(cout, out_group)
        self.shortcut = _shortcut(f, cin, cout, stride, in_group, out_group)
        self.relu = nn.ReLU()

    def construct(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        s = x if self.shortcut is None else self.shortcut(x)
        return self.relu(y + s)


class Bottleneck(nn.Cell):
    expansion = 4

    def __init__(self, f, cin, width, stride, in_group, out_group, prefix, separable=False):
        super().__init__()
        cout = width * self.expansion
        a, b = f"{prefix}.a", f"{prefix}.b"
        self.conv1 = f.conv(cin, width, 1, has_bias=False, in_group=in_group, out_group=a)
        self.bn1 = f.bn(width, a)
        self.conv2 = _conv3x3(f, width, width, stride, a, b, separable)
        self.bn2 = f.bn(width, b)
        self.conv3 = f.conv(width, cout, 1, has_bias=False, in_group=b, out_group=out_group)
        self.bn3 = f.bn(cout, out_group)
        self.shortcut = _shortcut(f, cin, cout, stride, in_group, out_group)
        self.relu = nn.ReLU()

    def construct(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        s = x if self.shortcut is None else self.shortcut(x)
        return self.relu(y + s)


class TorchMaxPool2d(nn.Cell):
    """Max pooling padded as PyTorch pads it: ``padding`` pixels of −∞ on
    every side, then an unpadded pooling (``nn.MaxPool2d(k, s, padding=p)``
    of PyTorch)."""

    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.padding = (padding,) * 4
        self.pool = nn.MaxPool2d(kernel_size, stride)

    def construct(self, x):
        return self.pool(ops.pad(x, self.padding, value=float("-inf")))


def _shortcut(f, cin, cout, stride, in_group, out_group):
    if stride == 1 and cin == cout:
        if in_group != out_group:  # an identity add joins the two: they must be one group
            raise ValueError(f"identity shortcut from group {in_group!r} to a different group {out_group!r}")
        return None
    return _Shortcut(f, cin, cout, stride, in_group, out_group)


class ResNet(nn.Cell):
    def __init__(self, f, block, depths, in_channels=3, num_classes=10, stem="cifar", separable=False, width=1.0):
        super().__init__()
        widths = tuple(scaled(c, width, "resnet") for c in (64, 128, 256, 512))
        c0 = widths[0]
        stem_group = "layer1" if block.expansion == 1 else "stem"
        if stem == "imagenet":
            self.stem = f.conv(in_channels, c0, 7, stride=2, padding=3, has_bias=False, out_group=stem_group)
            self.pool = TorchMaxPool2d(3, 2, 1)
        else:
            self.stem = f.conv(in_channels, c0, 3, padding=1, has_bias=False, out_group=stem_group)
            self.pool = None
        self.bn = f.bn(c0, stem_group)
        self.relu = nn.ReLU()
        blocks = []
        cin, gin = c0, stem_group
        self._stages = []  # (k, j) of each block: torchvision's layer{k}.{j}
        for k, (stage_width, depth) in enumerate(zip(widths, depths), start=1):
            for j in range(depth):
                stride = 2 if (j == 0 and k > 1) else 1
                blocks.append(block(f, cin, stage_width, stride, gin, f"layer{k}", f"layer{k}.{j}", separable))
                self._stages.append((k, j))
                cin, gin = stage_width * block.expansion, f"layer{k}"
        self.blocks = nn.SequentialCell(blocks)
        self.fc = f.dense(cin, num_classes, in_group=gin)
        self._separable = separable

    def torch_module_map(self):
        """``{torchvision module path: this network's}``: ``conv1``/``bn1`` are
        ``stem``/``bn``, ``layer{k}.{j}`` is ``blocks.{i}``, a block's
        ``downsample.0``/``.1`` its ``shortcut.conv``/``.bn``. Empty for the
        separable variants (torchvision has no such network)."""
        if self._separable:
            return {}
        table = {"conv1": "stem", "bn1": "bn", "fc": "fc"}
        for i, (k, j) in enumerate(self._stages):
            block = self.blocks[i]
            convs = ("conv1", "bn1", "conv2", "bn2") + (("conv3", "bn3") if hasattr(block, "conv3") else ())
            for name in convs:
                table[f"layer{k}.{j}.{name}"] = f"blocks.{i}.{name}"
            if block.shortcut is not None:
                table[f"layer{k}.{j}.downsample.0"] = f"blocks.{i}.shortcut.conv"
                table[f"layer{k}.{j}.downsample.1"] = f"blocks.{i}.shortcut.bn"
        return table

    def construct(self, x):
        x = self.relu(self.bn(self.stem(x)))
        if self.pool is not None:
            x = self.pool(x)
        x = self.blocks(x)
        return self.fc(ops.mean(x, (2, 3)))


def _build(block, depths, separable, name, num_classes, integral, in_channels, stem, width, quadrature,
           control_ratio):
    check_stem(stem, name)
    scaled(1, width, name)
    f = make_factory(integral, quadrature, control_ratio)
    return finish(ResNet(f, block, depths, in_channels, num_classes, stem, separable, width), f)


@register_model
def resnet18(num_classes=10, integral=True, in_channels=3, stem="cifar", width=1.0,
             quadrature="trapezoid", control_ratio=1.0):
    """ResNet-18: basic blocks, 2-2-2-2 (see the module docstring)."""
    return _build(BasicBlock, (2, 2, 2, 2), False, "resnet18", num_classes, integral, in_channels, stem,
                  width, quadrature, control_ratio)


@register_model
def resnet50(num_classes=10, integral=True, in_channels=3, stem="cifar", width=1.0,
             quadrature="trapezoid", control_ratio=1.0):
    """ResNet-50: bottleneck blocks, 3-4-6-3 (see the module docstring)."""
    return _build(Bottleneck, (3, 4, 6, 3), False, "resnet50", num_classes, integral, in_channels, stem,
                  width, quadrature, control_ratio)


@register_model
def resnet18_separable(num_classes=10, integral=True, in_channels=3, stem="cifar", width=1.0,
                       quadrature="trapezoid", control_ratio=1.0):
    """ResNet-18 with separable 3×3 convolutions after the stem."""
    return _build(BasicBlock, (2, 2, 2, 2), True, "resnet18_separable", num_classes, integral, in_channels,
                  stem, width, quadrature, control_ratio)


@register_model
def resnet50_separable(num_classes=10, integral=True, in_channels=3, stem="cifar", width=1.0,
                       quadrature="trapezoid", control_ratio=1.0):
    """ResNet-50 with separable 3×3 convolutions."""
    return _build(Bottleneck, (3, 4, 6, 3), True, "resnet50_separable", num_classes, integral, in_channels,
                  stem, width, quadrature, control_ratio)
