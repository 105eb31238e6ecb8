"""MobileNetV2 (Sandler et al., 2018): inverted residual blocks — a 1×1
expansion, a depthwise 3×3 convolution and a linear 1×1 projection, each
with BatchNorm — separable by construction.

Channel groups: ``stem`` (the first convolution's 32 channels); each
stage's output ``stage{i}`` (i = 1…7), which every block of the stage
writes into, so the inverted residual adds join it; each block's expanded
width ``stage{i}.{j}.expand``, shared by the expansion's output, the
depthwise convolution (one group: in = out) and the projection's input (the
first block, with expansion 1, has no expansion and runs its depthwise
convolution on ``stem``); and ``head``, the last 1×1 convolution's 1280
channels. BatchNorms live on their convolution's group. Input pixels and
class scores stay discrete.

``stem``: ``"imagenet"`` is the published network (stride-2 stem, 224×224
inputs); ``"cifar"`` (default) keeps the spatial size for 32×32 inputs by
giving the stem and the second stage stride 1 (a usual CIFAR adaptation).
``width``: the width multiplier (rounded to whole channels rather than
multiples of 8; the last convolution keeps at least 1280 channels, as
published).

torchvision weights: the discrete network (``integral=False``) with
``stem="imagenet"`` at width 1.0 is torchvision's ``mobilenet_v2``;
:meth:`MobileNetV2.torch_module_map` tells
:func:`inn_ms.convert.load_torch_weights` which torchvision module is which
of its own (``features.3.conv.1.0`` is ``features.2.body.3``).
"""
from mindspore import nn, ops

from inn_ms.cells import holds_parameters
from inn_ms.convert.torch_names import torchvision_mobilenet_v2_table
from model_zoo.factory import check_stem, finish, make_factory, scaled
from model_zoo.registry import register_model

# expansion t, output channels c, blocks n, first block's stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


class InvertedResidual(nn.Cell):
    def __init__(self, f, cin, cout, stride, expansion, in_group, out_group, prefix):
        super().__init__()
        hidden = cin * expansion
        layers = []
        mid = in_group
        if expansion != 1:
            mid = f"{prefix}.expand"
            layers += [f.conv(cin, hidden, 1, has_bias=False, in_group=in_group, out_group=mid), f.bn(hidden, mid),
                       nn.ReLU6()]
        layers += [f.conv(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, has_bias=False,
                          in_group=mid, out_group=mid), f.bn(hidden, mid), nn.ReLU6(),
                   f.conv(hidden, cout, 1, has_bias=False, in_group=mid, out_group=out_group), f.bn(cout, out_group)]
        self.body = nn.SequentialCell(layers)
        self.residual = stride == 1 and cin == cout
        if self.residual and in_group != out_group:
            raise ValueError(f"inverted residual from group {in_group!r} to a different group {out_group!r}")

    def construct(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Cell):
    def __init__(self, f, in_channels=3, num_classes=10, stem="cifar", width=1.0, dropout=0.2):
        super().__init__()
        cifar = stem == "cifar"
        c0, last = scaled(32, width, "mobilenet_v2"), max(1280, scaled(1280, width, "mobilenet_v2"))
        self.stem = nn.SequentialCell([f.conv(in_channels, c0, 3, stride=1 if cifar else 2, padding=1,
                                              has_bias=False, out_group="stem"), f.bn(c0, "stem"), nn.ReLU6()])
        blocks = []
        cin, gin = c0, "stem"
        for i, (t, c, n, s) in enumerate(SETTINGS, start=1):
            c = scaled(c, width, "mobilenet_v2")
            if cifar and i == 2:
                s = 1
            for j in range(n):
                blocks.append(InvertedResidual(f, cin, c, s if j == 0 else 1, t, gin, f"stage{i}", f"stage{i}.{j}"))
                cin, gin = c, f"stage{i}"
        blocks += [f.conv(cin, last, 1, has_bias=False, in_group=gin, out_group="head"), f.bn(last, "head"),
                   nn.ReLU6()]
        self.features = nn.SequentialCell(blocks)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = f.dense(last, num_classes, in_group="head")

    def construct(self, x):
        x = self.features(self.stem(x))
        return self.classifier(self.dropout(ops.mean(x, (2, 3))))

    def torch_module_map(self):
        """``{torchvision module path: this network's}``: torchvision's
        ``features.0`` is ``stem``, ``features.{b}`` (b = 1…17) is
        ``features.{b-1}.body``, ``features.18`` the last convolution and
        BatchNorm, ``classifier.1`` is ``classifier``."""
        cells = list(self.features.name_cells().items())
        blocks = [[f"features.{name}.body.{i}" for i, c in cell.body.name_cells().items() if holds_parameters(c)]
                  for name, cell in cells if isinstance(cell, InvertedResidual)]
        tail = [f"features.{name}" for name, cell in cells
                if not isinstance(cell, InvertedResidual) and holds_parameters(cell)]
        return torchvision_mobilenet_v2_table(["stem.0", "stem.1"], blocks, tail, "classifier")


@register_model
def mobilenet_v2(num_classes=10, integral=True, in_channels=3, stem="cifar", width=1.0, quadrature="trapezoid",
                 control_ratio=1.0):
    """MobileNetV2; see the module docstring."""
    check_stem(stem, "mobilenet_v2")
    scaled(1, width, "mobilenet_v2")
    f = make_factory(integral, quadrature, control_ratio)
    return finish(MobileNetV2(f, in_channels, num_classes, stem, width), f)
