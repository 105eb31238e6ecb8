"""Why the depthwise network (mnist_mobilenet) loses most at keep 0.5 under pipeline A.

The zoo's depthwise network loses more at narrow widths than the other
networks under pipeline A's recipe; two measurements on one trained network
and one capacity reference say why.

1. Fit or generalisation: accuracy at every trained keep ratio on the
   training digits the network learned from and on the test digits, after
   the calibration repair. A width that is also poor on its own training
   digits is underfitted (capacity or optimisation), not overfitted.
2. Which group: each channel group alone at keep 0.5 (the others at full
   width), calibrated: where the loss at 0.5 comes from.
3. Capacity (``--capacity``): the PyTorch network itself
   (``scripts/make_torch_zoo.py``'s MobileNet and training: 8 epochs, Adam
   3e-3 one-cycle, same digits) trained from scratch at full and at half
   width (every channel count halved: the network keep 0.5 prunes to), a
   few seeds: how good a half-width network of this shape can be at all.

The network is trained with ``scripts/evidence_pipeline_a.py``'s recipe
(its defaults; the same options) and its weights saved in ``--outdir``, so
a second run measures again without training. Every other option is
pipeline A's (``--lr``, ``--rule``, ``--calib`` ...), so one recipe change
at a time is one command.

    python scripts/evidence_depthwise.py                   # parts 1 and 2
    python scripts/evidence_depthwise.py --lr 1e-3 --no-groups   # part 1 for another recipe
    python scripts/evidence_depthwise.py --capacity 3      # part 3 only, 3 seeds
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


def recipe_tag(recipe):
    """A file-name tag of every option that changes the trained weights."""
    tag = (f"e{recipe.epochs}_lr{recipe.lr:g}_wd{recipe.wd:g}_b{recipe.batch_size}_low{recipe.low:g}"
           f"_l{recipe.levels}_{recipe.sandwich}_{recipe.rule}_seed{recipe.seed}")
    return tag + "".join(f"_{flag}" for flag in ("fold_bn", "distill") if getattr(recipe, flag)) + (
        f"_shrink{recipe.shrink:g}" if recipe.shrink else "")


def capacity(seeds, widths=(1.0, 0.5)):
    """Part 3: test and training-digit accuracy of the PyTorch MobileNet
    trained from scratch at each width multiplier, per seed."""
    import contextlib
    import io

    import torch
    import make_torch_zoo
    from make_torch_checkpoint import accuracy as torch_accuracy

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in mnist_subset(4000, 1000, seed=0))
    ytr, yte = ytr.long(), yte.long()
    out = {}
    print(f"3. PyTorch MobileNet from scratch (make_torch_zoo's training); accuracy % per seed "
          f"(test / first 1000 training digits)")
    for width in widths:
        rows = []
        for seed in range(seeds):
            with contextlib.redirect_stdout(io.StringIO()):  # its per-epoch lines
                net, n_params, _ = make_torch_zoo.train("mobilenet", xtr, ytr, xte, yte, seed=seed, width=width)
            rows.append((torch_accuracy(net, xte, yte), torch_accuracy(net, xtr[:1000], ytr[:1000])))
        out[width] = {"params": n_params, "test": [r[0] for r in rows], "train": [r[1] for r in rows]}
        print(f"width {width:<4g} {n_params:>6} params  test " + " ".join(f"{100 * r[0]:.1f}" for r in rows)
              + "  train " + " ".join(f"{100 * r[1]:.1f}" for r in rows), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="mobilenet", choices=pipeline_a.NETS)
    ap.add_argument("--outdir", default=os.path.join(ROOT, "outputs", "depthwise"))
    ap.add_argument("--n-train-eval", type=int, default=1000, help="training digits the accuracy is measured on")
    ap.add_argument("--no-groups", dest="groups", action="store_false", help="skip part 2 (each group alone)")
    ap.add_argument("--capacity", type=int, metavar="SEEDS", help="part 3 only, over this many seeds")
    args, rest = ap.parse_known_args(argv)
    recipe = pipeline_a.recipe_args(rest)  # the recipe's options and defaults
    if args.capacity:
        os.makedirs(args.outdir, exist_ok=True)
        write_json(os.path.join(args.outdir, "capacity.json"), capacity(args.capacity), indent=1)
        return 0
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(recipe.seed)
    xtr, ytr, xte, yte = mnist_subset(4000, 1000, seed=0)
    model = convert(pipeline_a.build(args.net), (2, 1, 28, 28), fold_bn=recipe.fold_bn)
    model.set_resampling(recipe.rule)
    os.makedirs(args.outdir, exist_ok=True)
    ckpt = os.path.join(args.outdir, f"{args.net}_{recipe_tag(recipe)}.ckpt")
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
    nets = [prune(model, keep=k, repair="calib", calib=calib, calib_count=len(calib))[0] for k in recipe.keep]
    for label, (x, y) in ((f"training (first {len(xfit)})", (xfit, yfit)), ("test", (xte, yte))):
        fit[label] = [accuracy(net, x, y) for net in nets]
        print(f"{label:<28}" + "".join(f"{100 * a:>7.1f}" for a in fit[label]), flush=True)
    half = model.sizes_for_keep(0.5)
    alone = {}
    groups = model.full_sizes if args.groups else {}
    if groups:
        print(f"\n2. each group alone at keep 0.5, the others full, calibrated; test accuracy % "
              f"(full width {100 * fit['test'][0]:.1f})")
    for group, full in groups.items():
        alone[group] = accuracy(prune(model, sizes={group: half[group]}, repair="calib", calib=calib,
                                      calib_count=len(calib))[0], xte, yte)
        print(f"{group:<40}{full:>5} -> {half[group]:<5}{100 * alone[group]:>7.1f}", flush=True)
    write_json(os.path.join(args.outdir, f"{args.net}_{recipe_tag(recipe)}_calib{recipe.calib}.json"),
               {"recipe": vars(recipe), "losses": losses, "train_seconds": seconds, "fit": fit,
                "group_alone_at_half": alone}, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
