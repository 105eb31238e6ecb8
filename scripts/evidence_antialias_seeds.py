"""Does training with antialiased resampling cost a random-width network
accuracy? The zoo's mnist_cnn trained from scratch with random widths over
several seeds, once sampling with the point rule and once with the
antialiased one; each network pruned with either rule at every keep ratio,
with and without calibration repair. Mean and spread over the seeds.

A seed fixes the initial weights, the width draws and the batch order, so
the two rules' networks of one seed differ only where the rules differ:
the paired difference (antialiased − point, per seed) is printed too.

Each training is written to ``--outdir`` (its weights and a JSON record)
as soon as it is done, and a run skips the ones already there: several
processes (or a run cut short) fill one table; asking for another repair
later evaluates the saved weights again without training; ``--summary``
prints the table from the files alone.

    python scripts/evidence_antialias_seeds.py --seeds 0 1 2
    python scripts/evidence_antialias_seeds.py --seeds 0 1 2 --summary
"""
import argparse
import gc
import glob
import json
import logging
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import mindspore as ms  # noqa: E402
from mindspore import nn  # noqa: E402

from inn_ms.data import mnist_subset  # noqa: E402
from inn_ms.fileio import write_json  # noqa: E402
from inn_ms.metrics import accuracy  # noqa: E402
from inn_ms.prune import prune  # noqa: E402
from inn_ms.repair import clear_cache  # noqa: E402
from inn_ms.resampling import RULES  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler, steps_per_batch  # noqa: E402
from model_zoo import create_model  # noqa: E402

KEEPS = [1.0, 0.75, 0.6, 0.5, 0.4, 0.3, 0.25]


def run_name(args, rule, seed, ext="json"):
    return os.path.join(args.outdir, f"{args.tag}_{rule}_seed{seed}.{ext}")


def trained_model(args, data, rule, seed):
    """The mnist_cnn trained sampling with ``rule`` from ``seed``, and the
    training record; loaded from its checkpoint in ``--outdir`` if there."""
    xtr, ytr, _, _ = data
    ms.set_seed(seed)
    model = create_model("mnist_cnn", control_ratio=0.5)
    model.set_resampling(rule)
    ckpt, record = run_name(args, rule, seed, "ckpt"), run_name(args, rule, seed)
    if os.path.exists(ckpt) and os.path.exists(record):
        ms.load_param_into_net(model.network, ms.load_checkpoint(ckpt), strict_load=True)
        with open(record) as f:
            old = json.load(f)
        return model, {k: old[k] for k in ("train_seconds", "losses")}
    sampler = WidthSampler(model, low=args.low, levels=args.levels)
    sandwich = False if args.sandwich == "none" else args.sandwich
    steps = (len(xtr) // args.batch) * steps_per_batch(sandwich)
    lr = nn.cosine_decay_lr(args.lr * 0.02, args.lr, steps * args.epochs, steps, args.epochs)
    trainer = RandomWidthTrainer(model, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                                 nn.Adam(model.trainable_params(), learning_rate=lr), sampler, seed=seed,
                                 sandwich=sandwich)
    t0 = time.time()
    losses = trainer.fit(xtr, ytr, epochs=args.epochs, batch_size=args.batch, progress=False)
    seconds = time.time() - t0
    ms.save_checkpoint(model.network, ckpt)
    return model, {"train_seconds": seconds, "losses": losses}


def train_and_prune(args, data, rule, seed):
    """One network trained sampling with ``rule``; accuracy pruned with every
    rule and repair at every keep ratio."""
    xtr, _, xte, yte = data
    model, record = trained_model(args, data, rule, seed)
    results = {}
    for pruned in RULES:
        for rep in args.repairs:
            results[f"{pruned}, {rep}"] = [
                accuracy(prune(model, keep=k, resampling=pruned, repair=rep,
                               calib=None if rep == "none" else xtr[:args.calib])[0], xte, yte) for k in args.keep]
    clear_cache(model)
    return {"trained": rule, "seed": seed, "keeps": list(args.keep), "results": results, **record}


def done(args, rule, seed):
    """Whether the record of this training has every requested repair."""
    path = run_name(args, rule, seed)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        run = json.load(f)
    return run["keeps"] == list(args.keep) and all(f"{p}, {r}" in run["results"] for p in RULES
                                                   for r in args.repairs)


def load_runs(args):
    runs = []
    for path in sorted(glob.glob(os.path.join(args.outdir, f"{args.tag}_*_seed*.json"))):
        with open(path) as f:
            run = json.load(f)
        if run["seed"] in args.seeds and run["keeps"] == list(args.keep):
            runs.append(run)
    return runs


def summary(args):
    """Mean ± sample standard deviation (and min–max) over the seeds, per
    trained rule × pruning rule × repair, and the paired differences."""
    runs = load_runs(args)
    if not runs:
        print(f"no runs in {args.outdir} for tag {args.tag!r} and seeds {args.seeds}")
        return {}
    by = {}
    for run in runs:
        for name, accs in run["results"].items():
            by.setdefault((run["trained"], name), {})[run["seed"]] = 100 * np.asarray(accs)
    seconds = {r: [run["train_seconds"] for run in runs if run["trained"] == r] for r in RULES}
    a = runs[0]["args"]
    print(f"\nmnist_cnn, random keep ratios in [{a['low']}, 1] ({a['levels']} levels), {a['epochs']} epochs, "
          f"Adam {a['lr']:g} cosine, sandwich {a['sandwich']}; {a['n_test']} test digits"
          + (f"; calibration on {a['calib']} unlabelled training digits" if "calib" in a["repairs"] else "")
          + ". Seconds per training (shared machine): " +
          ", ".join(f"{r} {min(s):.0f}–{max(s):.0f}" for r, s in seconds.items() if s))
    print("accuracy %, mean ± sample standard deviation over the seeds")
    head = "".join(f"{k:>11.3g}" for k in args.keep)
    print(f"{'trained: pruned, repair':<40}{'seeds':<10}{head}")
    table = {}
    for (trained, name), per_seed in sorted(by.items()):
        stack = np.stack([per_seed[s] for s in sorted(per_seed)])
        mean, sd = stack.mean(0), (stack.std(0, ddof=1) if len(stack) > 1 else np.zeros(stack.shape[1]))
        print(f"{trained + '-trained: ' + name:<40}{','.join(map(str, sorted(per_seed))):<10}"
              + "".join(f"{f'{m:.1f}±{d:.1f}':>11}" for m, d in zip(mean, sd)))
        table[f"{trained}-trained: {name}"] = {"seeds": sorted(per_seed), "mean": mean.tolist(), "std": sd.tolist(),
                                               "min": stack.min(0).tolist(), "max": stack.max(0).tolist()}
    print("\neach seed, trained and pruned with one rule:")
    for rule in RULES:
        for (trained, name), per_seed in sorted(by.items()):
            if trained == rule and name.startswith(f"{rule}, "):
                for s in sorted(per_seed):
                    print(f"{f'{trained}, {name.split(chr(44) + chr(32))[1]}':<40}{s:<10}"
                          + "".join(f"{a:>11.1f}" for a in per_seed[s]))
    print("\npaired difference, antialiased-trained − point-trained, each pruned with its own rule "
          "(same seed: same initial weights, width draws, batches); mean ± std")
    for rep in sorted({name.split(", ")[1] for _, name in by}):
        p, q = by.get(("point", f"point, {rep}"), {}), by.get(("antialiased", f"antialiased, {rep}"), {})
        seeds = sorted(set(p) & set(q))
        if not seeds:
            continue
        diff = np.stack([q[s] - p[s] for s in seeds])
        sd = diff.std(0, ddof=1) if len(seeds) > 1 else np.zeros(diff.shape[1])
        print(f"{'repair ' + rep:<40}{','.join(map(str, seeds)):<10}"
              + "".join(f"{f'{m:+.1f}±{d:.1f}':>11}" for m, d in zip(diff.mean(0), sd)))
        table[f"difference, {rep}"] = {"seeds": seeds, "mean": diff.mean(0).tolist(), "std": sd.tolist()}
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES), help="rules to train with")
    ap.add_argument("--keep", type=float, nargs="+", default=KEEPS)
    ap.add_argument("--repairs", nargs="+", choices=["none", "calib"], default=["none", "calib"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=5e-3, help="peak Adam rate, cosine to 2 %% of it")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--low", type=float, default=0.4, help="smallest keep ratio trained")
    ap.add_argument("--levels", type=int, default=25, help="keep ratios trained, evenly in [low, 1]")
    ap.add_argument("--sandwich", choices=["none", "full", "both"], default="none")
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--tag", default="default", help="names this recipe's files in --outdir")
    ap.add_argument("--outdir", default=os.path.join(ROOT, "outputs", "antialias_seeds"))
    ap.add_argument("--summary", action="store_true", help="print the table from --outdir, train nothing")
    args = ap.parse_args(argv)
    if not args.summary:
        logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("inn_ms.train").setLevel(logging.INFO)  # a line per epoch, with its time
        ms.set_context(mode=ms.GRAPH_MODE)
        data = mnist_subset(4000, args.n_test, seed=0)
        os.makedirs(args.outdir, exist_ok=True)
        for seed in args.seeds:
            for rule in args.rules:
                path = run_name(args, rule, seed)
                if done(args, rule, seed):
                    continue
                run = train_and_prune(args, data, rule, seed)
                if os.path.exists(path):  # keep the repairs evaluated before
                    with open(path) as f:
                        run["results"] = {**json.load(f)["results"], **run["results"]}
                run["args"] = {k: v for k, v in vars(args).items() if k not in ("seeds", "rules", "summary")}
                write_json(path, run, indent=1, default=float)
                gc.collect()  # each training compiles its own graphs: return their memory
                ms.ms_memory_recycle()
                print(f"{rule}-trained seed {seed}: {run['train_seconds']:.0f} s, full width "
                      f"{100 * run['results'][f'{rule}, none'][0]:.1f} %", flush=True)
    summary(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
