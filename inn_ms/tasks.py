"""Tasks: what a config run trains on and measures, one class per task.

A :class:`Task` owns everything that differs between classification and
super resolution: the data (training source, evaluation set), the loss, how
an epoch's batches are read, the evaluation at several widths (rows of
metrics), what a training epoch records, and the table and plot of an
evaluation. The runner and the CLI take the task a config names
(:func:`task_for`) and decide nothing per task themselves, so a new task is
one class here.
"""
import contextlib
import logging
import os

import mindspore as ms
import numpy as np
from mindspore import nn

from inn_ms.builders import find_builder
from inn_ms.data import build_source
from inn_ms.fileio import atomic_write
from inn_ms.layers import IntegralConv2d
from inn_ms.metrics import psnr, ssim, topk_correct
from inn_ms.model import count_parameters
from inn_ms.prune import prune

logger = logging.getLogger(__name__)


def network_at(model, keep, multiple_of=1, resampling=None, repair="none", calib=None, calib_count=128,
               input_shape=None):
    """What evaluation runs at ``keep``: the integral model itself resized,
    or, with a resampling rule or a repair (:func:`inn_ms.prune.prune`),
    the pruned plain network. The model is left resized to ``keep``."""
    model.resize(keep=keep, multiple_of=multiple_of)
    if resampling is None and repair == "none":
        return model
    plain, _ = prune(model, keep=keep, multiple_of=multiple_of, resampling=resampling, repair=repair, calib=calib,
                     calib_count=calib_count, input_shape=input_shape)
    return plain


def _width_row(model, keep, full):
    """The columns every evaluation row has: keep ratio, sizes, parameters
    of the discretized network and the fraction of them removed."""
    params = count_parameters(model.discretize())
    return {"keep": float(keep), "sizes": dict(model.sizes), "params": params, "compression": 1 - params / full}


# -- classification ----------------------------------------------------------

def evaluate_classifier(model, source, widths=(1.0,), batch_size=256, multiple_of=1, progress=False, **repair):
    """Top-1 and top-5 accuracy of ``model`` on ``source`` at every keep
    ratio in ``widths``, with the parameter count of the discretized network.
    ``repair``: ``resampling``, ``repair``, ``calib``, ``calib_count`` of
    :func:`network_at`. The model is left at full width."""
    from mindspore import Tensor
    from tqdm.auto import tqdm
    rows = []
    full = model.full_parameters()
    model.resize(sizes=dict(model.full_sizes))
    with model.at_sizes():
        for keep in widths:
            net = network_at(model, keep, multiple_of, input_shape=(1,) + tuple(source.input_shape), **repair)
            net.set_train(False)
            top1 = top5 = n = 0
            for x, y in tqdm(source.batches(range(source.size), batch_size, drop_remainder=False),
                             desc=f"eval keep {keep:g}", disable=not progress, leave=False):
                logits = net(Tensor(x)).asnumpy()
                top1 += topk_correct(logits, y, 1)
                top5 += topk_correct(logits, y, 5)
                n += len(y)
            rows.append({**_width_row(model, keep, full), "top1": top1 / n, "top5": top5 / n, "samples": n})
    return rows


def classification_table(rows):
    """Text lines of an :func:`evaluate_classifier` table."""
    lines = [f"{'keep':>6} {'params':>10} {'compr.':>7} {'top-1':>8} {'top-5':>8}  channels per group"]
    for r in rows:
        lines.append(f"{r['keep']:>6.2f} {r['params']:>10d} {r['compression']:>7.1%} {r['top1']:>8.2%} "
                     f"{r['top5']:>8.2%}  {','.join(str(v) for v in r['sizes'].values())}")
    return lines


# -- super resolution --------------------------------------------------------

def receptive_radius(net):
    """An upper bound of ``net``'s receptive-field radius in input pixels:
    how far an output pixel can see. Every convolution adds
    ``dilation·(k−1)/2`` along the network's longest path, and no path is
    longer than all of them in a row; a stride multiplies what follows, so
    every term is scaled by the product of all strides. Convolutions after
    an upsampler count in high-resolution pixels, a fraction of an input
    pixel each, so counting them whole only overestimates. The tile
    overlap that makes :func:`super_resolve` equal one whole-image pass."""
    terms, stride = [], 1
    for _, cell in net.cells_and_names():
        if isinstance(cell, (nn.Conv2d, IntegralConv2d)):
            k, d, st = cell.kernel_size, cell.dilation, cell.stride
            k, d, st = [(v, v) if isinstance(v, int) else tuple(v)[-2:] for v in (k, d, st)]
            reach = max(d[0] * (k[0] - 1), d[1] * (k[1] - 1))
            terms.append(-(-reach // 2))  # rounded up: an even kernel reaches further on one side
            stride *= max(st)
    if not terms:
        raise ValueError(f"receptive_radius: {type(net).__name__} has no convolution")
    return sum(terms) * stride


def super_resolve(net, image, tile=96, margin=None, out_scale=1):
    """Run ``net`` (a Cell mapping ``(1, 1, h, w)`` to ``(1, 1, h·out_scale,
    w·out_scale)``) on a 2-D image in overlapping tiles, and return the
    2-D float64 result clipped to [0, 1].

    Tiles keep memory small (unfold + matmul convolutions of whole photos
    need gigabytes); ``tile=None`` runs the whole image at once. Tiles
    overlap by ``margin`` input pixels and only their centres are kept;
    with ``margin`` at least the network's receptive-field radius (the
    default None takes :func:`receptive_radius`), the result equals running
    the whole image at once.
    """
    from mindspore import Tensor

    x = np.asarray(image, np.float32)
    h, w = x.shape
    tile = tile or max(h, w)
    margin = receptive_radius(net) if margin is None else margin
    if margin < 0:
        raise ValueError(f"super_resolve: margin must be >= 0 input pixels, got {margin}")
    out = np.zeros((h * out_scale, w * out_scale))
    s = out_scale
    for i in range(0, h, tile):
        for j in range(0, w, tile):
            i0, j0 = max(0, i - margin), max(0, j - margin)
            i1, j1 = min(h, i + tile + margin), min(w, j + tile + margin)
            y = net(Tensor(x[None, None, i0:i1, j0:j1])).asnumpy()[0, 0]
            ti, tj = min(tile, h - i), min(tile, w - j)
            out[i * s:(i + ti) * s, j * s:(j + tj) * s] = \
                y[(i - i0) * s:(i - i0 + ti) * s, (j - j0) * s:(j - j0 + tj) * s]
    return np.clip(out, 0.0, 1.0)


def image_quality(pairs, scale, net=None, upscaled=True, tile=96, margin=None):
    """Mean PSNR (dB) and SSIM on Y over photo ``pairs`` (``[(name, hr, lr,
    up)]``, :mod:`inn_ms.data.sr`), border ``scale``: of ``net`` (SRCNN-style
    input with ``upscaled=True``, LR input otherwise, run in tiles: see
    :func:`super_resolve`) or, with ``net=None``, of the bicubic upscaling
    itself. Returns ``{"psnr", "ssim", "per_image"}``."""
    rows = []
    for name, hr, lr, up in pairs:
        if net is None:
            pred = up
        elif upscaled:
            pred = super_resolve(net, up, tile, margin)
        else:
            pred = super_resolve(net, lr, tile, margin, out_scale=scale)
        rows.append((name, psnr(pred, hr, scale), ssim(pred, hr, scale)))
    return {"psnr": float(np.mean([r[1] for r in rows])), "ssim": float(np.mean([r[2] for r in rows])),
            "per_image": {r[0]: {"psnr": r[1], "ssim": r[2]} for r in rows}}


@contextlib.contextmanager
def execution_mode(mode):
    """MindSpore's execution ``mode`` (``ms.GRAPH_MODE``/``ms.PYNATIVE_MODE``)
    inside the block, the previous mode restored after."""
    saved = ms.get_context("mode")
    ms.set_context(mode=mode)
    try:
        yield
    finally:
        ms.set_context(mode=saved)


def _pynative():
    """PyNative mode inside the block (whole-image inference: one shape per
    tile, nothing worth compiling)."""
    return execution_mode(ms.PYNATIVE_MODE)


def evaluate_super_resolution(model, pairs, scale, widths=(1.0,), upscaled=True, tile=96, margin=None,
                              multiple_of=1, bicubic=True, progress=False, **repair):
    """PSNR (dB) and SSIM on Y (border ``scale``) of ``model`` on the image
    ``pairs`` (``[(name, hr, lr, up)]``, :mod:`inn_ms.data.sr`) at every keep
    ratio in ``widths``, each with the parameter count of the discretized
    network; with ``bicubic``, first a row for bicubic upscaling (the
    baseline: ``keep``, ``params`` and ``compression`` None). Rows carry the
    mean ``psnr``/``ssim`` and ``per_image``. The model runs in PyNative
    mode, in tiles overlapping by ``margin`` input pixels (None: the
    receptive-field radius, :func:`receptive_radius`, so tiles change
    nothing); it is left at full width. ``repair``: as in
    :func:`evaluate_classifier` (a datafree repair needs ``input_shape`` in it)."""
    from tqdm.auto import tqdm
    rows = []
    if bicubic:
        rows.append({"label": "bicubic", "keep": None, "sizes": None, "params": None, "compression": None,
                     **image_quality(pairs, scale)})
    full = model.full_parameters()
    model.resize(sizes=dict(model.full_sizes))
    with model.at_sizes(), _pynative():
        for keep in tqdm(widths, desc="eval widths", disable=not progress, leave=False):
            net = network_at(model, keep, multiple_of, **repair)
            net.set_train(False)
            r = image_quality(pairs, scale, net, upscaled, tile, margin)
            rows.append({"label": f"INN keep {keep:.2f}", **_width_row(model, keep, full), **r})
    return rows


def sr_table(rows, per_image=True):
    """Text lines of an :func:`evaluate_super_resolution` table: channels
    per group, parameters, compression, PSNR/SSIM per image (``per_image``)
    and their mean, and the PSNR difference to the full width (the first
    ``keep`` 1 row) if there is one."""
    names = list(rows[0]["per_image"]) if per_image else []
    full = next((r["psnr"] for r in rows if r["keep"] == 1.0), None)
    lines = [f"{'':16} {'channels':>10} {'params':>9} {'compr.':>7} " + " ".join(f"{n[:16]:>16}" for n in names)
             + f" {'mean PSNR / SSIM':>16}" + ("  vs full" if full is not None else "")]
    for r in rows:
        ch = "-" if r["sizes"] is None else ",".join(str(v) for v in r["sizes"].values())
        params = "-" if r["params"] is None else str(r["params"])
        comp = "-" if r["compression"] is None else f"{r['compression']:.1%}"
        cells = "".join(f" {r['per_image'][n]['psnr']:7.2f} / {r['per_image'][n]['ssim']:.4f}" for n in names)
        gap = f"  {r['psnr'] - full:+6.2f}" if full is not None else ""
        lines.append(f"{r['label']:16} {ch:>10} {params:>9} {comp:>7}{cells} {r['psnr']:7.2f} / {r['ssim']:.4f}{gap}")
    return lines


# -- plots -------------------------------------------------------------------

def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt, *plt.subplots(figsize=(5, 3.5))


def save_figure(plt, fig, path):
    """Lay out ``fig``, write it to ``path`` atomically (format from the
    extension) and close it."""
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=120, format=os.path.splitext(path)[1][1:] or "png")
    finally:
        plt.close(fig)
    return path


def _finish_compression_plot(plt, fig, ax, ylabel, title, path):
    """Axis labels, grid and legend of a quality-vs-compression plot, then
    the atomic save."""
    ax.set_xlabel("parameters removed (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(plt, fig, path)


def plot_accuracy(rows, path, title=""):
    """PNG of top-1/top-5 accuracy against compression (fraction of
    parameters removed), one point per evaluated width; written atomically."""
    plt, fig, ax = _figure()
    comp = [100 * r["compression"] for r in rows]
    ax.plot(comp, [100 * r["top1"] for r in rows], "o-", label="top-1")
    ax.plot(comp, [100 * r["top5"] for r in rows], "s--", label="top-5")
    for r, c in zip(rows, comp):
        ax.annotate(f"{r['keep']:g}", (c, 100 * r["top1"]), textcoords="offset points", xytext=(3, -10), fontsize=8)
    return _finish_compression_plot(plt, fig, ax, "accuracy (%)",
                                    title or "accuracy vs compression (labels: keep ratio)", path)


def plot_psnr(rows, path, title=""):
    """PNG of PSNR against compression (fraction of parameters removed),
    one point per evaluated width of :func:`evaluate_super_resolution`, the
    bicubic row as a horizontal line; written atomically."""
    plt, fig, ax = _figure()
    inn = [r for r in rows if r["keep"] is not None]
    comp = [100 * r["compression"] for r in inn]
    ax.plot(comp, [r["psnr"] for r in inn], "o-", label="integral network")
    for r, c in zip(inn, comp):
        ax.annotate(f"{r['keep']:g}", (c, r["psnr"]), textcoords="offset points", xytext=(3, -10), fontsize=8)
    for r in rows:
        if r["keep"] is None:
            ax.axhline(r["psnr"], color="grey", linestyle="--", label=r["label"])
    return _finish_compression_plot(plt, fig, ax, "PSNR on Y (dB)",
                                    title or "PSNR vs compression (labels: keep ratio)", path)


# -- the tasks ---------------------------------------------------------------

class Task:
    """What a config's run does for its task (``cfg["task"]``). Subclasses
    set ``name`` and implement every method."""

    name = None
    loss_digits = 4  # decimals of the loss in the training log

    def __init__(self, cfg):
        self.cfg = cfg

    def train_source(self):
        """The training data: an object with ``size`` and a ``batches`` method."""
        raise NotImplementedError

    def eval_source(self):
        """The evaluation data."""
        raise NotImplementedError

    def check(self, model, sources, progress=False):
        """Refuse a model and data that cannot train together, and read every
        file of the data ``sources`` now rather than mid-epoch."""
        self.check_data(sources, progress)

    def check_data(self, sources, progress=False):
        """Read every file of the data ``sources`` (None entries skipped), so
        a broken one is named before any long work."""

    def calibration_images(self, count):
        """Up to ``count`` unlabelled network inputs from the training data
        (for a repair)."""
        raise ValueError(f"--repair calib on a {self.name.replace('_', '-')} config needs --calib-data "
                         f"(network inputs)")

    def loss(self):
        """The loss Cell of ``train.loss``."""
        raise NotImplementedError

    def batches(self, source, indices, epoch, start):
        """Numpy ``(x, y)`` training batches of ``indices`` (this rank's
        samples of epoch ``epoch`` from its batch ``start`` on), by the data
        protocol every source follows (:mod:`inn_ms.data`)."""
        d, t = self.cfg["data"], self.cfg["train"]
        return source.batches(indices, t["batch_size"], epoch=epoch, seed=t["seed"], start=start,
                              augment=d["augment"], workers=d["num_workers"])

    def evaluate(self, model, source, widths, multiple_of=1, progress=False, **repair):
        """Rows of metrics at every keep ratio of ``widths``."""
        raise NotImplementedError

    def epoch_metrics(self, model, source):
        """``(metrics, text)``: the full-width metrics a training epoch
        records in its history, and how the log says them."""
        raise NotImplementedError

    def report(self, rows, source):
        """Text lines of an evaluation: a title and the table."""
        raise NotImplementedError

    def plot(self, rows, path):
        """The evaluation's plot against compression, written to ``path``."""
        raise NotImplementedError

    def input_shape(self, source=None):
        """``(1, C, H, W)`` of a network input (of ``source``, default the
        evaluation data), or None when the inputs are whole images of any
        size."""
        return None


class Classification(Task):
    """Top-1/top-5 on a labelled image set; cross-entropy."""

    name = "classification"
    loss_digits = 4

    def train_source(self):
        return build_source(self.cfg["data"], train=True)

    def eval_source(self):
        return build_source(self.cfg["data"], train=False)

    def check(self, model, sources, progress=False):
        classes = self.cfg["model"]["num_classes"]
        train = sources[0]
        if train.num_classes > classes:
            raise ValueError(f"data set {train.name} has {train.num_classes} classes, "
                             f"model.num_classes is {classes}")
        self.check_data(sources, progress)

    def check_data(self, sources, progress=False):
        for source in sources:
            if source is not None:
                source.check(progress=progress)  # a broken image is named now, not after an epoch

    def calibration_images(self, count):
        source = self.train_source()
        n = min(count, source.size)
        return np.concatenate([x for x, _ in source.batches(range(n), n, drop_remainder=False)])

    def loss(self):
        return nn.CrossEntropyLoss(label_smoothing=self.cfg["train"]["label_smoothing"])

    def evaluate(self, model, source, widths, multiple_of=1, progress=False, **repair):
        return evaluate_classifier(model, source, widths, self.cfg["eval"]["batch_size"], multiple_of,
                                   progress=progress, **repair)

    def epoch_metrics(self, model, source):
        acc = self.evaluate(model, source, (1.0,))[0]
        return ({"top1": acc["top1"], "top5": acc["top5"]},
                f"full-width top-1 {100 * acc['top1']:.2f}%, top-5 {100 * acc['top5']:.2f}%")

    def report(self, rows, source):
        return [f"{self.cfg['model']['name']} on {source.name} ({rows[0]['samples']} samples)"] + \
            classification_table(rows)

    def plot(self, rows, path):
        return plot_accuracy(rows, path, title=f"{self.cfg['model']['name']}: accuracy vs compression")

    def input_shape(self, source=None):
        return (1,) + tuple((source or self.eval_source()).input_shape)


class SuperResolution(Task):
    """PSNR/SSIM on Y against bicubic upscaling; L1 or MSE."""

    name = "super_resolution"
    loss_digits = 5

    @property
    def upscaled(self):
        """Whether the network takes the bicubic-upscaled image (SRCNN) rather
        than the LR image (it upsamples itself, as EDSR): from the model's
        registration (:mod:`inn_ms.builders`)."""
        builder = find_builder(self.cfg["model"]["name"])
        return builder is None or builder.input != "low_resolution"

    def train_source(self):
        return build_source(self.cfg["data"], train=True, upscaled=self.upscaled)

    def eval_source(self):
        return build_source(self.cfg["data"], train=False, upscaled=self.upscaled)

    def loss(self):
        return {"l1": nn.L1Loss, "mse": nn.MSELoss}[self.cfg["train"]["loss"]]()

    def evaluate(self, model, source, widths, multiple_of=1, progress=False, bicubic=True, **repair):
        e = self.cfg["eval"]
        return evaluate_super_resolution(model, source, self.cfg["data"]["scale"], widths, self.upscaled, e["tile"],
                                         e["tile_margin"], multiple_of, bicubic=bicubic, progress=progress,
                                         **repair)

    def epoch_metrics(self, model, source):
        r = self.evaluate(model, source, (1.0,), bicubic=False)[0]
        return {"psnr": r["psnr"], "ssim": r["ssim"]}, f"full-width PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}"

    def report(self, rows, source):
        d = self.cfg["data"]
        return [f"{self.cfg['model']['name']} x{d['scale']} on {d['name']} ({len(source)} images, Y channel, "
                f"border {d['scale']} px; PSNR dB / SSIM)"] + sr_table(rows, per_image=len(source) <= 4)

    def plot(self, rows, path):
        return plot_psnr(rows, path, title=f"{self.cfg['model']['name']} x{self.cfg['data']['scale']}: "
                                           f"PSNR vs compression")


TASKS = {t.name: t for t in (Classification, SuperResolution)}


def task_for(cfg):
    """The :class:`Task` of a checked config (``cfg["task"]``, resolved by
    :mod:`inn_ms.config`)."""
    return TASKS[cfg["task"]](cfg)


__all__ = ["Classification", "SuperResolution", "TASKS", "Task", "classification_table", "evaluate_classifier",
           "evaluate_super_resolution", "image_quality", "network_at", "plot_accuracy", "plot_psnr",
           "receptive_radius", "sr_table", "super_resolve", "task_for"]
