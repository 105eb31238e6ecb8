"""Benchmark: networks with grouped convolutions converted as a user would,
each in a fresh process: channel groups continuous (and how many come in
blocks, a grouped convolution's), the share of the network's parameters
in tensors that shrink when every group is resized to ``--keep``
("shrinks"), the parameters kept and removed, exactness at full size
(integral vs original) and the discretized network at ``--keep`` against
the integral one, conversion seconds and peak memory.

Random weights (seeded: the same in every run), one 3x64x64 input,
``--classes`` classes (mindcv models).
"shrinks" counts, on the discretized networks, every tensor whose shape is
smaller at ``--keep`` than at full size (one shrinking axis is enough: a
1x1 convolution between a pinned and a continuous group counts), so
"removed" (``1 - kept / full``) says more: about ``1 - keep²`` when every
group is continuous.

    python scripts/bench/grouped.py [--models resnext50_32x4d] [--classes 10] [--keep 0.5]
"""
import argparse

from procmem import run_child

CHILD = r"""
import json, sys, time
import numpy as np
import mindcv
import mindspore as ms
from mindspore import Tensor
from inn_ms.convert import convert
from inn_ms.runner import eager_in_order
from procmem import status_mb

eager_in_order("CPU")  # as inn-ms convert does

def measure(name, classes, keep):
    ms.set_seed(0)  # the same random weights in every run
    np.random.seed(0)
    net = mindcv.create_model(name, pretrained=False, num_classes=classes)
    net.set_train(False)
    x = Tensor(np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32))
    ref = net(x).asnumpy()
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    t = time.perf_counter()
    model = convert(net, (1, 3, 64, 64))
    seconds = time.perf_counter() - t
    model.set_train(False)
    exact = rel(model(x).asnumpy(), ref)
    groups = model.conversion["groups"].groups
    blocked = [g for g in groups.values() if g.continuous and getattr(g, "blocks", 1) > 1]  # (older: no blocks)
    full = {n: p.shape for n, p in model.discretize().parameters_and_names()}
    model.resize(keep=keep)
    plain = model.discretize()
    plain.set_train(False)
    small = {n: p.shape for n, p in plain.parameters_and_names()}
    size = lambda shape: int(np.prod(shape))
    total = sum(size(s) for s in full.values())
    shrinks = sum(size(s) for n, s in full.items() if tuple(small[n]) != tuple(s))
    out = model(x).asnumpy()
    return {"groups": len(groups), "continuous": len(model.groups), "blocked": len(blocked),
            "shrink_share": shrinks / total, "full": total, "params": sum(size(s) for s in small.values()),
            "exact": exact, "discretized": rel(plain(x).asnumpy(), out), "seconds": seconds,
            "peak": status_mb("VmHWM")}


try:  # the error's own line (MindSpore's exit noise would be the last line of stderr)
    result = measure(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
except Exception as e:
    result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
print(json.dumps(result))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnext50_32x4d")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--keep", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(f"{args.classes} classes, 1x3x64x64, keep {args.keep}")
    print(f"{'model':19s} {'groups':>15s} {'in blocks':>9s} {'shrinks':>8s} {'params kept':>23s} {'removed':>8s} "
          f"{'exact':>8s} {'discr.':>8s} {'convert':>8s} {'peak':>7s}")
    for name in args.models.split(","):
        r = run_child(CHILD, name, args.classes, args.keep)
        if "error" in r:
            print(f"{name:19s} failed: {r['error'][:100]}", flush=True)
            continue
        removed = 1 - r["params"] / r["full"]
        print(f"{name:19s} {r['continuous']:>4d} of {r['groups']:>3d} cont. {r['blocked']:>9d} "
              f"{r['shrink_share']:>8.1%} {r['params']:>10,d} of {r['full']:>10,d} {removed:>8.1%} "
              f"{r['exact']:>8.1e} {r['discretized']:>8.1e} {r['seconds']:>7.1f}s {r['peak'] / 1024:>6.1f}G",
              flush=True)


if __name__ == "__main__":
    main()
