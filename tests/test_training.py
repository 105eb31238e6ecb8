"""Training with random widths: the width sampler, the compiled train step,
and a small version of the main job's claim (pruning without fine-tuning
keeps accuracy, unlike naive truncation of a full-width-trained network)."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from inn_ms.data import mnist_subset
from inn_ms.train import RandomWidthTrainer, WidthSampler, batches
from model_zoo import create_model

from helpers import pynative_accuracy


@pytest.fixture
def cnn():
    return create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))


def test_joint_sampler_draws_only_its_configurations(cnn, rng):
    ws = WidthSampler(cnn, low=0.5, levels=3)
    configs = [tuple(c.values()) for c in ws.configurations()]
    assert configs == [(4, 8, 8, 8, 16), (6, 12, 12, 12, 24), (8, 16, 16, 16, 32)]
    drawn = {tuple(ws.sample(rng).values()) for _ in range(60)}
    assert drawn == set(configs)


def test_normal_sampler_prefers_full_width(cnn, rng):
    ws = WidthSampler(cnn, low=0.25, levels=4, distribution="normal")
    counts = {}
    for _ in range(400):
        k = ws.sample(rng)["c2"]
        counts[k] = counts.get(k, 0) + 1
    assert counts[16] > counts[4]


def test_per_group_sampler_respects_ranges_and_multiples(cnn, rng):
    ws = WidthSampler(cnn, low=0.5, per_group=True, multiple_of=4)
    seen = set()
    for _ in range(50):
        s = ws.sample(rng)
        for name, n in s.items():
            full = cnn.full_sizes[name]
            assert full // 2 <= n <= full and (n % 4 == 0 or n == full)
        seen.add(tuple(s.values()))
    assert len(seen) > 5  # groups draw independently


@pytest.mark.parametrize("kw", [dict(low=0), dict(low=0.8, high=0.5), dict(levels=0),
                                dict(distribution="cauchy")])
def test_sampler_rejects_bad_arguments(cnn, kw):
    with pytest.raises(ValueError):
        WidthSampler(cnn, **kw)


def test_train_step_at_several_widths_in_graph_mode(cnn, rng):
    """One TrainStep serves every width (one cached graph each) and updates
    the shared control parameters; the loss on a fixed batch goes down."""
    ms.set_context(mode=ms.GRAPH_MODE)
    xs, ys, _, _ = mnist_subset(32, 10)
    x, y = Tensor(xs), Tensor(ys)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    trainer = RandomWidthTrainer(cnn, loss, nn.Adam(cnn.trainable_params(), learning_rate=1e-2))
    before = cnn.network.conv2.weight.asnumpy().copy()
    first = {}
    last = {}
    for _ in range(20):
        for keep in (1.0, 0.5):
            sizes = cnn.sizes_for_keep(keep)
            l = trainer.step(x, y, sizes=sizes)
            assert cnn.sizes == sizes
            first.setdefault(keep, l)
            last[keep] = l
    assert not np.allclose(cnn.network.conv2.weight.asnumpy(), before)
    for keep in (1.0, 0.5):
        assert last[keep] < 0.5 * first[keep]


def test_batches_cover_every_sample_once(rng):
    idx = np.concatenate(batches(103, 10, rng))
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert len(np.concatenate(batches(103, 10, drop_last=False))) == 103


def test_mnist_subset_split():
    xtr, ytr, xte, yte = mnist_subset(300, 100)
    assert xtr.shape == (300, 1, 28, 28) and xte.shape == (100, 1, 28, 28)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int32
    assert abs(float(xtr.mean())) < 1e-3 and abs(float(xtr.std()) - 1) < 1e-3
    assert set(np.unique(ytr)) == set(range(10))
    with pytest.raises(ValueError):
        mnist_subset(5000, 1)


def _train(model, x, y, epochs, sampler, seed=0):
    steps = len(x) // 50
    lr = nn.cosine_decay_lr(1e-4, 5e-3, steps * epochs, steps, epochs)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    trainer = RandomWidthTrainer(model, loss, nn.Adam(model.trainable_params(), learning_rate=lr), sampler, seed)
    trainer.fit(x, y, epochs=epochs, batch_size=50, progress=False)


def test_small_main_job_pruning_without_fine_tuning_beats_truncation():
    """Small version of the main job: an integral CNN trained with random
    widths keeps its accuracy at half width with no fine-tuning, while the
    same network trained at full width only and truncated to its first half
    of channels does not."""
    ms.set_context(mode=ms.GRAPH_MODE)
    xtr, ytr, xte, yte = mnist_subset(2000, 400, seed=1)
    # The zoo's mnist_cnn at half its widths, 10 epochs on 2,000 digits (at full widths and 16 epochs the
    # test took 2.4x as long: full 93.2 %, half 91.7 %, truncated 10.7 %). Two trained widths, 50 % and
    # 100 % (each compiles a train step: five levels cost 14 s more of CPU; measured full 81.8 %, half
    # 82.5 %). Measured here: full 85.0 %, half 88.0 %, truncated 12.0 %; at 5 epochs full is 41 %.
    widths = (8, 16, 32, 32, 64)

    ms.set_seed(0)
    inn = create_model("mnist_cnn", widths=widths)
    _train(inn, xtr, ytr, 10, WidthSampler(inn, low=0.5, levels=2))
    ms.set_seed(0)
    base = create_model("mnist_cnn", widths=widths, control_ratio=1.0)  # one value per channel: plain CNN
    _train(base, xtr, ytr, 10, None)

    # Scored in PyNative: four networks scored once each, nothing worth compiling.
    full = pynative_accuracy(inn, xte, yte)
    inn.resize(keep=0.5)
    half = pynative_accuracy(inn, xte, yte)
    half_plain = pynative_accuracy(inn.discretize(), xte, yte)
    truncated = pynative_accuracy(
        base.select_channels({g: np.arange(n) for g, n in base.sizes_for_keep(0.5).items()}), xte, yte)
    print(f"INN full {full:.3f}, INN half {half:.3f}, truncated half {truncated:.3f}")
    assert full > 0.8
    assert half >= full - 0.06
    assert abs(half_plain - half) < 1e-9
    assert half > truncated + 0.25


def test_fit_refuses_a_learning_rate_schedule_too_short(cnn, rng):
    """A schedule of one rate per step must cover every optimiser step of the
    fit (two per batch with the sandwich rule); MindSpore itself fails mid-run."""
    x = rng.normal(size=(8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=8).astype(np.int32)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    lr = nn.cosine_decay_lr(1e-4, 1e-3, 4, 2, 2)  # 4 rates: enough for 2 epochs of 2 batches
    opt = nn.Adam(cnn.trainable_params(), learning_rate=lr)
    sandwich = RandomWidthTrainer(cnn, loss, opt, WidthSampler(cnn, low=0.5, levels=2), sandwich=True)
    before = [p.asnumpy().copy() for p in cnn.trainable_params()]
    with pytest.raises(ValueError, match="schedule has 4 rates.*8 more optimiser steps"):
        sandwich.fit(x, y, epochs=2, batch_size=4, progress=False)
    assert all(np.array_equal(a, p.asnumpy()) for a, p in zip(before, cnn.trainable_params()))
    plain = RandomWidthTrainer(cnn, loss, opt, WidthSampler(cnn, low=0.5, levels=2))
    assert len(plain.fit(x, y, epochs=2, batch_size=4, progress=False)) == 2


def test_parameter_names_stay_the_same_through_training(rng):
    """Training wraps the network in a train step and pipeline B swaps
    partitions; neither renames a parameter (they used to become
    optimizer.network.* and net_with_loss._backbone.*), so name-keyed
    snapshots of the weights still apply."""
    from mindspore import nn
    from model_zoo import create_model
    from inn_ms.partition_tuning import tune_partitions
    model = create_model("mnist_cnn", widths=(4, 8, 8, 8, 16))
    names = [p.name for p in model.get_parameters()]
    assert names[0] == "network.conv1.weight"
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int32)
    opt = nn.Adam(model.trainable_params(), 1e-3)
    RandomWidthTrainer(model, nn.CrossEntropyLoss(), opt, WidthSampler(model), sandwich=True).fit(
        x, y, epochs=1, batch_size=4, progress=False)
    assert [p.name for p in model.get_parameters()] == names
    assert opt.moment1[0].name == "moment1.network.conv1.weight"
    tune_partitions(model, x, y, dict(model.sizes_for_keep(0.5)), batch_size=4)
    assert [p.name for p in model.get_parameters() if not p.name.endswith("theta")] == names
