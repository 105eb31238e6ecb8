"""Elastic training: one compiled train step whose sizes are a run-time
input (``RandomWidthTrainer(elastic=True)``). Its steps must be the
per-width graphs' steps — losses, gradients and an integral BatchNorm's
moving statistics — at joint and per-group sizes, with one graph for all
of them; what it cannot follow is refused; a config can ask for it."""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Parameter, ParameterTuple, nn, ops

from inn_ms.cells import compiled_phases
from inn_ms.config import ConfigError, load_config, validate
from inn_ms.convert import convert
from inn_ms.layers.batchnorm import IntegralBatchNorm2d
from inn_ms.partition_tuning import make_partitions_trainable
from inn_ms.runner import train
from inn_ms.train import RandomWidthTrainer
from model_zoo import create_model
from helpers import ROOT, randomize_bn


def converted(rng):
    """The main job's CNN shape (random weights), BatchNorms kept as integral BatchNorms."""
    ms.set_seed(0)
    net = create_model("mnist_torch_cnn", integral=False)
    randomize_bn(net, rng)
    return convert(net, (2, 1, 28, 28), fold_bn=False, permute=False, verify=False)


class GradientRecorder(nn.Optimizer):
    """An optimiser that keeps each step's gradients and changes no weight,
    so every step of two trainers starts from the same weights (float noise
    would otherwise grow through max-pooling and ReLU near-ties, step after
    step, into differences as large as a wrong size gives)."""

    def __init__(self, params):
        super().__init__(0.0, params)
        self.grads = ParameterTuple(Parameter(ms.Tensor(np.zeros(p.shape, np.float32)), name=f"grad{i}",
                                              requires_grad=False) for i, p in enumerate(self._parameters))

    def construct(self, gradients):
        for i in range(len(gradients)):
            ops.assign(self.grads[i], gradients[i])
        return True

    def recorded(self):
        return {p.name: g.asnumpy().copy() for p, g in zip(self._parameters, self.grads)}


def trainer(model, elastic):
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    return RandomWidthTrainer(model, loss, GradientRecorder(model.trainable_params()), elastic=elastic)


def schedule(model):
    """Sizes of consecutive steps: full, two keep ratios, a per-group mix, a
    width again after others, full again."""
    mixed = dict(model.sizes_for_keep(0.75))
    first = next(iter(mixed))
    mixed[first] = model.full_sizes[first] - 3
    return [dict(model.full_sizes), dict(model.sizes_for_keep(0.5)), dict(model.sizes_for_keep(0.75)), mixed,
            dict(model.sizes_for_keep(0.5)), dict(model.full_sizes)]


def test_elastic_steps_are_the_per_width_steps_in_one_graph(rng):
    ms.set_context(mode=ms.GRAPH_MODE)
    data = np.random.default_rng(1)
    reference, elastic = converted(rng), converted(np.random.default_rng(0))
    assert any(isinstance(c, IntegralBatchNorm2d) for _, c in elastic.cells_and_names())
    per_width, one_graph = trainer(reference, False), trainer(elastic, True)
    pairs = [(a, b) for (_, a), (_, b) in zip(reference.cells_and_names(), elastic.cells_and_names())
             if isinstance(a, IntegralBatchNorm2d)]
    for k, sizes in enumerate(schedule(reference)):
        moving = [b.moving_mean.asnumpy().copy() for _, b in pairs]
        x = ms.Tensor(data.normal(size=(8, 1, 28, 28)).astype(np.float32))
        y = ms.Tensor(data.integers(0, 10, size=8).astype(np.int32))
        np.testing.assert_allclose(one_graph.step(x, y, sizes=sizes), per_width.step(x, y, sizes=sizes), rtol=1e-5,
                                   err_msg=f"loss of step {k} at {sizes}")
        want, got = per_width.step_cell.optimizer.recorded(), one_graph.step_cell.optimizer.recorded()
        for name, g in want.items():
            # Float noise through six BatchNorms of 8 images, and the odd near-tie of a ReLU or a
            # max-pool routed the other way: ~3e-4 in norm; a wrong size: of the order of 1.
            # (A bias before a BatchNorm has a zero gradient: its noise, ~1e-8, is measured against 1e-4.)
            error = np.linalg.norm(got[name] - g) / max(np.linalg.norm(g), 1e-4)
            assert error < 2e-3, f"gradient of {name}, step {k} at {sizes}: relative error {error:.2e}"
        narrow = sizes != dict(reference.full_sizes)
        for (a, b), old in zip(pairs, moving):  # the moving statistics learn at full width only
            assert np.array_equal(b.moving_mean.asnumpy(), old) == narrow
            np.testing.assert_allclose(b.moving_variance.asnumpy(), a.moving_variance.asnumpy(), rtol=1e-5)
    assert dict(elastic.sizes) == dict(elastic.full_sizes)  # elastic steps leave the model's sizes alone
    assert len(compiled_phases(one_graph.step_cell)) == 1
    assert len(compiled_phases(per_width.step_cell)) == 4  # full, 0.5, 0.75 and the mix


def test_a_changed_rule_builds_a_new_step_with_it(rng):
    # PyNative: the same code path, no compile.
    model, reference = converted(rng), converted(np.random.default_rng(0))
    one_graph, per_width = trainer(model, True), trainer(reference, False)
    x = ms.Tensor(np.random.default_rng(2).normal(size=(4, 1, 28, 28)).astype(np.float32))
    y = ms.Tensor(np.arange(4, dtype=np.int32))
    sizes = dict(model.sizes_for_keep(0.5))
    first = one_graph.step_cell
    one_graph.step(x, y, sizes=sizes)
    assert one_graph.step_cell is first
    model.set_resampling("antialiased")
    reference.set_resampling("antialiased")
    per_width.step(x, y, sizes=dict(reference.full_sizes))  # the same first step, then the rule's
    np.testing.assert_allclose(one_graph.step(x, y, sizes=sizes), per_width.step(x, y, sizes=sizes), rtol=2e-5)
    assert one_graph.step_cell is not first


def test_sizes_outside_a_group_range_and_trainable_partitions_are_refused(rng):
    model = converted(rng)
    one_graph = trainer(model, True)
    x = ms.Tensor(np.zeros((2, 1, 28, 28), np.float32))
    y = ms.Tensor(np.zeros(2, np.int32))
    group = next(iter(model.groups))
    for bad in (1, model.full_sizes[group] + 1):
        with pytest.raises(ValueError, match=f"size of group '{group}' must be an int in"):
            one_graph.step(x, y, sizes={group: bad})
    make_partitions_trainable(model, {group: model.full_sizes[group] - 2})  # as pipeline B does
    with pytest.raises(ValueError, match="elastic networks need uniform trapezoid partitions"):
        one_graph.step(x, y)


def test_config_trains_per_group_widths_elastic(tmp_path):
    """``train.elastic`` from a config: per-group sizes in graph mode, the
    run's losses finite and the artifact written; float16 refused."""
    cfg = load_config(os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml"),
                      [f"output_dir={tmp_path}", "train.elastic=true", "train.widths.per_group=true",
                       "train.max_steps=3", "train.epochs=1", "data.n_train=96", "eval.widths=[1.0]"])
    summary = train(cfg, resume=None, progress=False)
    assert summary["step"] == 3 and np.isfinite(summary["losses"]).all()
    assert os.path.isfile(os.path.join(tmp_path, "model.inn"))
    assert validate({"model": {"name": "mnist_cnn"}, "data": {"name": "mnist_subset"}})["train"]["elastic"] is False
    with pytest.raises(ConfigError, match="train.elastic is supported with device.amp_level O0 only, got O2"):
        load_config(os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml"),
                    ["train.elastic=true", "device.amp_level=O2"])
