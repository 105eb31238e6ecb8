"""Training with random partition sizes, so that every width works.

Each step draws a width for every channel group (:class:`WidthSampler`),
resizes the model and runs one compiled train step. Graph mode needs static
shapes: a width configuration is a new graph, so widths come from a small
bounded set (a few keep ratios, optionally rounded to multiples of 8 or 16,
Ascend's cube alignment) and each graph is compiled once and cached by
MindSpore, selected through the size key (:mod:`inn_ms.keyed`). Or one
graph serves every width (:class:`ElasticTrainStep`, ``elastic=True``):
the sizes are a run-time input and the shapes the full width's, so per-group
sizes, new at nearly every step, need no compile either.
"""
import logging
import math
from collections import OrderedDict

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import float32 as ms_float32
from mindspore.amp import all_finite as amp_all_finite
from tqdm.auto import tqdm

from inn_ms.elastic import elastic_layers, elastic_sizes
from inn_ms.keyed import SizeKeyed
from inn_ms.partition import NormalSizes, UniformSizes, size_range, size_step

logger = logging.getLogger(__name__)

_DISTRIBUTIONS = {"uniform": UniformSizes, "normal": NormalSizes}


def _distribution(name):
    try:
        return _DISTRIBUTIONS[name]
    except KeyError:
        raise ValueError(f"unknown width distribution {name!r}; choose one of {sorted(_DISTRIBUTIONS)}") from None


class WidthSampler:
    """Draws group sizes for one step.

    ``per_group=False`` (default): one keep ratio for the whole network from
    ``levels`` evenly spaced ratios in ``[low, high]`` — few configurations,
    so few graphs to compile. ``per_group=True``: every group draws its own
    size from ``[ceil(low·full), full]`` in steps of ``multiple_of`` (and
    of its blocks, :func:`inn_ms.partition.size_step`) — the paper's
    sampling, with many more configurations.
    ``distribution``: ``"uniform"`` or ``"normal"`` (favours full width).
    """

    def __init__(self, model, low=0.5, high=1.0, levels=5, distribution="uniform", per_group=False,
                 multiple_of=1):
        if not 0 < low <= high <= 1:
            raise ValueError(f"WidthSampler: need 0 < low <= high <= 1, got low={low}, high={high}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"WidthSampler: levels must be an int >= 1, got {levels!r}")
        self.model = model
        self.low, self.high, self.levels = float(low), float(high), levels
        self.per_group = bool(per_group)
        self.multiple_of = int(multiple_of)
        dist = _distribution(distribution)
        if self.per_group:
            # Never below the group's smallest size (size_range); a group of blocks (a
            # grouped convolution's channels) draws multiples of its blocks too.
            self.group_distributions = OrderedDict(
                (name, dist(min(full, max(size_range(p)[0], math.ceil(low * full))), max(1, int(high * full)),
                            int(np.lcm(self.multiple_of, size_step(p)))))
                for (name, full), p in zip(model.full_sizes.items(), model.groups.values()))
        else:
            self.ratios = np.linspace(low, high, levels) if levels > 1 else np.array([high])
            self.ratio_probabilities = dist(1, levels).probabilities()

    def sample(self, rng):
        """Sizes for every group, drawn with the numpy Generator ``rng``."""
        if self.per_group:
            return OrderedDict((name, d.sample(rng)) for name, d in self.group_distributions.items())
        ratio = float(rng.choice(self.ratios, p=self.ratio_probabilities))
        return self.model.sizes_for_keep(ratio, self.multiple_of)

    def smallest(self):
        """The narrowest sizes this sampler draws (every group at its least)."""
        if self.per_group:
            return OrderedDict((name, int(d.support[0])) for name, d in self.group_distributions.items())
        return self.model.sizes_for_keep(float(self.ratios[0]), self.multiple_of)

    def configurations(self):
        """Every joint configuration (``per_group=False`` only)."""
        if self.per_group:
            raise ValueError("WidthSampler.configurations: only for per_group=False")
        return [self.model.sizes_for_keep(float(r), self.multiple_of) for r in self.ratios]


def _data_parallel_reducer(weights):
    """A gradient all-reduce when MindSpore's parallel context is data
    parallel (set up by :func:`inn_ms.runner.setup_device` under msrun),
    else None. Averages if the context says ``gradients_mean``."""
    from mindspore import context
    from mindspore.context import ParallelMode
    if context.get_auto_parallel_context("parallel_mode") not in (ParallelMode.DATA_PARALLEL,
                                                                   ParallelMode.HYBRID_PARALLEL):
        return None
    from mindspore.communication import get_group_size
    return nn.DistributedGradReducer(weights, context.get_auto_parallel_context("gradients_mean"),
                                     get_group_size())


class TrainStep(SizeKeyed, nn.Cell):
    """One optimiser step of ``model`` at its current sizes (one graph per width).

    ``loss_scale`` > 1 (float16 training): the loss is multiplied by it before
    differentiation, the gradients divided after, and a step whose gradients
    are not finite is skipped. In a data-parallel context the gradients are
    all-reduced across ranks before the update.
    """

    def __init__(self, model, loss_fn, optimizer, loss_scale=1.0, network=None):
        # No prefix: the network's parameters keep their names (network.conv1.weight)
        # instead of taking this Cell's attribute path (optimizer.network.conv1.weight).
        super().__init__(auto_prefix=False)
        self.model = model
        self.net_with_loss = nn.WithLossCell(model.network if network is None else network, loss_fn)
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.scaled = float(loss_scale) != 1.0
        self.loss_scale = float(loss_scale)
        self.grad = ops.GradOperation(get_by_list=True, sens_param=self.scaled)
        self.inv_scale = Tensor(1.0 / self.loss_scale, ms_float32)
        self.hyper_map = ops.HyperMap()
        self.reducer = _data_parallel_reducer(self.weights)
        self.distributed = self.reducer is not None

    def size_key(self):
        return self.model.size_key()

    def construct(self, x, y, size_key=None):
        return self.update(x, y)

    def update(self, x, y):
        """The loss at ``x, y``, its gradients, and the optimiser's update."""
        loss = self.net_with_loss(x, y)
        if self.scaled:
            sens = ops.fill(loss.dtype, loss.shape, self.loss_scale)
            grads = self.grad(self.net_with_loss, self.weights)(x, y, sens)
            grads = self.hyper_map(ops.Partial()(ops.mul, self.inv_scale), grads)
        else:
            grads = self.grad(self.net_with_loss, self.weights)(x, y)
        if self.distributed:
            grads = self.reducer(grads)
        if self.scaled:
            if amp_all_finite(grads):
                self.optimizer(grads)
        else:
            self.optimizer(grads)
        return loss


class ElasticTrainStep(TrainStep):
    """One optimiser step of ``model`` at run-time sizes, ``step(x, y,
    sizes)`` with ``sizes`` an int32 tensor (one per group, in
    ``model.groups`` order): one compiled graph for every width.

    The step runs the full width's shapes with the channels past each size
    zero (:func:`inn_ms.elastic.elastic_layers`), so its loss, gradients and
    update are those of the network at ``sizes`` (an integral BatchNorm's
    moving statistics learn at full width only, as in :class:`TrainStep`),
    at the full width's compute. Against one graph per width it holds the
    memory of one graph and compiles once (the main job's pipeline A, 11
    widths: 2.1–2.3 GB peak against 6.3–6.4 GB, the same accuracies; one compile
    takes about two per-width compiles' CPU time), and per-group sizes, which
    make a new graph nearly every step, cost nothing more (resnet_small,
    new per-group sizes every step: 1.22–1.26× the discrete network's step,
    ``scripts/bench/train_step.py``). Every axis samples by a dense matrix
    built in the graph (:class:`inn_ms.elastic.ElasticAxis` ``dense``);
    four gathers a row, whose gradients are scatter-adds, made it 1.6×. Needs
    uniform trapezoid partitions (not pipeline B's trainable ones); the
    resampling rules are read when the step is built.
    """

    def __init__(self, model, loss_fn, optimizer, loss_scale=1.0):
        network, state = elastic_layers(model)
        super().__init__(model, loss_fn, optimizer, loss_scale=loss_scale, network=network)
        self.state = state
        self.built_for = elastic_signature(model)

    def size_key(self):
        return self.built_for  # static: the sizes are run-time data

    def construct(self, x, y, sizes, size_key=None):
        ops.assign(self.state.sizes, sizes)
        return self.update(x, y)


def elastic_signature(model):
    """What an :class:`ElasticTrainStep` is built for: each group's
    partition object and resampling rule."""
    return tuple((name, id(p), p.resampling) for name, p in model.groups.items())


def batches(n, batch_size, rng=None, drop_last=True):
    """Index arrays of mini-batches over ``n`` samples (shuffled if ``rng``)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def check_sandwich(sandwich):
    """``sandwich`` as one of ``False``, ``"full"``, ``"both"`` (``True`` is
    ``"full"``)."""
    if sandwich is True:
        return "full"
    if sandwich is False or sandwich is None:
        return False
    if sandwich in ("full", "both"):
        return sandwich
    raise ValueError(f"sandwich must be false, true / 'full' or 'both', got {sandwich!r}")


def steps_per_batch(sandwich, sampled=True):
    """Optimiser steps per batch with ``sandwich`` (a learning-rate schedule
    has one rate per step); ``sampled=False``: no width sampler, one step."""
    if not sampled:
        return 1
    return {False: 1, "full": 2, "both": 3}[check_sandwich(sandwich)]


class RandomWidthTrainer:
    """Trains an :class:`~inn_ms.model.IntegralModel` with a random width per step.

    ``width_sampler=None`` trains at full width only (a discrete-like baseline).
    ``sandwich``: steps every batch gets before the sampled one —
    ``False``: none; ``True`` (or ``"full"``): one at full width, so the full
    width is trained on every batch; ``"both"``: one at full width and one
    at the sampler's smallest sizes, the "sandwich rule" of slimmable
    networks (the two ends trained on every batch bound every width between
    them; the narrowest widths are the ones a uniform draw trains least).
    ``elastic=True``: every step runs one compiled graph whose sizes are a
    run-time input (:class:`ElasticTrainStep`) instead of one graph per
    width; the model then keeps its sizes while training.
    """

    SANDWICH = (False, "full", "both")

    def __init__(self, model, loss_fn, optimizer, width_sampler=None, seed=0, sandwich=False, loss_scale=1.0,
                 elastic=False):
        self.model = model
        self.sandwich = check_sandwich(sandwich)
        self.elastic = bool(elastic)
        self._step_args = (loss_fn, optimizer, loss_scale)
        self.step_cell = (ElasticTrainStep if self.elastic else TrainStep)(model, loss_fn, optimizer,
                                                                           loss_scale=loss_scale)
        self.width_sampler = width_sampler
        self.rng = np.random.default_rng(seed)

    @property
    def steps_per_batch(self):
        """Optimiser steps taken per batch by :meth:`fit`."""
        return steps_per_batch(self.sandwich, self.width_sampler is not None)

    def step(self, x, y, sizes=None):
        """One step at ``sizes`` (or freshly drawn ones); returns the loss."""
        if sizes is None and self.width_sampler is not None:
            sizes = self.width_sampler.sample(self.rng)
        if self.elastic:
            return self._elastic_step(x, y, sizes)
        if sizes is not None:
            self.model.resize(sizes=sizes)
        self.step_cell.set_train(True)
        loss = self.step_cell(x, y)
        return float(loss.asnumpy())

    def _elastic_step(self, x, y, sizes):
        """A step of the elastic graph at ``sizes`` (others: the model's
        current sizes), checked against each group's allowed range. A model
        whose partitions or rules changed since the graph was built (e.g.
        ``set_resampling``) gets a new one: the old would sample by the old
        rules."""
        if self.step_cell.built_for != elastic_signature(self.model):
            logger.info("the model's partitions or resampling rules changed: building a new elastic train step")
            loss_fn, optimizer, loss_scale = self._step_args
            self.step_cell = ElasticTrainStep(self.model, loss_fn, optimizer, loss_scale=loss_scale)
        target = dict(self.model.sizes)
        target.update(sizes or {})
        self.step_cell.set_train(True)
        loss = self.step_cell(x, y, elastic_sizes(self.model, sizes=target))
        return float(loss.asnumpy())

    def check_schedule(self, steps):
        """Raise if the optimiser's learning-rate schedule (a list of rates,
        one per optimiser step) ends before ``steps`` more steps: MindSpore
        would fail mid-training with an index error in its ``Gather``."""
        opt = self.step_cell.optimizer
        if not getattr(opt, "dynamic_lr", False) or getattr(opt, "is_group_lr", False):
            return
        lengths = [int(p.shape[0]) for _, p in opt.learning_rate.parameters_and_names() if len(p.shape) == 1]
        if not lengths:
            return
        done = int(opt.global_step.asnumpy().reshape(-1)[0])
        if done + steps > lengths[0]:
            raise ValueError(f"the optimiser's learning-rate schedule has {lengths[0]} rates, {done} used; "
                             f"this fit takes {steps} more optimiser steps ({self.steps_per_batch} per batch"
                             f"{f' with sandwich={self.sandwich!r}' if self.steps_per_batch > 1 else ''}): make the "
                             f"schedule longer")

    def train_batch(self, x, y, sizes=None):
        """One batch: the sandwich steps first (full width; with ``"both"``
        also the smallest sizes), then a step at ``sizes`` (None: drawn by
        the width sampler, or the current sizes without one); returns the
        last step's loss."""
        if self.steps_per_batch > 1:
            self.step(x, y, sizes=dict(self.model.full_sizes))
        if self.steps_per_batch > 2:
            self.step(x, y, sizes=dict(self.width_sampler.smallest()))
        return self.step(x, y, sizes=sizes)

    def run_epoch(self, batches, sizes=None, after_batch=None, total=None, desc="", progress=False):
        """Train on ``batches`` (numpy ``(x, y)`` pairs, in order); returns the
        batch losses. ``sizes(k)``: the sizes of batch ``k`` (None: see
        :meth:`train_batch`); ``after_batch(losses)``: called after each
        batch. The model is left at the last batch's sizes. The one training
        loop: :meth:`fit`, the config runner and pipeline B run it."""
        losses = []
        bar = tqdm(batches, total=total, desc=desc, disable=not progress, leave=False)
        for k, (x, y) in enumerate(bar):
            losses.append(self.train_batch(Tensor(x), Tensor(y), None if sizes is None else sizes(k)))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if after_batch is not None:
                after_batch(losses)
        return losses

    def fit(self, x, y, epochs, batch_size, progress=True):
        """Train on numpy arrays ``x``, ``y``; returns the mean loss per epoch.
        The model is left at full width."""
        self.check_schedule(epochs * (len(x) // batch_size) * self.steps_per_batch)
        history = []
        try:
            for epoch in range(epochs):
                order = batches(len(x), batch_size, self.rng)
                losses = self.run_epoch(((x[idx], y[idx]) for idx in order), total=len(order),
                                        desc=f"epoch {epoch + 1}/{epochs}", progress=progress)
                history.append(float(np.mean(losses)))
                logger.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, history[-1])
        finally:
            self.model.resize(sizes=dict(self.model.full_sizes))
            self.step_cell.set_train(False)
        return history
