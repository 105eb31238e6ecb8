"""Network in Network (Lin, Chen & Yan, 2014) for CIFAR: three "mlpconv"
blocks (a spatial convolution followed by two 1×1 convolutions), max and
average pooling between them, and global average pooling of the last
block's per-class maps instead of a dense classifier.

No BatchNorm: the published network has none. Pooling is 3×3 stride 2
padded "same" (MindSpore's convention, which the converter's group finder
reads as channel-wise). Global pooling makes any input
size work (32×32 is the design size). Channel groups: each hidden
convolution's output, named ``b{block}c{layer}`` (``b1c1`` … ``b3c2``); the
input pixels and the last 1×1 convolution's class maps stay discrete.

``nin_separable``: every spatial convolution after the first (the 5×5 of
block 2 and the 3×3 of block 3) is a depthwise convolution on its input
group followed by a 1×1 convolution (Lin et al., 2024); the first one reads
the 3 discrete input channels and stays a full convolution.
"""
from mindspore import nn, ops

from model_zoo.factory import finish, make_factory, scaled
from model_zoo.registry import register_model

# (spatial kernel, widths of the three convolutions) per block; the last
# block's third width is the number of classes.
_BLOCKS = ((5, (192, 160, 96)), (5, (192, 192, 192)), (3, (192, 192, None)))


class NIN(nn.Cell):
    def __init__(self, f, in_channels=3, num_classes=10, separable=False, width_mult=1.0, dropout=0.5):
        super().__init__()
        layers = []
        cin, gin = in_channels, None
        for b, (k, widths) in enumerate(_BLOCKS, start=1):
            for j, width in enumerate(widths, start=1):
                last = width is None
                width = num_classes if last else scaled(width, width_mult, "nin")
                gout = None if last else f"b{b}c{j}"
                if j == 1 and separable and gin is not None:
                    layers.append(f.separable(cin, width, k, padding=k // 2, in_group=gin, out_group=gout))
                else:
                    layers.append(f.conv(cin, width, k if j == 1 else 1, padding=k // 2 if j == 1 else 0,
                                         in_group=gin, out_group=gout))
                layers.append(nn.ReLU())
                cin, gin = width, gout
            if b == 1:
                layers += [nn.MaxPool2d(3, 2, pad_mode="same"), nn.Dropout(p=dropout)]
            elif b == 2:
                layers += [nn.AvgPool2d(3, 2, pad_mode="same"), nn.Dropout(p=dropout)]
        self.features = nn.SequentialCell(layers)

    def construct(self, x):
        return ops.mean(self.features(x), (2, 3))


def _build(separable, num_classes, integral, in_channels, width, quadrature, control_ratio):
    scaled(1, width, "nin")
    f = make_factory(integral, quadrature, control_ratio)
    return finish(NIN(f, in_channels, num_classes, separable, width), f)


@register_model
def nin(num_classes=10, integral=True, in_channels=3, width=1.0, quadrature="trapezoid", control_ratio=1.0):
    """Network in Network for 32×32 images (see the module docstring)."""
    return _build(False, num_classes, integral, in_channels, width, quadrature, control_ratio)


@register_model
def nin_separable(num_classes=10, integral=True, in_channels=3, width=1.0, quadrature="trapezoid",
                  control_ratio=1.0):
    """Network in Network with separable spatial convolutions after the first."""
    return _build(True, num_classes, integral, in_channels, width, quadrature, control_ratio)
