"""VGG-11 and VGG-19 (Simonyan & Zisserman, 2015): stacks of 3×3
convolutions with ReLU, max pooling after each of five stages.

Channel groups: every convolution's output, ``conv1`` … ``conv8`` (VGG-11) or
``conv16`` (VGG-19), numbered in order; with the ImageNet head also the two
hidden dense layers ``fc1`` and ``fc2``. Input pixels and class scores stay
discrete.

``stem``: ``"cifar"`` (default) averages the last feature map over space and
classifies with one dense layer (the usual CIFAR VGG, 512 → classes);
``"imagenet"`` is the published head: average pooling to 7×7, flatten, and
three dense layers (25088 → 4096 → 4096 → classes) with dropout; the first
one reads the flattened 512×7×7 features, continuous along the channels
(``IntegralDense(in_spatial=49)``).

``width``: a multiplier of every hidden width (1.0: the published
network).

``batch_norm``: the published VGG has no BatchNorm (the default);
``True`` adds one after every convolution, on that convolution's group
(the "VGG-BN" variant).

``vgg11_separable``: every convolution after the first (which reads the 3
discrete input channels) is a depthwise 3×3 on its input group followed by
a 1×1 convolution (Lin et al., 2024).
"""
from mindspore import nn, ops

from model_zoo.factory import check_stem, finish, make_factory, scaled
from model_zoo.registry import register_model

M = "pool"
CONFIGS = {
    "vgg11": (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),
    "vgg19": (64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M),
}


class VGG(nn.Cell):
    def __init__(self, f, config, in_channels=3, num_classes=10, stem="cifar", batch_norm=False,
                 separable=False, width=1.0, dropout=0.5):
        super().__init__()
        layers = []
        cin, gin, k = in_channels, None, 0
        for item in config:
            if item == M:
                layers.append(nn.MaxPool2d(2, 2))
                continue
            k += 1
            gout = f"conv{k}"
            item = scaled(item, width, "vgg")
            if separable and gin is not None:
                layers.append(f.separable(cin, item, 3, padding=1, in_group=gin, out_group=gout))
            else:
                layers.append(f.conv(cin, item, 3, padding=1, in_group=gin, out_group=gout))
            if batch_norm:
                layers.append(f.bn(item, gout))
            layers.append(nn.ReLU())
            cin, gin = item, gout
        self.features = nn.SequentialCell(layers)
        self.imagenet_head = stem == "imagenet"
        if self.imagenet_head:
            hidden = scaled(4096, width, "vgg")
            self.pool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.SequentialCell([
                f.dense(cin, hidden, in_group=gin, out_group="fc1", in_spatial=49), nn.ReLU(), nn.Dropout(p=dropout),
                f.dense(hidden, hidden, in_group="fc1", out_group="fc2"), nn.ReLU(), nn.Dropout(p=dropout),
                f.dense(hidden, num_classes, in_group="fc2")])
        else:
            self.pool = None
            self.classifier = f.dense(cin, num_classes, in_group=gin)

    def construct(self, x):
        x = self.features(x)
        if self.imagenet_head:
            x = self.pool(x)
            x = x.reshape(x.shape[0], -1)
        else:
            x = ops.mean(x, (2, 3))
        return self.classifier(x)


def _build(config, separable, name, num_classes, integral, in_channels, stem, batch_norm, width, quadrature,
           control_ratio):
    check_stem(stem, name)
    scaled(1, width, name)
    f = make_factory(integral, quadrature, control_ratio)
    return finish(VGG(f, CONFIGS[config], in_channels, num_classes, stem, bool(batch_norm), separable, width), f)


@register_model
def vgg11(num_classes=10, integral=True, in_channels=3, stem="cifar", batch_norm=False, width=1.0,
          quadrature="trapezoid", control_ratio=1.0):
    """VGG-11 (configuration A); see the module docstring for the options."""
    return _build("vgg11", False, "vgg11", num_classes, integral, in_channels, stem, batch_norm, width,
                  quadrature, control_ratio)


@register_model
def vgg19(num_classes=10, integral=True, in_channels=3, stem="cifar", batch_norm=False, width=1.0,
          quadrature="trapezoid", control_ratio=1.0):
    """VGG-19 (configuration E); see the module docstring for the options."""
    return _build("vgg19", False, "vgg19", num_classes, integral, in_channels, stem, batch_norm, width,
                  quadrature, control_ratio)


@register_model
def vgg11_separable(num_classes=10, integral=True, in_channels=3, stem="cifar", batch_norm=False,
                    width=1.0, quadrature="trapezoid", control_ratio=1.0):
    """VGG-11 with separable convolutions after the first."""
    return _build("vgg11", True, "vgg11_separable", num_classes, integral, in_channels, stem, batch_norm, width,
                  quadrature, control_ratio)
