"""Benchmark: pruning an integral ResNet-18 to a width and exporting MindIR,
the latency of the exported widths against their MAC ratio, and the elastic
MindIR (width a run-time input) beside the fixed exports.

    .venv/bin/python scripts/bench/export.py [--size 112] [--batch 4] [--backend matmul]

1. mindcv's ResNet-18 (random weights: timing does not depend on them) is
   converted to an integral network once.
2. For each ``--keep`` (default: the elastic MindIR's bucket widths): wall
   time of resample + build + MindIR export (target < 3 s), measured
   ``--repeats`` times, median printed.
3. The elastic MindIR is exported once: its time and file size against the
   fixed full width's (targets <= 4x, <= 1.25x).
4. Peak memory: each MindIR loaded and run at one width in a fresh process
   at the same batch (``--memory-batch``), the elastic one at every width
   (target <= 1.5x the fixed full width; the fixed export of the same
   width is printed beside it).
5. Latency: every MindIR loaded with ``ms.load`` + ``nn.GraphCell``, median
   over interleaved rounds so machine noise hits every width alike; the
   elastic MindIR at each width beside the fixed one (target <= 1.3x), at
   an unchanged width (sampled weights kept) and on the first call after a
   width change (which resamples every layer).

    .venv/bin/python scripts/bench/export.py --probe FILE BATCH SIZE [SIZES...]

runs one memory probe (what step 4 starts in a subprocess) and prints, as
JSON, the peak resident memory above the process's own after imports (MB).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np
from mindspore import Tensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from inn_ms.convert import convert  # noqa: E402
from inn_ms.elastic import elastic_sizes, export_elastic  # noqa: E402
from inn_ms.export import export_mindir, load_mindir  # noqa: E402
from inn_ms.prune import prune  # noqa: E402


def _status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def probe(path, batch, size, sizes=None):
    """Load ``path`` and run it twice at ``batch`` (at ``sizes`` for an
    elastic MindIR); print the peak resident memory above the start (MB)."""
    x = Tensor(np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32))
    s = None if sizes is None else Tensor(np.array(sizes, np.int32))
    base = _status_mb("VmRSS")
    graph = load_mindir(path)
    for _ in range(2):
        (graph(x) if s is None else graph(x, s)).asnumpy()
    print(json.dumps({"peak_mb": _status_mb("VmHWM") - base}))


def _peak(path, batch, size, sizes=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", path, str(batch), str(size)]
    cmd += [] if sizes is None else [str(int(v)) for v in sizes]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--probe"]:
        path, batch, size, *sizes = argv[1:]
        return probe(path, int(batch), int(size), [int(v) for v in sizes] or None)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112, help="input height and width")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--backend", default="matmul", choices=["native", "matmul"])
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25],
                    help="widths (default: the elastic MindIR's bucket widths)")
    ap.add_argument("--buckets", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0],
                    help="the elastic MindIR's branch widths")
    ap.add_argument("--memory-batch", type=int, nargs="*", default=None,
                    help="batches to measure peak memory at (default: --batch; none given: skip)")
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
    exported, export_times = {}, {}
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
        export_times[keep] = statistics.median(times)
        print(f"  keep {keep:.2f}: {export_times[keep]:.2f} s  ({report['params']} parameters, "
              f"{report['macs'] / 1e6:.0f} M MACs per image, {os.path.getsize(path) / 1e6:.1f} MB)")

    t0 = time.perf_counter()
    elastic_path = export_elastic(model, os.path.join(folder, "resnet18_elastic.mindir"), shape,
                                  backend=args.backend, buckets=args.buckets)
    elastic_time = time.perf_counter() - t0
    full_keep = max(exported)
    full_path = exported[full_keep][0]
    size_ratio = os.path.getsize(elastic_path) / os.path.getsize(full_path)
    time_ratio = elastic_time / export_times[full_keep]
    print(f"  elastic (branches at {', '.join(f'{b:g}' for b in sorted(args.buckets))} of full width): "
          f"{elastic_time:.2f} s ({time_ratio:.1f}x the fixed full width); file "
          f"{os.path.getsize(elastic_path) / 1e6:.1f} MB against {os.path.getsize(full_path) / 1e6:.1f} MB "
          f"({size_ratio:.2f}x)")

    sizes = {keep: elastic_sizes(model, keep=keep) for keep in exported}
    memory_ratio = None
    for batch in ([args.batch] if args.memory_batch is None else args.memory_batch):
        print(f"\npeak resident memory, batch {batch}, {args.size}x{args.size}: each MindIR loaded and run at "
              f"one width in a fresh process (MB above the process after imports):")
        full_mb = _peak(full_path, batch, args.size)
        for keep, (path, _) in exported.items():
            fixed_mb = full_mb if keep == full_keep else _peak(path, batch, args.size)
            el_mb = _peak(elastic_path, batch, args.size, sizes[keep].asnumpy())
            memory_ratio = max(memory_ratio or 0.0, el_mb / full_mb)
            print(f"  keep {keep:.2f}: fixed {fixed_mb:6.0f}   elastic {el_mb:6.0f}   "
                  f"({el_mb / full_mb:.2f}x the fixed full width, {el_mb / fixed_mb:.2f}x the fixed same width)")

    x = Tensor(np.random.default_rng(0).normal(size=(args.batch,) + shape[1:]).astype(np.float32))
    graphs = {keep: load_mindir(path) for keep, (path, _) in exported.items()}
    elastic = load_mindir(elastic_path)
    print()
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
    full_lat = statistics.median(samples[full_keep])
    full_macs = exported[full_keep][1]["macs"]
    print(f"\nMindIR latency, batch {args.batch}, {args.size}x{args.size}, ms.load + nn.GraphCell, "
          f"median of {args.rounds * args.runs} interleaved runs; elastic at an unchanged width "
          f"(sampled weights kept) and on the first call after a width change:")
    worst = 0.0
    for keep in graphs:
        lat = statistics.median(samples[keep])
        el = statistics.median(elastic_samples[keep])
        sw = statistics.median(switch_samples[keep])
        worst = max(worst, el / lat)
        print(f"  keep {keep:.2f}: fixed {lat * 1e3:7.1f} ms   latency ratio {lat / full_lat:.2f}   "
              f"MAC ratio {exported[keep][1]['macs'] / full_macs:.2f}   elastic {el * 1e3:7.1f} ms "
              f"({el / lat:.2f}x fixed)   width change {sw * 1e3:7.1f} ms ({sw / lat:.2f}x)")
    checks = [("file", size_ratio, 1.25), ("export time", time_ratio, 4.0), ("latency", worst, 1.3)]
    if memory_ratio is not None:
        checks.append(("peak memory", memory_ratio, 1.5))
    print("\nelastic against fixed: " + "; ".join(
        f"{what} {value:.2f}x (target <= {target:g}x: {'MET' if value <= target else 'NOT MET'})"
        for what, value, target in checks))
    print(f"\nfiles in {folder}")


if __name__ == "__main__":
    main()
