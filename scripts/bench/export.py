"""Benchmark: pruning an integral ResNet-18 to a width and exporting MindIR,
and the latency of the exported widths against their MAC ratio.

    .venv/bin/python scripts/bench/export.py [--size 112] [--batch 4] [--backend matmul]

1. mindcv's ResNet-18 (random weights: timing does not depend on them) is
   converted to an integral network once.
2. For keep 1.0 / 0.75 / 0.5: wall time of resample + build + MindIR export
   (target < 3 s), measured ``--repeats`` times, median printed.
3. Each exported MindIR is loaded with ``ms.load`` + ``nn.GraphCell`` and its
   median latency measured, interleaved across widths in rounds so machine
   noise hits every width alike; printed with its MAC ratio to full width.
4. The elastic MindIR (width a run-time input, one file) is timed at each
   width beside the fixed one in the same rounds (target: elastic <= 2x),
   both at an unchanged width (its sampled weights cached) and on the first
   call after a width change (which resamples every layer).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np
from mindspore import Tensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from inn_ms.convert import convert  # noqa: E402
from inn_ms.elastic import elastic_sizes, export_elastic  # noqa: E402
from inn_ms.export import export_mindir, load_mindir, prune  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112, help="input height and width")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--backend", default="matmul", choices=["native", "matmul"])
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5])
    ap.add_argument("--repeats", type=int, default=3, help="export timings per width")
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds (each runs every width)")
    ap.add_argument("--runs", type=int, default=3, help="runs per width per round")
    args = ap.parse_args(argv)

    import mindcv
    shape = (1, 3, args.size, args.size)
    net = mindcv.create_model("resnet18", pretrained=False, num_classes=1000)
    t0 = time.perf_counter()
    model = convert(net, shape, verify=False)
    print(f"ResNet-18 converted in {time.perf_counter() - t0:.1f} s: {len(model.groups)} channel groups")

    folder = tempfile.mkdtemp(prefix="inn_bench_")
    exported = {}
    print(f"\nresample + build + export MindIR ({args.backend} convolution, dynamic batch), "
          f"median of {args.repeats}:")
    for keep in args.keep:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            plain, report = prune(model, keep=keep, input_shape=shape)
            path = os.path.join(folder, f"resnet18_{keep:.2f}.mindir")
            export_mindir(plain, path, shape, backend=args.backend)
            times.append(time.perf_counter() - t0)
        exported[keep] = (path, report)
        print(f"  keep {keep:.2f}: {statistics.median(times):.2f} s  ({report['params']} parameters, "
              f"{report['macs'] / 1e6:.0f} M MACs per image)")

    t0 = time.perf_counter()
    elastic_path = export_elastic(model, os.path.join(folder, "resnet18_elastic.mindir"), shape,
                                  backend=args.backend)
    print(f"  elastic (any width): {time.perf_counter() - t0:.2f} s; file {os.path.getsize(elastic_path) / 1e6:.0f} MB "
          f"against {os.path.getsize(exported[max(exported)][0]) / 1e6:.0f} MB for the fixed full width")

    x = Tensor(np.random.default_rng(0).normal(size=(args.batch,) + shape[1:]).astype(np.float32))
    graphs = {keep: load_mindir(path) for keep, (path, _) in exported.items()}
    elastic = load_mindir(elastic_path)
    sizes = {keep: elastic_sizes(model, keep=keep) for keep in graphs}
    for keep, g in graphs.items():  # warm-up, and the elastic output checked against the fixed one
        ref = g(x).asnumpy()
        out = elastic(x, sizes[keep]).asnumpy()
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        print(f"  keep {keep:.2f}: elastic vs fixed MindIR output, max relative difference {err:.1e}")
    samples = {keep: [] for keep in graphs}
    elastic_samples = {keep: [] for keep in graphs}
    switch_samples = {keep: [] for keep in graphs}
    for _ in range(args.rounds):
        for keep, g in graphs.items():
            t0 = time.perf_counter()  # the first call at a new width resamples every layer
            elastic(x, sizes[keep]).asnumpy()
            switch_samples[keep].append(time.perf_counter() - t0)
            for _ in range(args.runs):
                t0 = time.perf_counter()
                g(x).asnumpy()
                samples[keep].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                elastic(x, sizes[keep]).asnumpy()
                elastic_samples[keep].append(time.perf_counter() - t0)
    full_keep = max(graphs)
    full_lat = statistics.median(samples[full_keep])
    full_macs = exported[full_keep][1]["macs"]
    print(f"\nMindIR latency, batch {args.batch}, {args.size}x{args.size}, ms.load + nn.GraphCell, "
          f"median of {args.rounds * args.runs} interleaved runs; elastic at an unchanged width "
          f"(sampled weights cached) and on the first call after a width change:")
    worst = 0.0
    for keep in graphs:
        lat = statistics.median(samples[keep])
        el = statistics.median(elastic_samples[keep])
        sw = statistics.median(switch_samples[keep])
        worst = max(worst, el / lat)
        print(f"  keep {keep:.2f}: fixed {lat * 1e3:7.1f} ms   latency ratio {lat / full_lat:.2f}   "
              f"MAC ratio {exported[keep][1]['macs'] / full_macs:.2f}   elastic {el * 1e3:7.1f} ms "
              f"({el / lat:.2f}x fixed)   width change {sw * 1e3:7.1f} ms ({sw / lat:.2f}x)")
    print(f"elastic / fixed latency at an unchanged width, worst: {worst:.2f}x (target <= 2x): "
          f"{'MET' if worst <= 2 else 'NOT MET'}")
    print(f"\nfiles in {folder}")


if __name__ == "__main__":
    main()
