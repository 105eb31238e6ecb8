"""Evidence for pruning without fine-tuning: resampling rules, repairs and
baselines side by side, every number from this one run.

1. ``cnn`` — the main job's PyTorch CNN, converted: INN (point and
   antialiased resampling), pipeline B, channel folding, L1 and random
   selection, each with no repair, data-free repair (images synthesized from
   the BatchNorm statistics) and calibration repair (unlabelled training
   digits), at several keep ratios.
2. ``mnist_cnn`` — the zoo's mnist_cnn trained from scratch with random
   widths (the recipe of ``scripts/demo_mnist.py``), once sampling with the
   point rule and once with the antialiased one: each pruned with either
   rule at every width, with and without calibration repair.
3. ``sr`` — SRCNN x3 trained as a plain (discrete) network, full width only,
   converted, resampled to smaller widths: PSNR for point, antialiased and
   repaired (on upscaled low-resolution training patches) against bicubic.

    python scripts/evidence_prune.py                    # all parts
    python scripts/evidence_prune.py --parts cnn        # one part
"""
import argparse
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import mindspore as ms  # noqa: E402
from mindspore import nn  # noqa: E402

from inn_ms.baselines import folding_merges, l1_indices, random_indices  # noqa: E402
from inn_ms.convert import convert  # noqa: E402
from inn_ms.partition_tuning import tune_partitions  # noqa: E402
from inn_ms.data import mnist_subset  # noqa: E402
from inn_ms.prune import prune  # noqa: E402
from inn_ms.fileio import write_json  # noqa: E402
from inn_ms.repair import calibration_images, group_maps, output_maps, repair  # noqa: E402
from inn_ms.metrics import accuracy  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler  # noqa: E402
from model_zoo import create_model  # noqa: E402

REPAIRS = ("none", "datafree", "calib")


def cnn_part(args, data):
    """Accuracy of every method x repair at every keep ratio (the main job's CNN)."""
    xtr, ytr, xte, yte = data
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    model = convert(net, (2, 1, 28, 28))
    t0 = time.time()
    images = {"none": None, "calib": xtr[:args.calib],
              "datafree": calibration_images(model, "datafree", count=args.calib, input_shape=(1, 1, 28, 28),
                                             seed=args.seed)}
    t_synth = time.time() - t0
    results = {}

    def score(name, keep, plain, maps, rep, reference=None):
        if images[rep] is not None:
            repair(model if reference is None else reference, plain, images[rep], maps=maps)
        results.setdefault(name, {}).setdefault(rep, {})[keep] = accuracy(plain, xte, yte)

    for keep in args.keep:
        sizes = model.sizes_for_keep(keep)
        for rep in REPAIRS:
            for rule in ("point", "antialiased"):
                model.set_resampling(rule)
                model.resize(sizes=dict(sizes))
                plain, maps = model.discretize(), output_maps(model)
                model.resize(sizes=dict(model.full_sizes))
                model.set_resampling("point")
                score(f"INN {rule}", keep, plain, maps, rep)
            merges = folding_merges(model, sizes, seed=args.seed)
            score("folding", keep, model.merge_channels(merges), group_maps(model, {g: p for g, (p, _) in
                                                                                    merges.items()}), rep)
            idx = l1_indices(model, sizes)
            score("L1", keep, model.select_channels(idx), group_maps(model, idx), rep)
            idx = random_indices(model, sizes, seed=args.seed)
            score("random", keep, model.select_channels(idx), group_maps(model, idx), rep)
        if args.b_epochs > 0:
            tuned = convert(net, (2, 1, 28, 28), verify=False)
            tuned.resize(sizes=dict(sizes))
            tune_partitions(tuned, xtr[:1000], ytr[:1000], dict(sizes), epochs=args.b_epochs, lr=3e-3,
                            batch_size=64)
            for rep in REPAIRS:
                score("INN + pipeline B", keep, tuned.discretize(), output_maps(tuned), rep, reference=model)
        print(f"  keep {keep}: done ({time.time() - t0:.0f} s)", flush=True)
    print(f"\n1. The main job's CNN (98.40 % at full width), {len(xte)} test digits; repairs on "
          f"{args.calib} images (data-free: synthesized in {t_synth:.0f} s; calibration: unlabelled training "
          f"digits). Accuracy at keep ratio:")
    head = "".join(f"{k:>8.3g}" for k in args.keep)
    print(f"{'method':<20} {'repair':<9}{head}")
    for name, by_rep in results.items():
        for rep, by_keep in by_rep.items():
            print(f"{name:<20} {rep:<9}" + "".join(f"{100 * by_keep[k]:>8.1f}" for k in args.keep))
    return {"results": results, "synthesis_seconds": t_synth}


def mnist_cnn_part(args, data):
    """The zoo's mnist_cnn trained with random widths, once sampling with each
    rule: point against antialiased resampling at every width, with and
    without calibration repair."""
    xtr, ytr, xte, yte = data
    keeps = [1.0, 0.75, 0.6, 0.5, 0.4, 0.3, 0.25]
    results, seconds = {}, {}
    for trained in ("point", "antialiased"):
        ms.set_seed(args.seed)
        model = create_model("mnist_cnn", control_ratio=0.5)
        model.set_resampling(trained)
        steps = len(xtr) // 64
        lr = nn.cosine_decay_lr(5e-3 * 0.02, 5e-3, steps * args.mnist_epochs, steps, args.mnist_epochs)
        trainer = RandomWidthTrainer(model, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                                     nn.Adam(model.trainable_params(), learning_rate=lr),
                                     WidthSampler(model, low=0.4, levels=25), seed=args.seed)
        t0 = time.time()
        trainer.fit(xtr, ytr, epochs=args.mnist_epochs, batch_size=64, progress=False)
        seconds[trained] = time.time() - t0
        for rule in ("point", "antialiased"):
            for rep in ("none", "calib"):
                results[f"{trained}-trained: {rule}, {rep}"] = [
                    accuracy(prune(model, keep=k, resampling=rule, repair=rep,
                                   calib=None if rep == "none" else xtr[:args.calib])[0], xte, yte) for k in keeps]
    print(f"\n2. The zoo's mnist_cnn trained from scratch with random keep ratios in [0.4, 1] (25 levels, "
          f"{args.mnist_epochs} epochs; control grids of half the channels), sampled in training with the "
          f"point rule ({seconds['point']:.0f} s) or the antialiased one ({seconds['antialiased']:.0f} s), "
          f"then pruned with either rule. Accuracy at keep:")
    print(f"{'trained: pruned, repair':<40}" + "".join(f"{k:>7.3g}" for k in keeps))
    for name, accs in results.items():
        print(f"{name:<40}" + "".join(f"{100 * a:>7.1f}" for a in accs))
    return {"keeps": keeps, "results": results, "train_seconds": seconds}


def sr_part(args):
    """SRCNN x3 trained as a discrete network, converted and resampled."""
    from inn_ms.data.sr import random_patches, sr_photos
    from inn_ms.tasks import evaluate_super_resolution as evaluate_sr
    train_pairs, test_pairs = sr_photos(3)
    rng = np.random.default_rng(args.seed)
    x, y = random_patches(train_pairs, args.sr_steps * 16, 33, 3, rng)
    net = create_model("srcnn", integral=False, widths=(64, 32), offset=0.5, last_scale=0.01)
    lr = nn.cosine_decay_lr(3e-4, 3e-3, args.sr_steps, 1, 1)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), nn.Adam(net.trainable_params(), learning_rate=lr))
    step.set_train(True)
    t0 = time.time()
    for i in range(args.sr_steps):
        step(ms.Tensor(x[i * 16:(i + 1) * 16]), ms.Tensor(y[i * 16:(i + 1) * 16]))
    t_train = time.time() - t0
    net.set_train(False)
    model = convert(net, (1, 1, 33, 33))
    calib, _ = random_patches(train_pairs, args.calib, 33, 3, np.random.default_rng(args.seed + 1))
    keeps = [1.0, 0.75, 0.5]
    results = {}
    for label, options in (("point", {"resampling": "point"}), ("antialiased", {"resampling": "antialiased"}),
                           ("point + repair", {"resampling": "point", "repair": "calib", "calib": calib}),
                           ("antialiased + repair", {"resampling": "antialiased", "repair": "calib",
                                                     "calib": calib})):
        rows = evaluate_sr(model, test_pairs, 3, keeps, bicubic=not results, **options)
        if not results:
            results["bicubic"] = rows.pop(0)["psnr"]
        results[label] = [r["psnr"] for r in rows]
    full = results["point"][0]
    print(f"\n3. SRCNN x3 9-1-5 (64, 32), trained as a plain network at full width ({args.sr_steps} steps, "
          f"{t_train:.0f} s), converted; held-out photos, PSNR dB on Y (bicubic {results['bicubic']:.2f}); "
          f"repair on {args.calib} upscaled LR training patches:")
    print(f"{'resampling':<24}" + "".join(f"{f'keep {k:g}':>16}" for k in keeps))
    for label, psnrs in results.items():
        if label == "bicubic":
            continue
        print(f"{label:<24}" + "".join(f"{p:>8.2f} ({p - full:+.2f})" for p in psnrs))
    return {"keeps": keeps, "psnr": results, "train_seconds": t_train}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=["cnn", "mnist_cnn", "sr"], default=["cnn", "mnist_cnn", "sr"])
    ap.add_argument("--keep", type=float, nargs="+", default=[0.75, 0.5, 0.375, 0.25])
    ap.add_argument("--calib", type=int, default=128, help="calibration images (synthesized and real)")
    ap.add_argument("--b-epochs", type=int, default=2, help="pipeline B epochs on 1,000 digits (0: skip)")
    ap.add_argument("--mnist-epochs", type=int, default=30, help="mnist_cnn random-width training epochs")
    ap.add_argument("--sr-steps", type=int, default=2000, help="SRCNN training batches of 16 patches")
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "outputs", "evidence_prune.json"))
    args = ap.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(args.seed)
    t0 = time.time()
    xtr, ytr, xte, yte = mnist_subset(4000, args.n_test, seed=0)
    data = (xtr, ytr, xte, yte)
    out = {"args": vars(args)}
    if "cnn" in args.parts:
        out["cnn"] = cnn_part(args, data)
    if "mnist_cnn" in args.parts:
        out["mnist_cnn"] = mnist_cnn_part(args, data)
    if "sr" in args.parts:
        out["sr"] = sr_part(args)
    out["seconds"] = time.time() - t0
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    write_json(args.out, out, indent=1, default=float)
    print(f"\nwhole run {out['seconds']:.0f} s; results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
