"""The sandwich rule of random-width training: which widths every batch
trains (none, the full width, or the full and the smallest width before the
sampled one), the optimiser steps that takes, and the config key."""
import numpy as np
import pytest
from mindspore import nn

from inn_ms.config import ConfigError, validate
from inn_ms.train import RandomWidthTrainer, WidthSampler, check_sandwich, steps_per_batch
from model_zoo import create_model


@pytest.fixture
def cnn():
    return create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))


def test_steps_per_batch_and_accepted_values():
    assert [steps_per_batch(s) for s in (False, True, "full", "both")] == [1, 2, 2, 3]
    assert steps_per_batch("both", sampled=False) == 1  # no sampler: full width only, one step
    assert check_sandwich(True) == "full" and check_sandwich(None) is False
    with pytest.raises(ValueError, match="sandwich must be"):
        check_sandwich("smallest")


def test_smallest_is_the_least_the_sampler_draws(cnn, rng):
    joint = WidthSampler(cnn, low=0.5, levels=3)
    assert dict(joint.smallest()) == dict(joint.configurations()[0])
    per_group = WidthSampler(cnn, low=0.5, per_group=True, multiple_of=4)
    least = per_group.smallest()
    drawn = [per_group.sample(rng) for _ in range(100)]
    assert all(d[g] >= least[g] for d in drawn for g in least)
    assert all(any(d[g] == least[g] for d in drawn) for g in least)  # and it is drawn


@pytest.mark.parametrize("sandwich, per_batch", [(False, ["sampled"]), (True, ["full", "sampled"]),
                                                 ("both", ["full", "smallest", "sampled"])])
def test_every_batch_trains_the_sandwich_widths_then_the_sampled_one(cnn, rng, sandwich, per_batch):
    sampler = WidthSampler(cnn, low=0.5, levels=3)
    full, smallest = dict(cnn.full_sizes), dict(sampler.smallest())
    configurations = [dict(c) for c in sampler.configurations()]
    x = rng.normal(size=(8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=8).astype(np.int32)
    opt = nn.Adam(cnn.trainable_params(), learning_rate=1e-3)
    trainer = RandomWidthTrainer(cnn, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), opt,
                                 sampler, sandwich=sandwich)
    seen = []
    step = trainer.step

    def record(xb, yb, sizes=None):
        loss = step(xb, yb, sizes)
        seen.append(dict(cnn.sizes))  # the sizes the step ran at
        return loss

    trainer.step = record
    trainer.fit(x, y, epochs=1, batch_size=4, progress=False)
    assert len(seen) == 2 * len(per_batch) == 2 * trainer.steps_per_batch
    assert int(opt.global_step.asnumpy().reshape(-1)[0]) == len(seen)  # one optimiser step each
    for k, sizes in enumerate(seen):
        kind = per_batch[k % len(per_batch)]
        if kind == "full":
            assert sizes == full
        elif kind == "smallest":
            assert sizes == smallest
        else:
            assert sizes in configurations


def test_config_accepts_the_sandwich_choices_and_the_training_rule():
    base = {"model": {"name": "mnist_cnn"}, "data": {"name": "mnist_subset"}}
    for value, expected in ((True, True), (False, False), ("both", "both"), ("Full", "full")):
        cfg = validate(dict(base, train={"sandwich": value}))
        assert cfg["train"]["sandwich"] == expected
    assert validate(dict(base, train={"resampling": "antialiased"}))["train"]["resampling"] == "antialiased"
    with pytest.raises(ConfigError, match="train.sandwich must be"):
        validate(dict(base, train={"sandwich": "smallest"}))
    with pytest.raises(ConfigError, match="train.resampling must be one of"):
        validate(dict(base, train={"resampling": "nearest"}))
