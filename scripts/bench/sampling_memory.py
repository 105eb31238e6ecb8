"""Benchmark: peak memory of sampling one wide integral layer at a reduced width.

ResNet-50's head (2048 -> 1000, input channels continuous, classes
discrete) and a 3x3 convolution 512 -> 512, each resized to 50 % and
sampled once, in PyNative and in graph mode (there the whole layer, compiled),
every case in a fresh subprocess after a small layer warmed it up.
Prints, per case, the size of the sampled weight and how far the
process's peak resident memory (``VmHWM``, restarted through
``/proc/self/clear_refs``, Linux) rose above its resident memory just
before sampling.

Measured on this 2-core CPU machine at 50 % (MB of peak RSS growth;
weights 3.9 and 2.2 MB):

    layer               mode      A[n×m] @ W[s×m×r]   one 2-D matmul
    2048 -> 1000 head   PyNative             15,967               13
    2048 -> 1000 head   graph                16,000                4
    conv3x3 512 -> 512  PyNative                275               17
    conv3x3 512 -> 512  graph                   272               47

(the broadcast product: MindSpore copied ``A`` to ``s×n×m``; graph mode's
figure for the conv includes compiling it). Then the time of the two
products alone, graph mode, forward and with both gradients (ms per call):

    s, m, n, r            forward: broadcast   2-D   with grad: broadcast   2-D
    (64, 64, 48, 9)                     0.56  0.79                   0.58  0.79
    (256, 256, 192, 9)                 61.41  6.01                  72.88  9.44
    (256, 512, 256, 1)                155.24  2.05                 205.91  2.58

    python scripts/bench/sampling_memory.py [--keep 0.5]
"""
import argparse

from procmem import run_child

CHILD = r"""
import json, sys
import numpy as np
from procmem import restart_peak, status_mb
import mindspore as ms
from mindspore import Tensor
from inn_ms.layers import IntegralConv2d, IntegralDense
from inn_ms.partition import UniformPartition

kind, mode, keep = sys.argv[1], sys.argv[2], float(sys.argv[3])
ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
# Warm up: the first op (and the first compile) of a process costs ~200 MB
# of its own, whatever the layer; a small layer of the same kind pays it.
small_p = UniformPartition(16)
small = IntegralDense(16, 10, in_partition=small_p, out_partition=None)
small_p.resize(8)
small(Tensor(np.ones((1, 8), np.float32))).asnumpy()
small.sample_weight().asnumpy()
if kind == "dense":
    p = UniformPartition(2048)
    layer = IntegralDense(2048, 1000, in_partition=p, out_partition=None)
    p.resize(int(round(2048 * keep)))
    x = Tensor(np.ones((1, p.size), np.float32))
else:
    p, q = UniformPartition(512), UniformPartition(512)
    layer = IntegralConv2d(512, 512, 3, padding=1, in_partition=p, out_partition=q)
    p.resize(int(round(512 * keep)))
    q.resize(int(round(512 * keep)))
    x = Tensor(np.ones((1, p.size, 4, 4), np.float32))


before = restart_peak()
if mode == "graph":
    out = layer(x)  # compiles and runs the whole layer: sampling + the op
else:
    out = layer.sample_weight()
out.asnumpy()
print(json.dumps({"growth_mb": status_mb("VmHWM") - before}))
"""


TIMING = r"""
import json, sys, time
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops
from inn_ms.sampler import apply_along_axis1


class Sample(nn.Cell):
    def __init__(self, broadcast):
        super().__init__()
        self.broadcast = broadcast

    def construct(self, a, x):
        return ops.matmul(a, x) if self.broadcast else apply_along_axis1(a, x)


class WithGrad(nn.Cell):
    def __init__(self, broadcast):
        super().__init__()
        self.f = Sample(broadcast)
        self.grad = ops.GradOperation(get_all=True)

    def construct(self, a, x):
        return self.grad(self.f)(a, x)


ms.set_context(mode=ms.GRAPH_MODE)
s, m, n, r = (int(v) for v in sys.argv[1:5])
rng = np.random.default_rng(0)
a = Tensor(rng.normal(size=(n, m)).astype(np.float32))
x = Tensor(rng.normal(size=(s, m, r)).astype(np.float32))
cells = {f"{kind} {'broadcast' if b else '2-D'}": (Sample(b) if kind == "forward" else WithGrad(b))
         for kind in ("forward", "forward+grad") for b in (True, False)}
times = {k: [] for k in cells}
for c in cells.values():
    c(a, x)
for _ in range(3):  # rounds alternate the cells: machine noise hits all alike
    for k, c in cells.items():
        t = time.perf_counter()
        for _ in range(10):
            out = c(a, x)
            (out[0] if isinstance(out, tuple) else out).asnumpy()
        times[k].append((time.perf_counter() - t) / 10 * 1000)
print(json.dumps({k: sorted(v)[1] for k, v in times.items()}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.5)
    args = parser.parse_args(argv)
    cases = [("dense", "2048->1000, in at {:.0%}", 1000 * round(2048 * args.keep)),
             ("conv", "conv3x3 512->512 at {:.0%}", round(512 * args.keep) ** 2 * 9)]
    print(f"{'layer':28s} {'mode':8s} {'weight MB':>10s} {'peak RSS growth MB':>19s}")
    for kind, label, elements in cases:
        for mode in ("pynative", "graph"):
            r = run_child(CHILD, kind, mode, args.keep)
            growth = r.get("growth_mb")
            shown = f"{growth:19.0f}" if growth is not None else f"  failed: {r['error'][:60]}"
            print(f"{label.format(args.keep):28s} {mode:8s} {elements * 4 / 2**20:10.1f} {shown}", flush=True)
    print("\nms per call, graph mode, A[n x m] applied along axis 1 of W[s x m x r] (median of 3 rounds of 10):")
    print(f"{'s, m, n, r':22s} {'forward: broadcast':>18s} {'2-D':>7s} {'with grad: broadcast':>21s} {'2-D':>7s}")
    for shape in ((64, 64, 48, 9), (256, 256, 192, 9), (256, 512, 256, 1)):
        t = run_child(TIMING, *shape)
        if "error" in t:
            print(f"{str(shape):22s} failed: {t['error'][:80]}")
            continue
        print(f"{str(shape):22s} {t['forward broadcast']:18.2f} {t['forward 2-D']:7.2f} "
              f"{t['forward+grad broadcast']:21.2f} {t['forward+grad 2-D']:7.2f}", flush=True)


if __name__ == "__main__":
    main()
