"""Resuming training: a longer run continues from its checkpoint (the
learning-rate table is rebuilt from the config, not checked against the
file), a damaged newest checkpoint gives way to the previous one with a
warning, and history.json's loss of a resumed epoch is that of the whole
epoch. Tiny runs in PyNative mode, a few seconds each."""
import json
import logging
import os
import shutil

import mindspore as ms
import numpy as np
import pytest

from inn_ms.checkpoint import checkpoint_name, list_checkpoints, load_checkpoint, save_checkpoint
from inn_ms.config import load_config
from inn_ms.runner import train

from helpers import ROOT

CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")
# 32 digits, batch 16: 2 steps per epoch, a checkpoint after every step.
TINY = ["data.n_train=32", "data.n_test=16", "train.batch_size=16", "model.kwargs.widths=[4,4,4,4,8]",
        "device.mode=pynative", "train.save_every_steps=1", "train.keep_checkpoints=20", "train.epochs=1"]


def _train(out, *overrides, resume="auto"):
    cfg = load_config(CONFIG, TINY + [f"output_dir={out}"] + list(overrides))
    return train(cfg, resume=resume, progress=False)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted epoch: the folder and the summary."""
    out = tmp_path_factory.mktemp("straight")
    return out, _train(out)


def _copy(straight, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight[0], out)
    return out


def test_resume_with_more_epochs_continues_on_the_new_schedule(straight, tmp_path):
    """Before: 'does not fit ... optimizer.learning_rate.learning_rate: (2,) vs (4,)'."""
    out = _copy(straight, tmp_path)
    saved = ms.load_checkpoint(str(out / checkpoint_name(1, 2)))
    assert not [k for k in saved if "learning_rate" in k]  # the table is the config's, not the file's
    second = _train(out, "train.epochs=2")
    assert os.path.basename(second["resumed_from"]) == checkpoint_name(1, 2)
    assert second["step"] == 4 and len(second["losses"]) == 2
    assert [h["step"] for h in second["history"]] == [2, 4]
    # The optimiser went on counting (its step indexes the new table), not from 0.
    last = ms.load_checkpoint(str(out / checkpoint_name(2, 4)))
    assert last["optimizer.global_step"].asnumpy().item() == 4


def test_a_checkpoint_cut_between_two_entries_is_refused(tmp_path):
    """Cut at an entry boundary, MindSpore's reader returns the entries before
    the cut without complaint (before: resumed with the last position entry
    missing, read as 0); the entry count the file starts with catches it."""
    from mindspore import nn
    from model_zoo import create_model
    model = create_model("mnist_cnn", widths=(4, 4, 4, 4, 8))
    opt = nn.Adam(model.trainable_params(), learning_rate=[0.01, 0.01, 0.01])
    path = save_checkpoint(str(tmp_path / checkpoint_name(0, 2)), model, opt, epoch=0, step=2, epoch_step=2,
                           global_batch=16)
    data = open(path, "rb").read()
    entries = len(ms.load_checkpoint(path))
    for keep in range(len(data) - 1, 0, -1):  # the longest prefix MindSpore reads: all entries but the last
        with open(path, "wb") as f:
            f.write(data[:keep])
        try:
            if len(ms.load_checkpoint(path)) == entries - 1:
                break
        except ValueError:
            continue
    with pytest.raises(ValueError, match=f"checkpoint {path} is incomplete"):
        load_checkpoint(path, model, opt)


def test_training_falls_back_to_the_previous_checkpoint(straight, tmp_path, caplog):
    """The newest checkpoint cut short (a full disk while copying it, say):
    the run resumes from the one before, warns naming the damaged file and
    keeps it aside, and ends as the uninterrupted run did. Before: 'cannot be read'."""
    out = _copy(straight, tmp_path)
    newest = str(out / checkpoint_name(1, 2))
    assert list_checkpoints(str(out))[-1] == newest
    data = open(newest, "rb").read()
    with open(newest, "wb") as f:
        f.write(data[:len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="inn_ms"):
        resumed = _train(out)
    assert os.path.basename(resumed["resumed_from"]) == checkpoint_name(0, 1)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(newest in m and "previous checkpoint" in m for m in warned), warned
    assert os.path.exists(newest + ".damaged") and os.path.exists(newest)
    assert resumed["step"] == 2
    np.testing.assert_allclose(resumed["losses"], straight[1]["losses"][1:], rtol=1e-5)


def test_history_loss_of_a_resumed_epoch_covers_the_whole_epoch(straight, tmp_path):
    """Stopped after 1 of 2 batches and resumed: the epoch's loss is the mean
    of both batch losses, as in the uninterrupted run (before: of the last one)."""
    both = straight[1]["losses"]
    out = tmp_path / "run"
    _train(out, "train.max_steps=1")
    resumed = _train(out)
    np.testing.assert_allclose(resumed["losses"], both[1:], rtol=1e-5)
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]
    assert history[0]["loss"] == pytest.approx(both[0], rel=1e-6)
    assert history[-1]["loss"] == pytest.approx(float(np.mean(both)), rel=1e-5)
    assert history[-1]["loss"] == pytest.approx(straight[1]["history"][-1]["loss"], rel=1e-5)
