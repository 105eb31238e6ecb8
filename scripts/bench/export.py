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
   width change (which resamples every layer: timed right after a call
   at one channel fewer per group, so the bucket's kept samples are stale).
6. Beside the elastic MindIR, in steps 3–5 and in the closing table
   (unless ``--no-alternatives``), the alternatives issue 12 asked about:
   fewer buckets in one graph (``--fewer``, default one bucket and two),
   and one graph per bucket: each bucket exported as its own one-bucket
   elastic MindIR (sizes up to that bucket's widths), the control weights
   they all read moved into one shared data file (MindIR's external data),
   a small manifest beside them; a width runs on the narrowest bucket file
   holding it. Also exported on their own, to show where the full-width
   bucket's export time and memory go: its forward pass on kept samples,
   and its resampling step.

    .venv/bin/python scripts/bench/export.py --probe FILE BATCH SIZE [SIZES...]

runs one memory probe (what step 4 starts in a subprocess) and prints, as
JSON, the peak resident memory above the process's own after imports (MB);
a MindIR whose only input is the sizes is called with them alone.
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

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from inn_ms.convert import convert  # noqa: E402
from inn_ms.elastic import elastic_sizes, export_elastic  # noqa: E402
from inn_ms.export import export_mindir, load_mindir  # noqa: E402
from inn_ms.fileio import atomic_write  # noqa: E402
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
    inputs = [s] if len(graph.input_specs) == 1 and s is not None else [x] + ([] if s is None else [s])
    for _ in range(2):
        out = graph(*inputs)
        [t.asnumpy() for t in (out if isinstance(out, (tuple, list)) else [out])]
    print(json.dumps({"peak_mb": _status_mb("VmHWM") - base}))


def latency(plan):
    """Time the fixed exports and one elastic variant side by side (what
    step 5 starts in a subprocess per variant); print medians as JSON."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(plan["batch"], 3, plan["size"], plan["size"])).astype(np.float32))
    widths = [(str(keep), load_mindir(fixed), elastic, Tensor(np.array(sizes, np.int32)))
              for keep, fixed, elastic, sizes in plan["widths"]]
    runners = {}
    for _, _, path, _ in widths:
        runners.setdefault(path, None)
    runners = {path: load_mindir(path) for path in runners}
    result = {}
    for keep, fixed, path, s in widths:  # warm-up, and the output checked against the fixed export
        ref = fixed(x).asnumpy()
        out = runners[path](x, s).asnumpy()
        result[keep] = {"error": float(np.max(np.abs(out - ref)) / np.max(np.abs(ref))),
                        "fixed": [], "elastic": [], "switch": []}
    for _ in range(plan["rounds"]):
        for keep, fixed, path, s in widths:
            # One channel fewer per group first: each bucket keeps its own samples, so without it
            # a multi-bucket graph would come back to a bucket at its last sizes and not resample.
            runners[path](x, Tensor(np.maximum(s.asnumpy() - 1, 2).astype(np.int32))).asnumpy()
            t0 = time.perf_counter()  # the first call at a new width resamples every layer
            runners[path](x, s).asnumpy()
            result[keep]["switch"].append(time.perf_counter() - t0)
            for _ in range(plan["runs"]):
                t0 = time.perf_counter()
                fixed(x).asnumpy()
                result[keep]["fixed"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                runners[path](x, s).asnumpy()
                result[keep]["elastic"].append(time.perf_counter() - t0)
    print(json.dumps({keep: {k: v if k == "error" else statistics.median(v) for k, v in r.items()}
                      for keep, r in result.items()}))


def _peak(path, batch, size, sizes=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", path, str(batch), str(size)]
    cmd += [] if sizes is None else [str(int(v)) for v in sizes]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


class _Clock:
    """Wall and CPU seconds of a block (CPU: this process's threads, which
    other jobs on a shared machine inflate less than the wall clock)."""

    def __enter__(self):
        self.start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc):
        self.seconds = (time.perf_counter() - self.start[0], time.process_time() - self.start[1])


def _against(t, ref):
    """``t`` (wall, CPU seconds) and its ratios to ``ref``."""
    return f"{t[0]:.2f} s, {t[1]:.2f} s CPU ({t[0] / ref[0]:.1f}x wall, {t[1] / ref[1]:.1f}x CPU)"


def _one_bucket(model, fraction):
    """The elastic network of ``model`` with the single static-shape branch
    at ``fraction`` of full width, its sizes' range cut to that branch's
    channels: what one file of a one-graph-per-bucket bundle holds."""
    from inn_ms.cells import copy_tree, name_parameters_by_path
    from inn_ms.elastic import ElasticNetwork, _bucket, bucket_rows, elastic_ranges
    saved = dict(model.sizes)
    try:
        model.resize(sizes=dict(model.full_sizes))
        base = copy_tree(model.network, lambda c: None)
        rows = bucket_rows(model, fraction)
        branch = _bucket(base, {id(p): k for k, p in enumerate(model.groups.values())}, rows)
    finally:
        model.resize(sizes=saved)
    ranges = [(low, min(high, r)) for (low, high), r in zip(elastic_ranges(model), rows)]
    net = ElasticNetwork(base, [branch], model.groups.keys(), model.full_sizes.values(), (fraction,), ranges)
    return name_parameters_by_path(net), ranges


def _export_one_bucket(model, path, shape, backend, fraction):
    """Export :func:`_one_bucket` as ``export_elastic`` exports the full
    elastic network (inputs ``(x, sizes)``, its range recorded, the sampled
    weights stored without data)."""
    from inn_ms.elastic import is_runtime_state
    net, ranges = _one_bucket(model, fraction)
    groups = [{"name": g, "full": int(model.full_sizes[g]), "low": low, "high": high}
              for g, (low, high) in zip(model.groups, ranges)]
    widest = Tensor(np.array([high for _, high in ranges], np.int32))
    export_mindir(net, path, shape, backend=backend, extra_inputs=(widest,), input_names=["x", "sizes"],
                  info={"elastic": {"sizes_input": 1, "groups": groups}}, runtime_state=is_runtime_state)
    return [high for _, high in ranges]


def _share_weights(paths, folder, name="weights.bin"):
    """Move the Parameter data of the MindIR files ``paths`` into one file
    ``folder/name`` that every graph refers to (MindIR's ``external_data``,
    which ``ms.load`` reads relative to the graph's folder), each distinct
    Parameter stored once. Returns the size of the data file."""
    import hashlib
    from mindspore.train.mind_ir_pb2 import ModelProto
    blob = bytearray(b"\x01" + bytes(63))  # MindSpore's data-file header: a byte-order flag, then padding
    where = {}
    for path in paths:
        model = ModelProto()
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
        for p in model.graph.parameter:
            if not p.raw_data:
                continue
            key = (p.name[p.name.find(":") + 1:], hashlib.sha256(p.raw_data).digest())
            if key not in where:
                where[key] = (len(blob), len(p.raw_data))
                blob += p.raw_data + bytes(-len(p.raw_data) % 64)
            p.ClearField("raw_data")
            p.external_data.location = name
            p.external_data.offset, p.external_data.length = where[key]
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    with open(os.path.join(folder, name), "wb") as f:
        f.write(bytes(blob))
    return len(blob)


def export_bundle(model, folder, shape, backend, fractions):
    """One graph per bucket: each fraction's one-bucket elastic MindIR in
    ``folder``, the control weights they all read moved into one shared data
    file, and a manifest naming each file and the largest sizes it runs.
    Returns ``({fraction: (path, highs)}, bytes before sharing)``."""
    from inn_ms.export import check_input_shape
    saved = dict(model.sizes)
    try:
        model.resize(sizes=dict(model.full_sizes))
        check_input_shape(model.discretize(), shape)
    finally:
        model.resize(sizes=saved)
    os.makedirs(folder, exist_ok=True)
    files = {}
    for f in sorted(fractions):
        path = os.path.join(folder, f"bucket_{f:.2f}.mindir")
        files[f] = (path, _export_one_bucket(model, path, shape, backend, f))
    unshared = sum(os.path.getsize(p) for p, _ in files.values())
    _share_weights([p for p, _ in files.values()], folder)
    with open(os.path.join(folder, "manifest.json"), "w") as out:
        json.dump({"groups": list(model.groups), "data": "weights.bin",
                   "buckets": [{"fraction": f, "file": os.path.basename(p), "high": h}
                               for f, (p, h) in files.items()]}, out)
    return files, unshared


def _bucket_for(files, sizes):
    """The narrowest bundle file whose sizes hold ``sizes``."""
    for f in sorted(files):
        if all(int(n) <= h for n, h in zip(sizes, files[f][1])):
            return f
    raise ValueError(f"no bucket holds sizes {list(sizes)}")


class _SamplingOnly(nn.Cell):
    """A one-bucket elastic network's resampling step alone: sizes in, every
    sampled weight and bias out (what a device would run on a width change
    if sampling and inference were two graphs)."""

    def __init__(self, net):
        super().__init__()
        self.bucket = net.buckets[0]

    def construct(self, sizes):
        weights, biases = self.bucket._samples(sizes)
        return tuple(weights) + tuple(biases)


class _ForwardOnly(nn.Cell):
    """A one-bucket elastic network's forward pass on its kept samples alone
    (never written here: for export time and memory, not for outputs)."""

    def __init__(self, net):
        super().__init__()
        self.network = net.buckets[0].network

    def construct(self, x, sizes):
        return self.network(x)


def diagnose(model, folder, shape, backend):
    """Export the full-width bucket's two halves as graphs of their own.
    Returns ``{part: (path, (wall, CPU seconds))}`` and the bucket's widest sizes."""
    from inn_ms.elastic import is_runtime_state
    out = {}
    net, ranges = _one_bucket(model, 1.0)
    widest = Tensor(np.array([high for _, high in ranges], np.int32))
    for part, cell, extra, names in (("forward on kept samples", _ForwardOnly(net), (widest,), ["x", "sizes"]),
                                     ("resampling alone", _SamplingOnly(net), (), ["sizes"])):
        path = os.path.join(folder, f"diagnose_{part.split()[0]}.mindir")
        with _Clock() as clock:
            if extra:
                export_mindir(cell, path, shape, backend=backend, extra_inputs=extra, input_names=names,
                              runtime_state=is_runtime_state)
            else:  # the sizes are its only input
                with atomic_write(path) as tmp:
                    ms.export(cell, widest, file_name=tmp, file_format="MINDIR")
        out[part] = (path, clock.seconds)
    return out, [high for _, high in ranges]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--probe"]:
        path, batch, size, *sizes = argv[1:]
        return probe(path, int(batch), int(size), [int(v) for v in sizes] or None)
    if argv[:1] == ["--latency"]:
        return latency(json.loads(argv[1]))
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
    ap.add_argument("--fewer", nargs="*", default=["1", "0.5,1"],
                    help="fewer buckets in one graph, each a comma-separated list of fractions")
    ap.add_argument("--no-alternatives", dest="alternatives", action="store_false",
                    help="skip the fewer-bucket graphs, the one-graph-per-bucket bundle and the diagnosis")
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
          f"median of {args.repeats} (wall and CPU seconds):")
    for keep in args.keep:
        times = []
        for _ in range(args.repeats):
            with _Clock() as clock:
                plain, report = prune(model, keep=keep, input_shape=shape)
                path = os.path.join(folder, f"resnet18_{keep:.2f}.mindir")
                export_mindir(plain, path, shape, backend=args.backend)
            times.append(clock.seconds)
        exported[keep] = (path, report)
        export_times[keep] = tuple(statistics.median(t[k] for t in times) for k in range(2))
        print(f"  keep {keep:.2f}: {export_times[keep][0]:.2f} s, {export_times[keep][1]:.2f} s CPU  "
              f"({report['params']} parameters, "
              f"{report['macs'] / 1e6:.0f} M MACs per image, {os.path.getsize(path) / 1e6:.1f} MB)")

    with _Clock() as clock:
        elastic_path = export_elastic(model, os.path.join(folder, "resnet18_elastic.mindir"), shape,
                                      backend=args.backend, buckets=args.buckets)
    elastic_time = clock.seconds
    full_keep = max(exported)
    full_path = exported[full_keep][0]
    full_bytes, full_time = os.path.getsize(full_path), export_times[full_keep]
    label = f"{len(set(args.buckets) | {1.0})} buckets, one graph"
    # Every elastic variant: its files, export time, and which file runs a width.
    variants = {label: {"time": elastic_time, "bytes": os.path.getsize(elastic_path),
                        "file": lambda sizes, p=elastic_path: p}}
    print(f"  elastic (branches at {', '.join(f'{b:g}' for b in sorted(args.buckets))} of full width): "
          f"{_against(elastic_time, full_time)} the fixed full width; file "
          f"{variants[label]['bytes'] / 1e6:.1f} MB against {full_bytes / 1e6:.1f} MB "
          f"({variants[label]['bytes'] / full_bytes:.2f}x)")
    if args.alternatives:
        for spec in args.fewer:
            fractions = sorted({float(v) for v in spec.split(",")} | {1.0})
            name = f"{len(fractions)} bucket{'s' * (len(fractions) > 1)}, one graph"
            path = os.path.join(folder, f"resnet18_elastic_{len(fractions)}.mindir")
            with _Clock() as clock:
                export_elastic(model, path, shape, backend=args.backend, buckets=fractions)
            variants[name] = {"time": clock.seconds, "bytes": os.path.getsize(path),
                              "file": lambda sizes, p=path: p}
            print(f"  elastic (branches at {', '.join(f'{b:g}' for b in fractions)}): "
                  f"{_against(variants[name]['time'], full_time)}; file "
                  f"{variants[name]['bytes'] / 1e6:.1f} MB ({variants[name]['bytes'] / full_bytes:.2f}x)")
        bundle = os.path.join(folder, "resnet18_bundle")
        with _Clock() as clock:
            files, unshared = export_bundle(model, bundle, shape, args.backend, args.buckets)
        name = f"{len(files)} graphs, one per bucket"
        total = sum(os.path.getsize(os.path.join(bundle, f)) for f in os.listdir(bundle))
        variants[name] = {"time": clock.seconds, "bytes": total,
                          "file": lambda sizes, fs=files: fs[_bucket_for(fs, sizes)][0]}
        print(f"  one graph per bucket ({', '.join(f'{b:g}' for b in files)}), control weights in one shared "
              f"data file: {_against(variants[name]['time'], full_time)}; "
              f"{total / 1e6:.1f} MB in all ({total / full_bytes:.2f}x; {unshared / 1e6:.1f} MB, "
              f"{unshared / full_bytes:.2f}x, with the weights in every graph)")
        parts, widest = diagnose(model, folder, shape, args.backend)
        for part, (path, seconds) in parts.items():
            print(f"  the full-width bucket's {part}, a graph of its own: {_against(seconds, full_time)}")

    sizes = {keep: elastic_sizes(model, keep=keep) for keep in exported}
    peaks = {name: {} for name in variants}
    for batch in ([args.batch] if args.memory_batch is None else args.memory_batch):
        print(f"\npeak resident memory, batch {batch}, {args.size}x{args.size}: each MindIR loaded and run at "
              f"one width in a fresh process (MB above the process after imports; in brackets: x the fixed "
              f"full width):")
        full_mb = _peak(full_path, batch, args.size)
        for keep, (path, _) in exported.items():
            fixed_mb = full_mb if keep == full_keep else _peak(path, batch, args.size)
            row = []
            for name, v in variants.items():
                mb = _peak(v["file"](sizes[keep].asnumpy()), batch, args.size, sizes[keep].asnumpy())
                peaks[name][keep] = max(peaks[name].get(keep, 0.0), mb / full_mb)
                row.append(f"{name} {mb:5.0f} ({mb / full_mb:.2f}x)")
            print(f"  keep {keep:.2f}: fixed {fixed_mb:5.0f}   " + "   ".join(row))
        if args.alternatives:
            for part, (path, _) in parts.items():
                mb = _peak(path, batch, args.size, widest)
                print(f"  the full-width bucket's {part}, a graph of its own: {mb:5.0f} "
                      f"({mb / full_mb:.2f}x)")

    print(f"\nMindIR latency, batch {args.batch}, {args.size}x{args.size}, ms.load + nn.GraphCell: each "
          f"elastic variant in a fresh process beside the fixed exports (each process holds only those), "
          f"median of {args.rounds * args.runs} interleaved runs at an unchanged width (sampled weights kept), "
          f"and of {args.rounds} first calls after a width change; in brackets: x the fixed export of the "
          f"same width; the output checked against it (max relative difference):")
    full_macs = exported[full_keep][1]["macs"]
    worst = {}
    for name, v in variants.items():
        plan = {"batch": args.batch, "size": args.size, "rounds": args.rounds, "runs": args.runs,
                "widths": [[keep, path, v["file"](sizes[keep].asnumpy()), [int(n) for n in sizes[keep].asnumpy()]]
                           for keep, (path, _) in exported.items()]}
        cmd = [sys.executable, os.path.abspath(__file__), "--latency", json.dumps(plan)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        full_lat = result[str(full_keep)]["fixed"]
        print(f"  {name}:")
        worst[name] = 0.0
        for keep, _ in exported.items():
            r = result[str(keep)]
            worst[name] = max(worst[name], r["elastic"] / r["fixed"])
            print(f"    keep {keep:.2f}: fixed {r['fixed'] * 1e3:6.1f} ms (latency ratio {r['fixed'] / full_lat:.2f}, "
                  f"MAC ratio {exported[keep][1]['macs'] / full_macs:.2f})   elastic {r['elastic'] * 1e3:6.1f} ms "
                  f"({r['elastic'] / r['fixed']:.2f}x)   width change {r['switch'] * 1e3:6.1f} ms "
                  f"({r['switch'] / r['fixed']:.2f}x)   output {r['error']:.1e}")
    targets = (("file", 1.25), ("export CPU", 4.0), ("peak memory", 1.5), ("latency", 1.3))
    print(f"\nelastic variants against the fixed export (fixed full width: {full_bytes / 1e6:.1f} MB, "
          f"exported in {full_time[1]:.2f} s CPU); x the fixed full width, peak memory at the worst width, "
          f"latency x the fixed export of the same width at the worst width:")
    print(f"  {'variant':28s}" + "".join(f"{what + ' <= ' + format(t, 'g') + 'x':>22s}" for what, t in targets))
    for name, v in variants.items():
        values = (v["bytes"] / full_bytes, v["time"][1] / full_time[1],
                  max(peaks[name].values()) if peaks[name] else None, worst[name])
        cells = ["—" if value is None else f"{value:.2f}x {'MET' if value <= t else 'NOT MET'}"
                 for value, (_, t) in zip(values, targets)]
        print(f"  {name:28s}" + "".join(f"{c:>22s}" for c in cells))
    print(f"\nfiles in {folder}")

if __name__ == "__main__":
    main()
