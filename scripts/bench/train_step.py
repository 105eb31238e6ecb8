"""Benchmark: training step time of an integral ResNet-style network against
the same discrete network, graph mode, measured side by side in one run.

All networks use the same convolution backend (``--backend``; on CPU the
default is unfold + matmul, see inn_ms/functional.py). The integral network
runs at full width, so its ratio is the price of sampling the weights
(kernel-matrix products and their gradients) in every step. The elastic
step (:class:`inn_ms.train.ElasticTrainStep`) draws new per-group sizes
every step, each group its own in [0.5, 1] of its channels, from one
compiled graph (one graph per width would compile nearly every step).
Rounds alternate between the networks so that machine noise hits all alike.

    python scripts/bench/train_step.py [--batch 32] [--steps 20] [--rounds 3]
"""
import argparse
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from inn_ms.functional import conv_backend, set_conv_backend  # noqa: E402
from inn_ms.cells import compiled_phases  # noqa: E402
from inn_ms.elastic import elastic_sizes  # noqa: E402
from inn_ms.train import ElasticTrainStep, TrainStep, WidthSampler  # noqa: E402
from model_zoo import create_model  # noqa: E402


def make_step(kind, args):
    """A train step of resnet_small: ``discrete``, ``integral`` (one graph,
    full width) or ``elastic`` (run-time per-group sizes); a callable
    ``(x, y)``."""
    ms.set_seed(0)
    net = create_model("resnet_small", integral=kind != "discrete", widths=tuple(args.widths))
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    params = net.trainable_params()
    opt = nn.Momentum(params, learning_rate=0.01, momentum=0.9)
    if kind == "discrete":
        step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
    elif kind == "integral":
        step = TrainStep(net, loss, opt)
    else:
        cell = ElasticTrainStep(net, loss, opt)
        sampler, rng = WidthSampler(net, low=0.5, per_group=True), np.random.default_rng(0)
        cell.set_train(True)

        def step(x, y):
            return cell(x, y, elastic_sizes(net, sizes=sampler.sample(rng)))
        step.cell = cell
        return step
    step.set_train(True)
    return step


def time_steps(step, x, y, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step(x, y).asnumpy()
        times.append(time.perf_counter() - t)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description="integral vs discrete train step time")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="input height and width")
    ap.add_argument("--widths", type=int, nargs=3, default=[16, 32, 64])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backend", choices=["auto", "native", "matmul"], default="auto")
    args = ap.parse_args(argv)

    ms.set_context(mode=ms.GRAPH_MODE)
    set_conv_backend(args.backend)
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(args.batch, 3, args.size, args.size)).astype(np.float32))
    y = Tensor(rng.integers(0, 10, size=args.batch).astype(np.int32))

    steps = {kind: make_step(kind, args) for kind in ("discrete", "integral", "elastic")}
    for name, step in steps.items():
        t = time.perf_counter()
        time_steps(step, x, y, args.warmup)
        print(f"{name:>9}: compile + {args.warmup} warm-up steps {time.perf_counter() - t:.1f} s")
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name] += time_steps(step, x, y, args.steps)
    med = {name: float(np.median(t)) for name, t in times.items()}
    print(f"\nresnet_small widths {args.widths}, batch {args.batch}, {args.size}x{args.size}, "
          f"conv backend {conv_backend()}, {args.rounds}x{args.steps} steps each")
    for name in steps:
        print(f"{name:>9}: median step {med[name] * 1e3:.1f} ms")
    print(f"ratio integral/discrete: {med['integral'] / med['discrete']:.2f}x (target <= 1.5x)")
    print(f"ratio elastic (new per-group sizes every step)/discrete: {med['elastic'] / med['discrete']:.2f}x "
          f"(target <= 1.3x), {len(compiled_phases(steps['elastic'].cell))} compiled graph(s) for "
          f"{args.warmup + args.rounds * args.steps} steps")


if __name__ == "__main__":
    main()
