"""A small ResNet-style network (basic blocks, no BatchNorm) for 32×32 or
28×28 inputs. Every residual ``Add`` joins its operands' channel groups: a
stage's blocks all write into the stage group ``s{k}``; each block's inner
width is its own group ``s{k}b{j}``."""
from mindspore import nn, ops

from model_zoo.factory import check_widths, finish, make_factory
from model_zoo.registry import register_model


class BasicBlock(nn.Cell):
    def __init__(self, f, cin, cout, stride, in_group, out_group, mid_group):
        super().__init__()
        self.conv1 = f.conv(cin, cout, 3, stride=stride, padding=1, in_group=in_group, out_group=mid_group)
        self.conv2 = f.conv(cout, cout, 3, padding=1, in_group=mid_group, out_group=out_group)
        self.shortcut = None
        if stride != 1 or cin != cout or in_group != out_group:
            self.shortcut = f.conv(cin, cout, 1, stride=stride, in_group=in_group, out_group=out_group)
        self.relu = nn.ReLU()

    def construct(self, x):
        y = self.conv2(self.relu(self.conv1(x)))
        s = x if self.shortcut is None else self.shortcut(x)
        return self.relu(y + s)


class SmallResNet(nn.Cell):
    def __init__(self, f, widths=(16, 32, 64), blocks=2, in_channels=3, num_classes=10):
        super().__init__()
        self.stem = f.conv(in_channels, widths[0], 3, padding=1, out_group="s0")
        layers = []
        cin, gin = widths[0], "s0"
        for k, w in enumerate(widths):
            for j in range(blocks):
                stride = 2 if (j == 0 and k > 0) else 1
                layers.append(BasicBlock(f, cin, w, stride, gin, f"s{k}", f"s{k}b{j}"))
                cin, gin = w, f"s{k}"
        self.blocks = nn.SequentialCell(layers)
        self.fc = f.dense(cin, num_classes, in_group=gin)
        self.relu = nn.ReLU()

    def construct(self, x):
        x = self.blocks(self.relu(self.stem(x)))
        return self.fc(ops.mean(x, (2, 3)))


@register_model
def resnet_small(num_classes=10, integral=True, widths=(16, 32, 64), blocks=2, in_channels=3,
                 quadrature="trapezoid", control_ratio=1.0):
    f = make_factory(integral, quadrature, control_ratio)
    return finish(SmallResNet(f, check_widths(widths, "resnet_small"), blocks, in_channels, num_classes), f)
