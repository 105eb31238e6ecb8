"""Benchmark: mindcv models converted, resized and discretized, each in a
fresh process: seconds per stage (wall and the process's CPU), the share
of each conversion stage, the parameters kept and the peak resident memory.

Random weights, one 3x64x64 input, ``--classes`` classes (1,000: the wide
heads where sampling used to broadcast its matrix, see
``scripts/bench/sampling_memory.py``), every group resized to ``--keep``.
Issue 15's target: ResNet-50's convert + resize + discretize <= 20 s on
the project's 2-core machine.

    python scripts/bench/convert.py [--models resnet50,resnext50_32x4d] [--classes 1000] [--keep 0.5]
"""
import argparse

from procmem import run_child

DEFAULT_MODELS = "resnet18,resnet50,mobilenet_v2_100,densenet121,efficientnet_b0"

CHILD = r"""
import json, sys, time
import numpy as np
import mindcv
from mindspore import Tensor
from inn_ms.convert import convert
from inn_ms.runner import eager_in_order
from procmem import status_mb

eager_in_order("CPU")  # as inn-ms convert does

name, classes, keep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
net = mindcv.create_model(name, pretrained=False, num_classes=classes)
net.set_train(False)
x = Tensor(np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32))
wall, cpu = {}, {}
def timed(stage, fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall[stage], cpu[stage] = time.perf_counter() - t, time.process_time() - c
    return out
model = timed("convert", lambda: convert(net, (1, 3, 64, 64)))
timed("resize", lambda: (model.resize(keep=keep), model(x).asnumpy()))
timed("discretize", lambda: model.discretize()(x).asnumpy())
c = model.compression()
print(json.dumps({"wall": wall, "cpu": cpu, "stages": model.conversion["seconds"], "params": c["params"],
                  "full": c["full_params"], "peak": status_mb("VmHWM")}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--keep", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(f"{args.classes} classes, 1x3x64x64, keep {args.keep}; seconds wall (CPU of the process)")
    rows = []
    for name in args.models.split(","):
        r = run_child(CHILD, name, args.classes, args.keep)
        if "error" in r:
            print(f"{name:18s} failed: {r['error'][:90]}", flush=True)
            continue
        rows.append((name, r))
        w, c = r["wall"], r["cpu"]
        total = sum(w.values())
        kept = f"{r['params'] / 1e6:.1f} M of {r['full'] / 1e6:.1f} M"
        print(f"{name:18s} convert {w['convert']:5.1f} ({c['convert']:5.1f})  resize+run {w['resize']:4.1f} "
              f"({c['resize']:4.1f})  discretize+run {w['discretize']:4.1f} ({c['discretize']:4.1f})  total "
              f"{total:5.1f} s  {kept}  peak {r['peak'] / 1024:.2f} GB", flush=True)
    if rows:
        stages = list(rows[0][1]["stages"])
        print("\nshare of the conversion's wall time per stage (%)")
        print(f"{'model':18s} " + " ".join(f"{s:>8s}" for s in stages))
        for name, r in rows:
            t = sum(r["stages"].values())
            print(f"{name:18s} " + " ".join(f"{100 * r['stages'].get(s, 0) / t:8.1f}" for s in stages))


if __name__ == "__main__":
    main()
