"""Benchmark: evaluating plain (discrete) networks on CPU, side by side.

The main job's PyTorch twin (``mnist_torch_cnn``, 194 k parameters) on
MNIST test digits, graph mode, batches of 50 (the first batch compiles and
is not timed), as:

* the twin itself, MindSpore's ``nn.Conv2d`` (its CPU ``Conv2D`` kernel);
* the twin through ``with_fast_convolutions`` (unfold + one 2-D matmul);
* ``convert`` then ``discretize`` at full width;
* the same with ``conv1`` and ``conv2`` on no continuous group
  (``discrete_dims``: both their output channels pinned, as grouped
  convolutions, splits or slices pin layers of mindcv models), so they are
  not integral layers: before, ``convert`` and ``discretize`` left them as
  ``nn.Conv2d``;
* the exported MindIR run back by ``load_mindir``, with MindSpore's
  standard ``Conv2D`` (``backend="native"``, the default: portable to
  Ascend and Lite) and with unfold + matmul (``backend="matmul"``).

Prints seconds per 1,000 images and how many ``nn.Conv2d`` (the slow CPU
kernel) each network holds. Measured on this 2-core machine under a load
of 9-10 (other jobs running), before (``convert`` kept a convolution on no
continuous group as ``nn.Conv2d``) and after (it becomes
``inn_ms.layers.plain.Conv2d``):

    network                              nn.Conv2d   s / 1000 images
                                        before after   before  after
    PyTorch twin (nn.Conv2d)                 6     6    187.8  166.3
    twin, with_fast_convolutions             0     0      5.9    7.6
    convert -> discretize                    0     0      4.4    6.6
    conv1+conv2 pinned: integral model       2     0     49.4    4.5
    conv1+conv2 pinned: discretize           2     0     47.8    3.7
    MindIR, backend=native                   -     -    166.8  226.7
    MindIR, backend=matmul                   -     -      5.7    5.8

    python scripts/bench/plain_eval.py [--slow-images 100] [--fast-images 1000]
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn  # noqa: E402

from inn_ms.convert import convert  # noqa: E402
from inn_ms.data import mnist_subset  # noqa: E402
from inn_ms.export import export_mindir, load_mindir  # noqa: E402
from inn_ms.layers.plain import with_fast_convolutions  # noqa: E402
from model_zoo import create_model  # noqa: E402

BATCH = 50


def slow_convolutions(cell):
    """How many plain ``nn.Conv2d`` (not a subclass) ``cell`` holds (-1: unknown, a MindIR)."""
    if not isinstance(cell, nn.Cell):
        return -1
    return sum(type(c) is nn.Conv2d for _, c in cell.cells_and_names())


def run(cell, x):
    for i in range(0, len(x), BATCH):
        cell(Tensor(x[i:i + BATCH])).asnumpy()


def seconds_per_1000(cell, x, images):
    if isinstance(cell, nn.Cell):
        cell.set_train(False)
    run(cell, x[:BATCH])  # compile
    n = min(images, len(x))
    t = time.perf_counter()
    run(cell, x[:n])
    return (time.perf_counter() - t) / n * 1000, n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow-images", type=int, default=100,
                        help="images for networks with nn.Conv2d (MindSpore's CPU Conv2D is slow)")
    parser.add_argument("--fast-images", type=int, default=1000, help="images for the others")
    args = parser.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    _, _, x, _ = mnist_subset(100, max(args.slow_images, args.fast_images), seed=0)
    twin = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    pinned = convert(twin, (2, 1, 28, 28), discrete_dims={"conv1.weight": [0], "conv2.weight": [0]})
    rows = [("PyTorch twin (nn.Conv2d)", twin),
            ("twin, with_fast_convolutions", with_fast_convolutions(twin)),
            ("convert -> discretize", convert(twin, (2, 1, 28, 28)).discretize()),
            ("conv1+conv2 pinned: integral model", pinned),
            ("conv1+conv2 pinned: discretize", pinned.discretize())]
    folder = tempfile.mkdtemp(prefix="plain_eval_")
    plain = rows[2][1]
    for backend in ("native", "matmul"):
        path = export_mindir(plain, os.path.join(folder, f"{backend}.mindir"), (BATCH, 1, 28, 28),
                             backend=backend)
        rows.append((f"MindIR, backend={backend}", load_mindir(path)))
    print(f"{'network':38s} {'nn.Conv2d':>9s} {'images':>6s} {'s / 1000 images':>16s}")
    for label, cell in rows:
        slow = slow_convolutions(cell)
        native = slow > 0 or label.endswith("native")
        per, n = seconds_per_1000(cell, x, args.slow_images if native else args.fast_images)
        print(f"{label:38s} {slow if slow >= 0 else '-':>9} {n:6d} {per:16.2f}", flush=True)


if __name__ == "__main__":
    main()
