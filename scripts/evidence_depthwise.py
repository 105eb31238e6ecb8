"""Why the depthwise network (the zoo's mnist_mobilenet) loses more at
keep 0.5 than the other networks under pipeline A's recipe: two cheap
measurements on one trained network.

1. Fit or generalisation: accuracy at every trained keep ratio on the
   training digits the network learned from and on the test digits, after
   the calibration repair. A width that is also poor on its own training
   digits is underfitted (capacity or optimisation), not overfitted.
2. Which group: each channel group alone at keep 0.5 (the others at full
   width), calibrated: where the loss at 0.5 comes from.

The network is trained with ``scripts/evidence_pipeline_a.py``'s recipe
(its defaults; the same options) and its weights saved in ``--outdir``, so
a second run measures again without training.

    python scripts/evidence_depthwise.py
"""
import argparse
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import mindspore as ms  # noqa: E402

import evidence_pipeline_a as pipeline_a  # noqa: E402
from inn_ms.convert import convert  # noqa: E402
from inn_ms.data import mnist_subset  # noqa: E402
from inn_ms.fileio import write_json  # noqa: E402
from inn_ms.metrics import accuracy  # noqa: E402
from inn_ms.prune import prune  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="mobilenet", choices=pipeline_a.NETS)
    ap.add_argument("--outdir", default=os.path.join(ROOT, "outputs", "depthwise"))
    ap.add_argument("--n-train-eval", type=int, default=1000, help="training digits the accuracy is measured on")
    args, rest = ap.parse_known_args(argv)
    recipe = pipeline_a.recipe_args(rest)  # the recipe's options and defaults
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(recipe.seed)
    xtr, ytr, xte, yte = mnist_subset(4000, 1000, seed=0)
    model = convert(pipeline_a.build(args.net), (2, 1, 28, 28), fold_bn=recipe.fold_bn)
    model.set_resampling(recipe.rule)
    os.makedirs(args.outdir, exist_ok=True)
    ckpt = os.path.join(args.outdir, f"{args.net}_e{recipe.epochs}_lr{recipe.lr:g}_seed{recipe.seed}.ckpt")
    if os.path.exists(ckpt):
        ms.load_param_into_net(model.network, ms.load_checkpoint(ckpt), strict_load=True)
        losses, seconds = None, None
    else:
        t0 = time.time()
        losses = pipeline_a.train(model, xtr, ytr, recipe)
        seconds = time.time() - t0
        ms.save_checkpoint(model.network, ckpt)
        print(f"trained {seconds:.0f} s; loss per epoch " + " ".join(f"{x:.4f}" for x in losses), flush=True)
    calib = xtr[:recipe.calib]
    xfit, yfit = xtr[:args.n_train_eval], ytr[:args.n_train_eval]
    fit = {}
    print(f"\n1. {args.net}, calibrated on {recipe.calib} training digits; accuracy % at keep")
    print(f"{'digits':<28}" + "".join(f"{k:>7.3g}" for k in recipe.keep))
    for label, (x, y) in ((f"training (first {len(xfit)})", (xfit, yfit)), ("test", (xte, yte))):
        fit[label] = [accuracy(prune(model, keep=k, repair="calib", calib=calib)[0], x, y) for k in recipe.keep]
        print(f"{label:<28}" + "".join(f"{100 * a:>7.1f}" for a in fit[label]), flush=True)
    half = model.sizes_for_keep(0.5)
    alone = {}
    print(f"\n2. each group alone at keep 0.5, the others full, calibrated; test accuracy % "
          f"(full width {100 * fit['test'][0]:.1f})")
    for group, full in model.full_sizes.items():
        alone[group] = accuracy(prune(model, sizes={group: half[group]}, repair="calib", calib=calib)[0], xte, yte)
        print(f"{group:<40}{full:>5} -> {half[group]:<5}{100 * alone[group]:>7.1f}", flush=True)
    write_json(os.path.join(args.outdir, f"{args.net}.json"),
               {"recipe": vars(recipe), "losses": losses, "train_seconds": seconds, "fit": fit,
                "group_alone_at_half": alone}, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
