"""Benchmark: which mindcv models convert, exactly, and how much of each
shrinks, tried as a user would: one fresh process per model, a time limit.

Per model (random weights, ``pretrained=False``, ``--classes`` classes; a
1x3x64x64 input, or, for a model that does not run at 64x64, the size in
its name, else 224, 160 or 256, the first that runs):
- BatchNorm statistics are set from one batch of random inputs first:
  mindcv's random init passes almost nothing to the head (mobilenet_v1_025's
  output is its head's bias, 1e-15 of signal), and an exactness check on
  such an output says nothing (``live``: how much the output moves between
  two random inputs, before (``live_init``) and after);
- ``convert`` with its own check run on its own, to report ``exact``: the
  largest relative difference of the integral and the discretized network
  against the original (``check_conversion``; above its tolerance the row
  is the library's refusal);
- ``groups``: continuous / all; ``touched``: the share of the original's
  parameters in layers on at least one continuous group (a folded
  BatchNorm counts with its layer); ``kept``: parameters of the discretized
  network with every continuous group resized to ``--keep``, over those at
  full size; whether the resized integral network and its discretized
  network run; wall time;
- for a refusal or a failure, its reason in one line (the library's
  message, a time-out or a crash); ``pins``: why groups stay discrete, and
  for a refused model or one under 90 % touched, the cause pinning the most
  groups. The totals end with the causes ordered by how many models each
  blocks.

Default set (``DEFAULT``): the smallest variant of each mindcv family (the
name up to its size: ``regnet_x``, ``mobilenet_v3``, ``vit``, ...) and the
second smallest for the common CNN families; ``--all``: every model mindcv
lists; ``--models``: names or globs (``'regnet*,resnet18'``).

    python scripts/bench/coverage.py [--models 'resnet*'] [--all] [--timeout 120] [--json OUT] [--table OUT]
"""
import argparse
import fnmatch
import json
import re
import time
from collections import Counter

from procmem import run_child

DEFAULT = """
BiT_resnet50 cait_xxs24_224 cmt_tiny coat_lite_tiny coat_tiny convit_tiny convnext_tiny convnextv2_atto
crossvit_9 densenet121 dpn92 edgenext_xx_small efficientnet_b0 efficientnet_b1 efficientnet_v2_s ghostnet_050
ghostnet_100 googlenet halonet_50t hrnet_w32 inception_v3 mae_b_16_224_finetune mixnet_s mlp_mixer_s_p32
mnasnet_050 mnasnet_100 mobilenet_v1_025 mobilenet_v1_100 mobilenet_v2_035_96 mobilenet_v2_100
mobilenet_v3_small_075 mobilenet_v3_large_100 mobilevit_xx_small nasnet_a_4x1056 pit_ti pnasnet poolformer_s12
pvt_tiny pvt_v2_b0 regnet_x_200mf regnet_x_400mf regnet_y_200mf regnet_y_400mf repmlp_t224 repvgg_a0
repvgg_b1g2 res2net50 resnest14 resnet18 resnet50 resnetv2_50 resnext50_32x4d rexnet_09 senet154 seresnet18
seresnext26_32x4d shufflenet_v1_g3_05 shufflenet_v2_x0_5 skresnet18 squeezenet1_0 swin_tiny swinv2_tiny_window8
vgg11 visformer_tiny vit_b_32_224 volo_d1 xception xcit_tiny_12_p16_224
""".split()

CHILD = r"""
import json, re, sys, time
from collections import Counter
import numpy as np
import mindcv
import mindspore as ms
from mindspore import Tensor, ops
from mindspore.nn.layer.normalization import _BatchNorm
from inn_ms.cells import get_cell
from inn_ms.convert import convert
from inn_ms.convert.convert import check_conversion, rounding_floor
from inn_ms.graph.channels import find_channel_groups
from inn_ms.model import count_parameters
from inn_ms.runner import eager_in_order

eager_in_order("CPU")  # as inn-ms convert does
ms.set_context(mode=ms.PYNATIVE_MODE)
name, classes, keep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
row, start = {"model": name, "stage": "create"}, time.perf_counter()


def one_line(e):
    # The library's refusals (ValueError and its subclasses) as they read; others with their type; the first
    # line that says something (MindSpore's errors start with a rule of dashes).
    lines = [v.strip() for v in str(e).splitlines() if re.search(r"[A-Za-z]", v) and not v.strip().startswith("-")]
    text = (lines or [""])[0].rstrip(":")
    return (text if isinstance(e, ValueError) and text else f"{type(e).__name__}: {text}")[:300]


def sizes():
    yield 64
    named = [int(v) for v in re.findall(r"_(\d{3})(?:_|$)", name) if int(v) >= 96]
    yield from (named[-1:] or [224]) + [160, 256]


def pinned(groups):
    # Why groups stay discrete: [reason, groups it pins], most frequent first (network input and output,
    # discrete in every network, left out).
    pins = Counter(r for g in groups.groups.values() if not g.continuous for r in g.reasons
                   if r not in ("network input", "network output"))
    return [[r, n] for r, n in pins.most_common(30)]


def live(a, b):
    # How much the output moves between two random inputs, relative to its largest magnitude: ~0 when the
    # output is the head's bias alone (then "exact" says nothing).
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))


def calibrate(net, size):
    # BatchNorm statistics from one batch of random inputs (moving = batch statistics), so that the signal
    # reaches the head as in a trained network; mindcv's random init passes almost nothing through.
    bns = [c for _, c in net.cells_and_names() if isinstance(c, _BatchNorm)]
    ops_before = [c.bn_train for c in bns]
    for c in bns:
        c.bn_train = ops.BatchNorm(is_training=True, epsilon=c.eps, momentum=1.0, data_format=c.format)
    try:
        net.set_train(True)
        net(Tensor(np.random.default_rng(1).normal(size=(4, 3, size, size)).astype(np.float32)))
    finally:
        net.set_train(False)
        for c, op in zip(bns, ops_before):
            c.bn_train = op
    return len(bns)


def touched_share(net, groups, folded):
    # Parameters of the original in layers on at least one continuous group.
    continuous = set(groups.continuous)
    hit = {p for p, u in groups.layers.items()
           if u.out in continuous or any(g in continuous for g, _, _ in u.inputs)}
    hit |= {bn for bn, layer in folded.items() if layer in hit}
    return sum(count_parameters(get_cell(net, p)) for p in hit) / count_parameters(net)


try:
    net = mindcv.create_model(name, pretrained=False, num_classes=classes)
    net.set_train(False)
    row["params"] = count_parameters(net)
    row["stage"] = "run the original"
    failures = []
    for size in sizes():
        x = Tensor(np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32))
        try:
            net(x)
            break
        except Exception as e:
            failures.append(f"at {size}: {one_line(e)}")
    else:
        raise RuntimeError(f"{failures[0]}; {failures[1]}; fails at every size tried")
    row["input"] = size
    row["stage"] = "calibrate"
    x2 = Tensor(np.random.default_rng(2).normal(size=x.shape).astype(np.float32))
    row["live_init"] = live(net(x).asnumpy(), net(x2).asnumpy())
    try:
        row["bn"] = calibrate(net, size)
    except Exception as e:  # e.g. inception_v3's auxiliary head, run in training mode only, needs 299x299
        row["calibrate"] = one_line(e)
    row["live"] = live(net(x).asnumpy(), net(x2).asnumpy())
    row["stage"] = "convert"
    try:
        model = convert(net, (1, 3, size, size), verify=False)
    except ValueError as e:
        if "no channel group can be continuous" in str(e):  # which groups, and why: the same trace again
            groups = find_channel_groups(net, x)
            row["groups"], row["pins"] = [0, len(groups.groups)], pinned(groups)
        raise
    groups = model.conversion["groups"]
    row["groups"] = [len(groups.continuous), len(groups.groups)]
    row["touched"] = touched_share(net, groups, model.conversion["plan"]["folded"])
    row["pins"] = pinned(groups)
    row["stage"] = "check"
    row["exact"] = check_conversion(net, model, (1, 3, size, size))
    if row["exact"] > 1e-5:  # accepted within FLOOR_FACTOR x this: how far one float32 step moves the output
        row["floor"] = rounding_floor(net, x)
    row["converts"] = True
    row["stage"] = "resize"
    full = count_parameters(model.discretize())
    model.resize(keep=keep)
    model(x).asnumpy()
    row["stage"] = "discretize"
    plain = model.discretize()
    plain(x).asnumpy()
    row["kept"] = count_parameters(plain) / full
    row["resized"] = True
    row["stage"] = "done"
except Exception as e:
    row["error"] = one_line(e)
row["seconds"] = time.perf_counter() - start
print(json.dumps(row))
"""


def select(patterns, every):
    """mindcv's names matching the comma-separated names or globs, in mindcv's order."""
    if not patterns:
        return list(every)
    chosen = []
    for pattern in patterns.split(","):
        hits = [n for n in every if fnmatch.fnmatchcase(n, pattern.strip())]
        if not hits:
            raise SystemExit(f"coverage: no mindcv model matches {pattern!r}")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def measure(name, timeout, classes=10, keep=0.5):
    """One model's row, measured in a fresh process (a time-out or a crash is the row's error)."""
    start = time.perf_counter()
    r = run_child(CHILD, name, classes, keep, timeout=timeout)
    if "model" not in r:  # no row: the process timed out or died
        r = {"model": name, "stage": "process", "error": r["error"], "seconds": time.perf_counter() - start}
    return r


def cause(reason):
    """A pin reason or an error without its layer names and op scopes, so
    that reasons of one kind count together (``grouped layer
    stages.0.f.b (Conv2d, groups=3)`` → ``grouped convolution``)."""
    m = re.match(r"(?:used|made) by op (\w+)", reason)
    if m:
        return f"op {m[1]} (not followed)"
    m = re.match(r"op (\w+) (.*?) \(", reason)
    if m:
        return f"op {m[1]} {m[2]}"
    m = re.match(r"(\w+) layer \S+ \(", reason)
    if m:
        return "grouped convolution" if m[1] == "grouped" else f"{m[1]} layer"
    m = re.match(r"(convolution|dense layer|BatchNorm) \S+ is a (\w+)", reason)
    if m:
        return f"{m[1]} Cell {m[2]}"
    if re.match(r"layer \S+ is called on differently shaped", reason):
        return "a layer called on differently shaped channels"
    if reason.startswith("timed out"):
        return "timed out"
    return re.sub(r"\s*\(.*?\)", "", reason).split(":")[0] if "Error" not in reason else reason[:90]


def shrinks(r, keep=0.5):
    """Whether nearly all of ``r``'s model shrinks: >= 90 % of its parameters on a continuous group, and at
    most 1.2 keep^2 of them kept (keep^2 when both axes of every layer shrink)."""
    return r.get("touched", 0) >= 0.9 and r.get("kept", 1) <= 1.2 * keep ** 2


def blocked(r, keep=0.5):
    """Whether ``r``'s model is refused, fails, or does not nearly all shrink (:func:`shrinks`)."""
    return not r.get("resized") or not shrinks(r, keep)


def main_cause(r):
    """What blocks ``r``'s model most: the reason pinning the most groups, else its error."""
    if r.get("pins"):
        counts = Counter()
        for reason, n in r["pins"]:
            counts[cause(reason)] += n
        return counts.most_common(1)[0][0]
    return cause(r["error"]) if r.get("error") else "parameters in no traced layer (e.g. a head run in training only)"


def _fmt(r, keep):
    ok = lambda key: "yes" if r.get(key) else "no"
    groups = "{}/{}".format(*r["groups"]) if "groups" in r else "-"
    touched = f"{100 * r['touched']:.0f}%" if "touched" in r else "-"
    kept = f"{100 * r['kept']:.0f}%" if "kept" in r else "-"
    exact = f"{r['exact']:.1e}" if "exact" in r else "-"
    if "exact" in r and r.get("live", 1) < 1e-3:
        exact = "nosignal"  # the output hardly depends on the input: the check says nothing
    size = str(r.get("input", "-"))
    line = (f"{r['model']:22s} {size:>4s} {ok('converts'):>4s} {exact:>8s} {groups:>8s} {touched:>6s} {kept:>5s} "
            f"{ok('resized'):>4s} {r['seconds']:6.1f}")
    why = r.get("error") and f"{r['stage']}: {r['error']}"
    if r.get("calibrate"):
        why = (why + "; " if why else "") + "BatchNorm statistics not set: " + r["calibrate"]
    if r.get("pins") and blocked(r, keep):
        why = (why + "; " if why else "") + "pinned most by: " + main_cause(r)
    return line + (f"  {why}" if why else "")


def report(rows, keep):
    """The totals, and what blocks the blocked models, most frequent first."""
    converted = [r for r in rows if r.get("converts")]
    print(f"\ntried {len(rows)}; convert exactly {len(converted)}; resize + discretize at {keep} and run "
          f"{sum(bool(r.get('resized')) for r in rows)}; touched share >= 90 % "
          f"{sum(r.get('touched', 0) >= 0.9 for r in converted)}; and keep <= {1.2 * keep ** 2:.0%} of the "
          f"parameters (both axes of nearly every layer shrink) {sum(shrinks(r, keep) for r in converted)}")
    causes = Counter(main_cause(r) for r in rows if blocked(r, keep))
    if causes:
        print("\nwhat blocks the others (refused, failed, or not nearly all shrinking), by models:")
        for what, n in causes.most_common():
            names = [r["model"] for r in rows if blocked(r, keep) and main_cause(r) == what]
            print(f"{n:4d}  {what}: {', '.join(names)}")


def _header(n, args):
    print(f"{n} mindcv models, random weights, {args.classes} classes, keep {args.keep}, "
          f"time limit {args.timeout:.0f} s each")
    print(f"{'model':22s} {'in':>4s} {'conv':>4s} {'exact':>8s} {'groups':>8s} {'touch':>6s} {'kept':>5s} "
          f"{'rsz':>4s} {'sec':>6s}  reason")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="names or globs, comma-separated (default: DEFAULT in this script)")
    parser.add_argument("--all", action="store_true", help="every model mindcv lists")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per model (default 120)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--table", help="print the table of an earlier run's --json file instead")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            rows = json.load(f)
        _header(len(rows), args)
        for r in rows:
            print(_fmt(r, args.keep))
        report(rows, args.keep)
        return rows
    import mindcv
    every = mindcv.list_models()
    names = select(args.models, every) if args.models else (list(every) if args.all else
                                                            [n for n in DEFAULT if n in every])
    _header(len(names), args)
    rows = []
    for name in names:
        r = measure(name, args.timeout, args.classes, args.keep)
        rows.append(r)
        print(_fmt(r, args.keep), flush=True)
    report(rows, args.keep)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
