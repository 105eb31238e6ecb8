"""Latency tables measured where the network will run, through the MindIR runtime.

A table holds, for every convolution and dense layer of an integral model,
the measured time of that layer alone, exported as a one-layer MindIR and
run with ``ms.load`` + ``nn.GraphCell`` (the runtime a deployed network
uses: DESIGN.md §8; on Ascend the same code), at every combination of the
candidate sizes of the groups it touches (its input and output channels).
Each entry has the runtime's own per-call overhead (timed on a trivial
MindIR) taken off, since a deployed network pays it once, not per layer.
The rest of the network (pooling, activations, normalisation, that one
overhead) is measured twice, on the whole MindIR at full width and at the
smallest candidate sizes (its time minus the sum of its layers' entries),
and interpolated linearly in the network's activation volume (the output
elements of its layers), which is what element-wise ops and pooling scale
with. So the prediction is exact at both ends by construction, and
:func:`check_table` says how far off it is in between. A time is never
negative: on a loaded machine a layer can time faster than the trivial
MindIR, or the layers' sum exceed the whole network; such a term counts as
zero in a prediction (the table keeps the raw values, and building it logs
a warning, since its predictions then lean high).

Layers timed alone are not quite the network (caches, threads), so a table
can instead be measured with ``fit=K``: the whole network is also timed at
K random candidate sizes, interleaved with its two ends, and the
prediction is the least-squares line in the layers' sum and the activation
volume over those K + 2 points (exact nowhere, closest on average).

Each time is the median (or the minimum) over ``repeats`` runs of
``number`` calls (after ``warmup`` calls) with their interquartile range, for one input of the
table's shape (a fixed batch: what a device runs). Candidate sizes respect
each group's allowed range and ``multiple_of`` (:func:`candidate_sizes`),
and a prediction is refused for a size the table did not measure.
"""
import logging
import platform
import time
from collections import OrderedDict

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn
from tqdm.auto import tqdm

from inn_ms.cells import get_cell, run_shapes
from inn_ms.export import export_mindir
from inn_ms.fileio import write_json
from inn_ms.layers.base import IntegralLayer
from inn_ms.partition import CompositePartition, size_step
from inn_ms.prune import check_shape

logger = logging.getLogger(__name__)

FORMAT = "inn_ms-latency-table"
VERSION = 1


def candidate_sizes(model, multiple_of=1, count=5):
    """``{group: [sizes, ascending]}``: up to ``count`` sizes per group
    spread evenly over its allowed range, each a multiple of
    ``multiple_of`` (the top of the range is kept when it is the group's full
    size, as :meth:`~inn_ms.model.IntegralModel.sizes_for_keep` keeps it).
    A group with no such size is refused."""
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, (int, np.integer)) or multiple_of < 1:
        raise ValueError(f"multiple_of must be an int >= 1, got {multiple_of!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    out = OrderedDict()
    for name, p in model.groups.items():
        low, high = model.allowed_range(name)
        step = int(np.lcm(int(multiple_of), size_step(p)))  # a group of blocks: multiples of its blocks too
        sizes = [n for n in range(-(-low // step) * step, high + 1, step)]
        if high == p.full_size and high not in sizes:
            sizes.append(high)
        if not sizes:
            raise ValueError(f"group {name!r}: no size in its allowed range [{low}, {high}] is a multiple of "
                             f"{step}")
        if len(sizes) > count:
            picks = np.unique(np.round(np.linspace(0, len(sizes) - 1, count)).astype(int))
            sizes = [sizes[i] for i in picks]
        out[name] = sizes
    return out


def layer_groups(model):
    """``{layer path: [input group or None, output group or None]}`` for
    every integral layer of ``model`` (paths as in its plain network). A
    layer after a concatenation is refused: its input channels are several
    groups' and a table does not yet cover them."""
    by_id = {id(p): name for name, p in model.groups.items()}
    out = OrderedDict()
    for path, cell in model.network.cells_and_names():
        if not isinstance(cell, IntegralLayer):
            continue
        parts = cell.partitions
        if any(isinstance(p, CompositePartition) for p in parts.values()):
            raise ValueError(f"latency table: layer {path!r} reads a concatenation of groups, which tables do "
                             f"not support yet")
        if any(size_step(p) > 1 for p in parts.values()):
            raise ValueError(f"latency table: layer {path!r} is on channels in blocks (a grouped convolution's), "
                             f"which tables do not support yet")
        out[path] = [by_id.get(id(parts["in"])) if "in" in parts else None,
                     by_id.get(id(parts["out"])) if "out" in parts else None]
    return out


STATISTICS = ("median", "min")


def time_mindirs(paths, x, warmup=3, repeats=15, number=5, statistic="median"):
    """``[(time, iqr)]`` seconds per call of each MindIR of ``paths`` on the
    numpy input ``x``, run with ``ms.load`` + ``nn.GraphCell``: the median
    (or with ``statistic="min"`` the fastest, less sensitive to other jobs
    on a shared machine) of the timed runs, and their interquartile range.
    The networks are timed interleaved: each repeat runs every one in turn
    (the order rotated from repeat to repeat), so a burst of load from
    another job falls on all of them alike and their ratio holds better
    than between timings taken one after the other."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    cells = [nn.GraphCell(ms.load(p)) for p in paths]
    t = Tensor(x)
    for cell in cells:
        for _ in range(max(warmup, 1)):  # the first call compiles
            cell(t).asnumpy()
    times = [[] for _ in cells]
    for r in range(repeats):
        for k in range(len(cells)):
            i = (k + r) % len(cells)
            t0 = time.perf_counter()
            for _ in range(number):
                y = cells[i](t)
            y.asnumpy()  # waits for the last call (and so for every call before it)
            times[i].append((time.perf_counter() - t0) / number)
    out = []
    for ts in times:
        q1, med, q3 = np.percentile(ts, [25, 50, 75])
        out.append((float(med if statistic == "median" else min(ts)), float(q3 - q1)))
    return out


def time_mindir(path, x, warmup=3, repeats=15, number=5, statistic="median"):
    """``(time, iqr)`` of the one MindIR at ``path`` (:func:`time_mindirs`)."""
    return time_mindirs([path], x, warmup, repeats, number, statistic)[0]


def _key(sizes):
    return "x".join(str(int(n)) for n in sizes)


def _layer_input(shape, plain_layer):
    """The input shape of ``plain_layer`` (a Conv2d or Dense) given the one it
    had in the full network: the channel axis set to the layer's own input
    channel count (or features, for a dense layer)."""
    w = plain_layer.weight.shape
    channels = int(w[1]) * int(getattr(plain_layer, "group", 1) or 1)
    return (shape[0], channels) + tuple(shape[2:])


def measure_table(model, input_shape, folder, multiple_of=1, count=5, candidates=None, backend="native",
                  warmup=3, repeats=15, number=5, statistic="median", seed=0, fit=0, progress=False):
    """Measure a latency table of ``model`` for inputs of ``input_shape``
    (its batch is the batch timed); one-layer MindIRs are written in
    ``folder`` (a scratch directory). ``candidates``: ``{group: sizes}``
    (default :func:`candidate_sizes`), checked against the allowed ranges.
    ``statistic``: what each time is, ``"median"`` or ``"min"`` (:func:`time_mindir`).
    ``fit``: also time the whole network at this many random candidate
    sizes, interleaved with its two ends, and predict by the least-squares
    fit over them (:func:`_fit_prediction`) rather than the exact ends.
    The model is left at the sizes it had. Returns the table (a JSON-ready
    dict; :func:`save_table` writes it)."""
    import os
    shape = check_shape(input_shape)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    if min(warmup, repeats, number) < 1:
        raise ValueError(f"warmup, repeats and number must be >= 1, got {warmup}, {repeats}, {number}")
    cands = candidate_sizes(model, multiple_of, count) if candidates is None else \
        check_candidates(model, candidates)
    layers = layer_groups(model)
    rng = np.random.default_rng(seed)
    x_full = rng.standard_normal(shape).astype(np.float32)
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    with model.at_sizes(model.full_sizes):
        plain = model.discretize()
        shapes = run_shapes(plain, x_full[:1], list(layers))
    missing = [p for p in layers if p not in shapes]
    if missing:
        raise ValueError(f"latency table: layer(s) {missing} do not run in the forward pass")
    jobs = []
    for path, groups in layers.items():
        axes = [cands[g] if g is not None else [None] for g in groups]
        for n_in in axes[0]:
            for n_out in axes[1]:
                jobs.append((path, groups, n_in, n_out))
    entries = OrderedDict((p, {"groups": g, "entries": OrderedDict()}) for p, g in layers.items())
    scratch = os.path.join(folder, "layer.mindir")
    for path, groups, n_in, n_out in tqdm(jobs, desc="latency table", disable=not progress):
        sizes = {g: n for g, n in zip(groups, (n_in, n_out)) if g is not None}
        with model.at_sizes(sizes):
            layer = get_cell(model.network, path).discretize()
        layer_shape = _layer_input(shapes[path][0], layer)
        x = rng.standard_normal((shape[0],) + layer_shape[1:]).astype(np.float32)
        export_mindir(layer, scratch, x.shape, dynamic_batch=False, backend=backend)
        med, iqr = time_mindir(scratch, x, warmup, repeats, number, statistic)
        entries[path]["entries"][_key([n for n in (n_in, n_out) if n is not None])] = [med, iqr]
    overhead = _overhead(folder, shape[0], warmup, repeats, number, statistic)
    whole = os.path.join(folder, "whole.mindir")
    ends = {}
    for end, sizes in (("full", model.full_sizes), ("smallest", {g: s[0] for g, s in cands.items()})):
        with model.at_sizes(sizes):
            net = model.discretize()
        export_mindir(net, whole, shape, dynamic_batch=False, backend=backend)
        # the rest hangs on these two: timed three times as long as an entry
        ends[end] = time_mindir(whole, x_full, warmup, 3 * repeats, number, statistic)
    full_med, full_iqr = ends["full"]
    table = {"format": FORMAT, "version": VERSION, "input_shape": list(shape), "backend": backend,
             "multiple_of": int(multiple_of),
             "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "mindspore": ms.__version__, "device_target": ms.get_context("device_target")},
             "timing": {"warmup": warmup, "repeats": repeats, "number": number, "statistic": statistic},
             "groups": OrderedDict((g, [int(n) for n in s]) for g, s in cands.items()),
             "layers": entries, "overhead": overhead, "full": [full_med, full_iqr],
             "smallest": list(ends["smallest"]),
             "volume": OrderedDict((p, [layers[p][1], int(np.prod(shapes[p][1][2:]))]) for p in layers)}
    smallest = {g: s[0] for g, s in cands.items()}
    table["rest"] = [ends["smallest"][0] - _layer_sum(table, smallest), full_med - _layer_sum(table, model.full_sizes)]
    if min(table["rest"]) < 0:
        logger.warning("latency table: the whole network timed %.3g / %.3g ms less than its layers' sum (smallest / "
                       "full width): the timings are noisy, and predictions count that remainder as zero",
                       -1e3 * table["rest"][0], -1e3 * table["rest"][1])
    if fit:
        table["fit"] = _fit_prediction(model, table, folder, fit, rng)
    table["seconds"] = time.perf_counter() - t0
    logger.info("latency table: %d layer timings in %.1f s; full width %.3g ms", len(jobs), table["seconds"],
                1e3 * full_med)
    return table


def check_candidates(model, candidates):
    out = OrderedDict()
    for name in model.groups:
        sizes = sorted({int(n) for n in candidates.get(name, [model.full_sizes[name]])})
        low, high = model.allowed_range(name)
        bad = [n for n in sizes if not low <= n <= high]
        if bad:
            raise ValueError(f"candidate size(s) {bad} of group {name!r} outside its allowed range [{low}, {high}]")
        out[name] = sizes
    unknown = [g for g in candidates if g not in model.groups]
    if unknown:
        raise ValueError(f"candidates name unknown group(s) {unknown}; groups are {list(model.groups)}")
    return out


def _full_sizes(table, sizes):
    """``sizes`` with every group the table knows and does not name at its
    largest candidate; unknown groups and unmeasured sizes are refused."""
    groups = table["groups"]
    unknown = [g for g in sizes if g not in groups]
    if unknown:
        raise ValueError(f"latency table has no group(s) {unknown}; its groups are {list(groups)}")
    out = {g: int(sizes.get(g, max(s))) for g, s in groups.items()}
    for g, n in out.items():
        if n not in groups[g]:
            raise ValueError(f"size {n} of group {g!r} was not measured; the table has {groups[g]}")
    return out


def _layer_sum(table, sizes):
    """Sum of the layers' entries at ``sizes``, each less the call overhead."""
    sizes = _full_sizes(table, sizes)
    total = 0.0
    for path, layer in table["layers"].items():
        key = _key([sizes[g] for g in layer["groups"] if g is not None])
        total += max(0.0, layer["entries"][key][0] - table["overhead"])
    return total


def _volume(table, sizes):
    """Output elements per sample of the layers with a group as output, at ``sizes``."""
    return sum(positions * sizes[g] for g, positions in table["volume"].values() if g is not None)


def _fit_prediction(model, table, folder, count, rng):
    """Whole-network timings at ``count`` random candidate sizes and the two
    ends, interleaved (:func:`measure_networks`), and the least-squares fit
    ``t = a * layers + b * volume + c`` over them (``layers``: the sum of
    the layers' entries, ``volume``: the activation volume). Layers timed
    alone are not the network (caches, threads and the runtime's scheduling
    differ inside one graph); the fit lets the layers' sum count by a
    factor ``a`` instead of exactly once. Whether it predicts better than
    the two ends depends on the machine: ``check_table`` says. A fit whose
    ``a`` is not positive (timings too noisy) is not used: ``a = 1`` and the
    line in volume fitted to the remainder.
    Returns ``{"coef": [a, b, c], "points": [{sizes, measured, layers, volume}]}``."""
    groups = table["groups"]
    points = [{g: s[0] for g, s in groups.items()}, {g: max(s) for g, s in groups.items()}]
    points += [{g: int(s[rng.integers(len(s))]) for g, s in groups.items()} for _ in range(count)]
    times = [t for t, _ in measure_networks(model, points, table, folder)]
    layers = np.array([_layer_sum(table, p) for p in points])
    volume = np.array([float(_volume(table, p)) for p in points])
    t = np.array(times)
    coef = np.linalg.lstsq(np.stack([layers, volume, np.ones_like(t)], 1), t, rcond=None)[0]
    if not coef[0] > 0:
        b, c = np.linalg.lstsq(np.stack([volume, np.ones_like(t)], 1), t - layers, rcond=None)[0]
        coef = np.array([1.0, b, c])
    return {"coef": [float(v) for v in coef],
            "points": [{"sizes": p, "measured": m, "layers": float(l), "volume": float(v)}
                       for p, m, l, v in zip(points, times, layers, volume)]}


def predict(table, sizes):
    """Predicted seconds per call of the plain network at ``sizes``
    (``{group: size}``; groups not named at their largest candidate): the
    sum of its layers' entries plus the rest, interpolated in activation
    volume between its two measured ends; or, for a table measured with
    ``fit``, the fitted line in those two (never below the smallest
    whole-network time the fit saw, half of it)."""
    sizes = _full_sizes(table, sizes)
    if table.get("fit"):
        a, b, c = table["fit"]["coef"]
        floor = 0.5 * min(p["measured"] for p in table["fit"]["points"])
        return max(floor, a * _layer_sum(table, sizes) + b * _volume(table, sizes) + c)
    low = _volume(table, {g: s[0] for g, s in table["groups"].items()})
    high = _volume(table, {g: max(s) for g, s in table["groups"].items()})
    t = 1.0 if high == low else (_volume(table, sizes) - low) / (high - low)
    low_rest, high_rest = (max(0.0, r) for r in table["rest"])
    return _layer_sum(table, sizes) + low_rest + t * (high_rest - low_rest)


class _Trivial(nn.Cell):
    def construct(self, x):
        return x * 1.0


def _overhead(folder, batch, warmup, repeats, number, statistic):
    """Seconds per call of a MindIR that does (almost) nothing: the runtime's
    own cost of a call."""
    import os
    path = os.path.join(folder, "trivial.mindir")
    export_mindir(_Trivial(), path, (batch, 1), dynamic_batch=False)
    return time_mindir(path, np.zeros((batch, 1), np.float32), warmup, repeats, number, statistic)[0]


def measure_networks(model, sizes_list, table, folder, progress=False):
    """``[(time, iqr)]`` seconds per call of the plain network at each of
    ``sizes_list`` (any allowed sizes, measured by the table or not),
    exported and timed as ``table`` was (its input shape, backend and
    timing), interleaved (:func:`time_mindirs`): compare them with each
    other rather than with timings taken at another moment."""
    import os
    shape = tuple(table["input_shape"])
    t = table["timing"]
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, sizes in enumerate(tqdm(sizes_list, desc="export", disable=not progress)):
        paths.append(os.path.join(folder, f"network_{i}.mindir"))
        with model.at_sizes(sizes):
            plain = model.discretize()
        export_mindir(plain, paths[-1], shape, dynamic_batch=False, backend=table["backend"])
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    return time_mindirs(paths, x, t["warmup"], t["repeats"], t["number"], t.get("statistic", "median"))


def measure_network(model, sizes, table, folder):
    """``(time, iqr)`` of the plain network at ``sizes`` (:func:`measure_networks`)."""
    return measure_networks(model, [sizes], table, folder)[0]


def check_table(model, table, sizes_list, folder, progress=False):
    """Export the plain network at each of ``sizes_list`` as one MindIR, time
    them as the table was timed (interleaved) and compare with
    :func:`predict`: a list of ``{"sizes", "predicted", "measured", "iqr",
    "error"}`` (error relative to the measured time)."""
    full = [_full_sizes(table, sizes) for sizes in sizes_list]
    measured = measure_networks(model, full, table, folder, progress) if full else []
    rows = []
    for sizes, (med, iqr) in zip(full, measured):
        predicted = predict(table, sizes)
        rows.append({"sizes": sizes, "predicted": predicted, "measured": med, "iqr": iqr,
                     "error": (predicted - med) / med})
    return rows


def check_for(model, table):
    """Refuse a table measured for another network: same groups and every
    layer's groups."""
    if set(table["groups"]) != set(model.groups):
        raise ValueError(f"latency table groups {list(table['groups'])} are not the model's {list(model.groups)}")
    layers = layer_groups(model)
    if {p: list(t["groups"]) for p, t in table["layers"].items()} != {p: list(g) for p, g in layers.items()}:
        raise ValueError("latency table was measured for another network (its layers differ from the model's)")
    for g, sizes in table["groups"].items():
        low, high = model.allowed_range(g)
        if not all(low <= n <= high for n in sizes):
            raise ValueError(f"latency table sizes {sizes} of group {g!r} are outside its allowed range "
                             f"[{low}, {high}]")
    return table


def save_table(table, path):
    """Write ``table`` as JSON (atomically)."""
    return write_json(path, table)


def load_table(path):
    """A table written by :func:`save_table`, its structure checked."""
    import json
    try:
        with open(path) as f:
            table = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a latency table (invalid JSON: {e})") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise ValueError(f"{path}: not a latency table (format is not {FORMAT!r})")
    if table.get("version") != VERSION:
        raise ValueError(f"{path}: latency table version {table.get('version')!r}, this inn_ms reads {VERSION}")
    try:
        groups, layers = table["groups"], table["layers"]
        rest = [float(v) for v in table["rest"]]
        float(table["overhead"])
        if len(rest) != 2:
            raise ValueError("rest must be two numbers")
        for p, (g, positions) in table["volume"].items():
            if p not in layers or (g is not None and g not in groups) or int(positions) < 1:
                raise ValueError(f"bad volume entry for layer {p!r}")
        for g, sizes in groups.items():
            if not sizes or not all(isinstance(n, int) and n >= 1 for n in sizes):
                raise ValueError(f"group {g!r} has bad sizes {sizes!r}")
        for p, layer in layers.items():
            for g in layer["groups"]:
                if g is not None and g not in groups:
                    raise ValueError(f"layer {p!r} names unknown group {g!r}")
            for k, v in layer["entries"].items():
                if len(v) != 2 or not all(isinstance(t, (int, float)) and np.isfinite(t) for t in v):
                    raise ValueError(f"layer {p!r} entry {k!r} is not [median, iqr]")
        check_shape(table["input_shape"])
        if table.get("fit") is not None:
            coef = [float(v) for v in table["fit"]["coef"]]
            if len(coef) != 3 or not all(np.isfinite(coef)) or not table["fit"]["points"] or \
                    not all(float(p["measured"]) > 0 for p in table["fit"]["points"]):
                raise ValueError("fit must have three finite coefficients and positive measured points")
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"{path}: malformed latency table ({e})") from None
    return table


__all__ = ["candidate_sizes", "check_candidates", "check_for", "check_table", "layer_groups", "load_table",
           "measure_network", "measure_networks", "measure_table", "predict", "save_table",
           "time_mindir", "time_mindirs"]
