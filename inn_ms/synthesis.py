"""Data-free calibration images, synthesized from a network's own statistics.

A trained network with BatchNorm remembers what its activations look like:
every BatchNorm's moving mean and variance describe its input on the
training data, and a BatchNorm folded into the layer before it (conversion
does that) leaves the mean ``β`` and standard deviation ``|γ|`` of that
layer's output (:func:`inn_ms.convert.bn.output_statistics`, kept on the
integral layer). Images whose activations have those statistics are a
stand-in for the training data that needs none of it: starting from noise,
the images are optimised (Adam) until, over the batch, every channel's mean
and standard deviation at every such place match the recorded ones — the
"distilled data" of ZeroQ (Cai et al., CVPR 2020). Repair
(:mod:`inn_ms.repair`, ``repair="datafree"``) then fits the pruned network to
the full one on them.

The gradient with respect to the images comes from probes around the
matched places whose backward pass adds the gradient of the statistics'
mismatch to what flows through (a Cell ``bprop``): one forward and one
backward of the full plain network per step, in graph mode or PyNative.
"""
import logging
from collections import OrderedDict

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops
from tqdm.auto import tqdm

from inn_ms.layers.base import IntegralLayer
from inn_ms.layers.batchnorm import IntegralBatchNorm2d
from inn_ms.cells import copy_tree, name_parameters_by_path, run_probed

logger = logging.getLogger(__name__)


def statistics_sites(model):
    """``{path: (where, mean, std)}``: the places in ``model``'s network
    whose activation statistics are known at full width — the input of every
    BatchNorm (its moving statistics; ``where="input"``) and the output of
    every layer that kept a folded BatchNorm's (``where="output"``). Paths
    are those of the network's cells (and of its discretized copy)."""
    sites = OrderedDict()
    with model.at_sizes(model.full_sizes):
        for path, cell in model.network.cells_and_names():
            if isinstance(cell, IntegralBatchNorm2d):
                _, _, mean, var = cell.sampled()
                sites[path] = ("input", mean, np.sqrt(np.maximum(var, 0.0)))
            elif isinstance(cell, nn.BatchNorm2d):
                mean = cell.moving_mean.asnumpy().astype(np.float64)
                var = np.maximum(cell.moving_variance.asnumpy().astype(np.float64), 0.0)
                sites[path] = ("input", mean, np.sqrt(var))
            elif isinstance(cell, IntegralLayer) and cell.output_statistics() is not None:
                mean, std = cell.output_statistics()
                sites[path] = ("output", mean, std)
    return sites


class _Pull(nn.Cell):
    """The identity forward; backward adds the gradient of
    ``mean_c (m_c − μ_c)² + mean_c (s_c − σ_c)²`` (batch mean ``m`` and
    standard deviation ``s`` of each channel) to the incoming gradient."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean = Tensor(np.asarray(mean, np.float32))
        self.std = Tensor(np.asarray(std, np.float32))

    def construct(self, y):
        return y

    def bprop(self, y, out, dout):
        axes = (0, 2, 3) if y.ndim == 4 else (0,)
        shape = (1, -1, 1, 1) if y.ndim == 4 else (1, -1)
        count = y.size // y.shape[1]
        m = y.mean(axes)
        centred = y - m.reshape(shape)
        s = ops.sqrt((centred * centred).mean(axes) + 1e-8)
        channels = y.shape[1]
        grad_m = 2.0 * (m - self.mean) / (channels * count)
        grad_s = 2.0 * (s - self.std) / (channels * count * s)
        return (dout + grad_m.reshape(shape) + centred * grad_s.reshape(shape),)


class _Site(nn.Cell):
    """A cell with a :class:`_Pull` on its input or its output."""

    def __init__(self, cell, where, mean, std):
        super().__init__()
        self.cell = cell
        self.pull = _Pull(mean, std)
        self.on_input = where == "input"

    def construct(self, x):
        if self.on_input:
            return self.cell(self.pull(x))
        return self.pull(self.cell(x))


class _Root(nn.Cell):
    """``0 · Σ output``: the images' gradient is only what the pulls add."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def construct(self, x):
        return self.network(x).sum() * 0.0


def synthesis_network(model, sites=None):
    """The full-width plain network of ``model`` with a pull at every
    statistics site (:func:`statistics_sites`), as a Cell whose gradient
    with respect to its input is the mismatch's."""
    sites = statistics_sites(model) if sites is None else sites
    if not sites:
        raise ValueError("data-free repair needs activation statistics, and this network has none: no "
                         "BatchNorm, and no layer kept a folded BatchNorm's statistics; repair it on real "
                         "unlabelled images instead (repair='calib')")
    with model.at_sizes(model.full_sizes):
        full = model.discretize()
    by_id = {id(c): p for p, c in full.cells_and_names() if p in sites}

    def wrap(cell):
        path = by_id.get(id(cell))
        return None if path is None else _Site(cell, *sites[path])

    net = name_parameters_by_path(_Root(copy_tree(full, wrap, share_parameters=True)))
    net.set_train(False)
    return net


def synthesize(model, input_shape, count=128, steps=50, lr=0.2, seed=0, batch_size=128, progress=False):
    """``count`` images of ``input_shape`` (``C, H, W`` or with a batch axis,
    which is ignored) whose activation statistics in ``model``'s full-width
    network match the recorded ones: Adam from standard normal noise, in
    batches of ``batch_size`` (each matched on its own), seeded. Returns
    float32 numpy, ``count × C × H × W``."""
    shape = tuple(int(v) for v in input_shape)
    shape = shape[1:] if len(shape) == 4 else shape
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"synthesize: input_shape must be (C, H, W) or (N, C, H, W), got {input_shape!r}")
    for name, v in (("count", count), ("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"synthesize: {name} must be an int >= 1, got {v!r}")
    if not lr > 0:
        raise ValueError(f"synthesize: lr must be > 0, got {lr!r}")
    net = synthesis_network(model)
    grad = ms.grad(net, grad_position=0)
    rng = np.random.default_rng(seed)
    images = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        x = rng.standard_normal((n,) + shape).astype(np.float32)
        m, v = np.zeros_like(x), np.zeros_like(x)
        for t in tqdm(range(1, steps + 1), desc="synthesizing calibration images", disable=not progress,
                      leave=False):
            g = grad(Tensor(x)).asnumpy()
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            x = x - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        images.append(x.astype(np.float32))
    logger.info("synthesized %d calibration images in %d steps", count, steps)
    return np.concatenate(images)


def statistics_mismatch(model, images, sites=None):
    """``{path: (mean error, std error)}``: the root-mean-square difference,
    over channels, between each site's statistics on ``images`` and the
    recorded ones (how well synthesized images do their job)."""
    sites = statistics_sites(model) if sites is None else sites
    with model.at_sizes(model.full_sizes):
        full = model.discretize()
    seen = OrderedDict()

    def record(path, x, y):
        seen[path] = (x if sites[path][0] == "input" else y).asnumpy().astype(np.float64)

    run_probed(full, np.asarray(images, np.float32), sites, record)
    out = OrderedDict()
    for path, a in seen.items():
        axes = (0, 2, 3) if a.ndim == 4 else (0,)
        _, mean, std = sites[path]
        out[path] = (float(np.sqrt(np.mean((a.mean(axes) - mean) ** 2))),
                     float(np.sqrt(np.mean((a.std(axes) - std) ** 2))))
    return out


__all__ = ["statistics_mismatch", "statistics_sites", "synthesis_network", "synthesize"]
