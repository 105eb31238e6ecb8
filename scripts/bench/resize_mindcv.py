"""Benchmark: mindcv models converted, resized and discretized, each in a
fresh process: the seconds of each stage, the parameters kept and the peak
resident memory.

Random weights, one 3x64x64 input, ``--classes`` classes (1,000: the wide
heads where sampling used to broadcast its matrix, see
``scripts/bench/sampling_memory.py``), every group resized to ``--keep``.

    python scripts/bench/resize_mindcv.py [--models resnet50,resnext50_32x4d] [--classes 1000] [--keep 0.5]
"""
import argparse

from procmem import run_child

CHILD = r"""
import json, sys, time
import numpy as np
import mindcv
from mindspore import Tensor
from inn_ms.convert import convert
from procmem import status_mb

name, classes, keep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
net = mindcv.create_model(name, pretrained=False, num_classes=classes)
net.set_train(False)
t = time.perf_counter()
model = convert(net, (1, 3, 64, 64))
times = [time.perf_counter() - t]
x = Tensor(np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32))
t = time.perf_counter()
model.resize(keep=keep)
model(x).asnumpy()
times.append(time.perf_counter() - t)
t = time.perf_counter()
model.discretize()(x).asnumpy()
times.append(time.perf_counter() - t)
c = model.compression()
print(json.dumps({"seconds": times, "params": c["params"], "full": c["full_params"], "peak": status_mb("VmHWM")}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,resnext50_32x4d,xception,res2net50,dpn92")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--keep", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(f"{args.classes} classes, 1x3x64x64, keep {args.keep}")
    print(f"{'model':18s} {'convert':>8s} {'resize+run':>10s} {'discretize':>10s} {'parameters kept':>20s} "
          f"{'peak RSS':>9s}")
    for name in args.models.split(","):
        r = run_child(CHILD, name, args.classes, args.keep)
        if "error" in r:
            print(f"{name:18s} failed: {r['error'][:90]}", flush=True)
            continue
        a, b, c = r["seconds"]
        kept = f"{r['params'] / 1e6:.1f} M of {r['full'] / 1e6:.1f} M"
        print(f"{name:18s} {a:7.1f}s {b:9.1f}s {c:9.1f}s {kept:>20s} {r['peak'] / 1024:7.2f} GB", flush=True)


if __name__ == "__main__":
    main()
