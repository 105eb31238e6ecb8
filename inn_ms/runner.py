"""Config-driven training and evaluation runs (what ``scripts/train.py``,
``scripts/eval.py`` and ``inn-ms train|eval`` call).

A run is reproducible from its config and seed alone: initial weights come
from ``ms.set_seed(seed)``, the sample order of epoch ``e`` from
``(seed, e)`` and the widths of batch ``s`` from ``(seed, s)``. So a run
resumed from a checkpoint (weights, optimiser state, position) continues
exactly where it stopped, and every data-parallel rank draws the same widths
without talking to the others. Under ``msrun`` with ``distributed: true``
each rank reads its own slice of every global batch (``batch_size`` samples
per rank) and the gradients are averaged across ranks, so the update equals
a single process's on the whole global batch.

What differs per task (``cfg["task"]``: data, loss, metrics) is the task
object's (:mod:`inn_ms.tasks`); the steps are the trainer's one loop
(:meth:`inn_ms.train.RandomWidthTrainer.run_epoch`). For super resolution
the patch of sample ``i`` in epoch ``e`` comes from ``(seed, e, i)``, so
resuming is exact there too.
"""
import json
import logging
import math
import os

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from inn_ms.artifact import load_artifact, read_manifest, save_artifact
from inn_ms.builders import architecture_builder, build, build_discrete, is_callable_name
from inn_ms.checkpoint import checkpoint_name, list_checkpoints, load_checkpoint, resume_latest, save_checkpoint
from inn_ms.config import ConfigError, dump_config
from inn_ms.convert import convert, load_torch_weights
from inn_ms.data.sources import epoch_order, shard
from inn_ms.fileio import check_output_dir, write_json, write_text
from inn_ms.functional import set_conv_backend
from inn_ms.tasks import task_for
from inn_ms.train import RandomWidthTrainer, WidthSampler, steps_per_batch

logger = logging.getLogger(__name__)


def setup_device(cfg):
    """Device, execution mode, convolution backend and, for distributed runs,
    the communication group and data-parallel context. Returns ``(rank, world)``."""
    dev = cfg["device"]
    check_device(dev["target"])
    ms.set_context(device_target=dev["target"], mode=ms.GRAPH_MODE if dev["mode"] == "graph" else ms.PYNATIVE_MODE)
    eager_in_order(dev["target"])
    set_conv_backend(dev["conv_backend"])
    if not cfg["distributed"]:
        return 0, 1
    from mindspore.communication import get_group_size, get_rank, init
    if "MS_WORKER_NUM" not in os.environ and "RANK_TABLE_FILE" not in os.environ:
        raise ValueError("distributed: true needs a launcher: start the script with msrun "
                         "(scripts/run_distribute_train.sh N CONFIG), or --set distributed=false")
    init()
    rank, world = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=world)
    logger.info("rank %d of %d", rank, world)
    return rank, world


def eager_in_order(target):
    """On CPU, launch eager (PyNative) operators in the calling thread, in
    order (``ms.runtime.launch_blocking()``, for the whole process) rather
    than through MindSpore's launch queue, whose threads spin while they
    wait. Same results. Measured on this project's 2-core machine (a test
    suite running beside it): the zoo's ``mnist_cnn`` forward on 50 digits,
    PyNative, 242–362 → 49–52 ms of CPU, 378–488 → 99–104 ms wall; a
    graph-mode training step unchanged. Elsewhere (Ascend, GPU) the queue
    overlaps host and device work, so it is left on."""
    if target == "CPU":
        ms.runtime.launch_blocking()


def check_device(target):
    """Refuse a ``device.target`` this MindSpore build cannot run (GPU or
    Ascend on a CPU-only wheel), naming the targets it can."""
    hal = getattr(ms, "hal", None)
    if hal is None or not hasattr(hal, "is_available"):
        return
    if not hal.is_available(target):
        usable = [t for t in ("CPU", "GPU", "Ascend") if hal.is_available(t)]
        raise ConfigError(f"device.target is {target}, but this MindSpore {ms.__version__} cannot use it "
                          f"(a build for {', '.join(usable) or 'no device'}): set device.target to "
                          f"{usable[0] if usable else 'CPU'} or install MindSpore for {target}")


def build_model(cfg):
    """The integral model a config describes: the zoo network built integral,
    or built discrete (a zoo name or ``module:callable``), given
    ``model.convert.weights`` (a PyTorch state_dict) and converted
    (``model.convert``); then ``model.checkpoint`` loaded if given. A
    checkpoint that is an integral artifact (``.inn``) is the network itself:
    nothing else is built."""
    m = cfg["model"]
    if m["checkpoint"] and m["checkpoint"].endswith(".inn"):
        return _from_artifact(cfg)
    kwargs = dict(m["kwargs"])
    classes = {} if m["num_classes"] is None else {"num_classes": m["num_classes"]}  # None: super resolution
    if m["convert"] is None:
        model = build(m["name"], integral=True, **classes, **kwargs)
    else:
        c = m["convert"]
        arch_kwargs = dict(kwargs, **classes)
        net = build_discrete(m["name"], arch_kwargs)
        if c["weights"]:
            loaded = load_torch_weights(net, c["weights"])
            logger.info("loaded %d tensors from %s", len(loaded), c["weights"])
        model = convert(net, tuple(c["input_shape"]), fold_bn=c["fold_bn"], permute=c["permute"],
                        quadrature=c["quadrature"], builder=m["name"], builder_kwargs=arch_kwargs)
    if m["checkpoint"]:
        load_checkpoint(m["checkpoint"], model)
    return model


def _from_artifact(cfg):
    """``model.checkpoint`` as an integral artifact, checked against
    ``model.name``: the artifact records the network it holds. A config's
    own ``module:function`` name is trusted (training imports it anyway)."""
    path = cfg["model"]["checkpoint"]
    if not os.path.isfile(path):
        raise ValueError(f"model.checkpoint {path!r} not found")
    name = cfg["model"]["name"]
    built = architecture_builder(read_manifest(path)["architecture"])
    if built != name:
        raise ValueError(f"model.checkpoint {path!r} holds {built!r}, but model.name is {name!r}")
    return load_artifact(path, builders=[name] if is_callable_name(name) else None)


def lr_schedule(sched, lr, epochs, steps_per_epoch):
    """One learning rate per optimiser step: linear warm-up from ``min_lr``,
    then constant, cosine down to ``min_lr``, or step decay by ``gamma`` at
    the ``milestones`` (epochs)."""
    total = epochs * steps_per_epoch
    warm = min(total, int(round(sched["warmup_epochs"] * steps_per_epoch)))
    low = sched["min_lr"]
    rates = np.empty(total, np.float32)
    for i in range(total):
        if i < warm:
            rates[i] = low + (lr - low) * (i + 1) / warm
        elif sched["name"] == "constant":
            rates[i] = lr
        elif sched["name"] == "cosine":
            t = (i - warm) / max(1, total - warm)
            rates[i] = low + 0.5 * (lr - low) * (1 + math.cos(math.pi * t))
        else:
            epoch = i // steps_per_epoch
            rates[i] = lr * sched["gamma"] ** sum(epoch >= m for m in sched["milestones"])
    return rates.tolist()


def build_optimizer(opt, params, rates):
    """The optimiser of ``opt`` (a config's ``train.optimizer``) over
    ``params``; weight decay only on tensors of two or more dimensions (not
    on biases or BatchNorm)."""
    wd = opt["weight_decay"]
    if wd > 0:
        params = [{"params": [p for p in params if len(p.shape) > 1], "weight_decay": wd},
                  {"params": [p for p in params if len(p.shape) <= 1], "weight_decay": 0.0}]
    name = opt["name"]
    if name == "adam":
        return nn.Adam(params, learning_rate=rates, weight_decay=wd)
    if name == "adamw":
        return nn.AdamWeightDecay(params, learning_rate=rates, weight_decay=wd)
    if name == "momentum":
        return nn.Momentum(params, learning_rate=rates, momentum=opt["momentum"], weight_decay=wd,
                           use_nesterov=opt["nesterov"])
    return nn.SGD(params, learning_rate=rates, momentum=opt["momentum"], weight_decay=wd, nesterov=opt["nesterov"])


class Float32Loss(nn.Cell):
    """A loss computed in float32 on logits that mixed precision may leave float16."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def construct(self, logits, labels):
        return self.loss(ops.cast(logits, ms.float32), labels)


def width_rng(seed, step):
    """The generator that draws the widths of global batch ``step``."""
    return np.random.default_rng([int(seed), 1, int(step)])


def train(cfg, resume="auto", progress=True):
    """Train the model of ``cfg`` with random widths; returns a summary.

    ``resume``: ``"auto"`` continues from the newest checkpoint in
    ``output_dir`` if there is one, a path continues from that checkpoint,
    None starts afresh (existing checkpoints in ``output_dir`` are removed).
    Writes to ``output_dir`` (rank 0): ``config.yaml``, a checkpoint per
    epoch (and every ``train.save_every_steps`` batches), ``history.json``
    (per epoch: loss and full-width top-1/top-5, or PSNR/SSIM),
    ``final.ckpt`` (model weights) and ``model.inn`` (the integral artifact);
    other ranks write ``final_rank<r>.ckpt``.
    """

    rank, world = setup_device(cfg)
    t = cfg["train"]
    seed = t["seed"]
    out = cfg["output_dir"]
    writer = rank == 0
    if writer:
        check_output_dir(out)  # before any data is read or network built
    ms.set_seed(seed)
    task = task_for(cfg)
    train_src = task.train_source()
    eval_src = task.eval_source() if writer else None
    model = build_model(cfg)
    if t["resampling"] != "auto":
        model.set_resampling(t["resampling"])
    task.check(model, (train_src, eval_src), progress=progress and writer)
    global_batch = t["batch_size"] * world
    steps_per_epoch = train_src.size // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{train_src.size} training samples make no batch of {global_batch} "
                         f"({t['batch_size']} per rank x {world} ranks)")
    sampler = WidthSampler(model, **t["widths"]) if t["widths"] is not None else None
    per_batch = steps_per_batch(t["sandwich"], sampler is not None)
    opt_cfg = t["optimizer"]
    rates = lr_schedule(t["lr_schedule"], opt_cfg["lr"], t["epochs"], steps_per_epoch * per_batch)
    optimizer = build_optimizer(opt_cfg, model.trainable_params(), rates)
    loss_fn = task.loss()
    amp = cfg["device"]["amp_level"]
    loss_scale = cfg["device"]["loss_scale"] or (1024.0 if amp in ("O2", "O3") else 1.0)
    if amp != "O0":
        # Casts the network's Cells in place (MindSpore 2.10 also returns a wrapper, which we do not
        # use: the IntegralModel keeps its own network); logits may come out float16.
        ms.amp.auto_mixed_precision(model.network, amp)
        loss_fn = Float32Loss(loss_fn)
    trainer = RandomWidthTrainer(model, loss_fn, optimizer, sampler, seed=seed, sandwich=t["sandwich"],
                                 loss_scale=loss_scale, elastic=t["elastic"])

    position = {"epoch": 0, "step": 0, "epoch_step": 0, "global_batch": 0, "epoch_loss": 0.0}
    if resume == "auto":
        resume, found = resume_latest(out, model, optimizer, clean=writer)
        position = found or position
    elif resume is None and writer:
        for old in list_checkpoints(out):
            os.remove(old)
    elif resume:
        position = load_checkpoint(resume, model, optimizer)
    history = []
    if resume:
        if position["global_batch"] not in (0, global_batch):
            raise ValueError(f"checkpoint {resume} was written with {position['global_batch']} samples per step "
                             f"(all ranks), this run has {global_batch}: resume with the same batch size and "
                             f"number of ranks, or start afresh (--no-resume)")
        logger.info("resumed from %s: epoch %d, step %d", resume, position["epoch"], position["step"])
        hist_path = os.path.join(out, "history.json")
        if os.path.isfile(hist_path):
            with open(hist_path) as f:
                history = [h for h in json.load(f) if h["step"] <= position["step"]]
    if writer:
        os.makedirs(out, exist_ok=True)
        write_text(os.path.join(out, "config.yaml"), dump_config(cfg))

    total = t["epochs"] * steps_per_epoch if t["max_steps"] is None else min(t["max_steps"],
                                                                              t["epochs"] * steps_per_epoch)
    step, full_sizes = position["step"], dict(model.full_sizes)
    save_every = t["save_every_steps"]
    losses_this_run = []
    # Sum and count of the batch losses of the current epoch done before this run (a resumed
    # epoch's mean loss covers the whole epoch); None: a checkpoint that did not record it.
    earlier_sum = position["epoch_loss"] if position["epoch_step"] else 0.0
    earlier_count = position["epoch_step"] if earlier_sum is not None else 0
    if earlier_sum is None:
        logger.warning("%s does not record the loss of the epoch's first %d batches: that epoch's loss in "
                       "history.json covers the resumed batches only", resume, position["epoch_step"])
        earlier_sum = 0.0

    def save(epoch, epoch_step, epoch_loss=0.0):
        if writer:
            save_checkpoint(os.path.join(out, checkpoint_name(epoch, step)), model, optimizer, epoch=epoch,
                            step=step, epoch_step=epoch_step, global_batch=global_batch, keep=t["keep_checkpoints"],
                            epoch_loss=epoch_loss)

    try:
        for epoch in range(position["epoch"], t["epochs"]):
            if step >= total:
                break
            start = position["epoch_step"] if epoch == position["epoch"] else 0
            order = epoch_order(train_src.size, seed, epoch)
            stop = min(steps_per_epoch, start + total - step)
            mine = np.concatenate([shard(order[b * global_batch:(b + 1) * global_batch], rank, world)
                                   for b in range(start, stop)])
            batches = task.batches(train_src, mine, epoch, start)
            resumed = epoch == position["epoch"] and start > 0
            loss_before, count_before = (earlier_sum, earlier_count) if resumed else (0.0, 0)
            first = step

            def after_batch(losses):
                nonlocal step
                step += 1
                epoch_step = start + len(losses)
                if save_every and step % save_every == 0 and epoch_step < steps_per_epoch:
                    save(epoch, epoch_step, loss_before + float(np.sum(losses)))

            sizes = None if sampler is None else (lambda k: sampler.sample(width_rng(seed, first + k)))
            losses = trainer.run_epoch(batches, sizes, after_batch, total=stop - start,
                                       desc=f"epoch {epoch + 1}/{t['epochs']}", progress=progress and writer)
            epoch_step = start + len(losses)
            losses_this_run += losses
            done = epoch_step == steps_per_epoch
            model.resize(sizes=full_sizes)
            n_losses = count_before + len(losses)
            record = {"epoch": epoch + 1 if done else epoch + epoch_step / steps_per_epoch, "step": step,
                      "loss": (loss_before + float(np.sum(losses))) / n_losses if n_losses else None}
            if writer:
                metrics, text = task.epoch_metrics(model, eval_src)
                record.update(metrics)
                logger.info(f"epoch %s/%d step %d: loss %.{task.loss_digits}f, %s", f"{record['epoch']:g}",
                            t["epochs"], step, record["loss"], text)
                history.append(record)
            save(epoch + 1 if done else epoch, 0 if done else epoch_step,
                 0.0 if done else loss_before + float(np.sum(losses)))
            if writer:
                write_json(os.path.join(out, "history.json"), history)
    finally:
        model.resize(sizes=full_sizes)
        trainer.step_cell.set_train(False)

    if writer:
        final = os.path.join(out, "final.ckpt")
        save_checkpoint(final, model)
        save_artifact(model, os.path.join(out, "model.inn"))
    else:
        final = os.path.join(out, f"final_rank{rank}.ckpt")
        save_checkpoint(final, model)
    return {"rank": rank, "world": world, "step": step, "steps_per_epoch": steps_per_epoch,
            "history": history, "final": final, "losses": losses_this_run, "resumed_from": resume}
