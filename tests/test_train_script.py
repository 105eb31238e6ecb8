"""scripts/train.py and scripts/eval.py as a user runs them (subprocesses,
tiny CPU config): checkpoints every step, a run SIGKILLed after its first
checkpoint resumes from the saved step and ends with the weights of an
uninterrupted run; eval prints top-1/top-5 per width and a plot. Also the
learning-rate schedules and the checkpoint files themselves."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from inn_ms.checkpoint import checkpoint_name, latest_checkpoint, list_checkpoints, load_checkpoint, \
    save_checkpoint
from inn_ms.runner import lr_schedule

from helpers import ROOT, checkpoint_weights as _weights, run_script as _run, script_env as _env

CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")
# 128 digits, batch 16: 8 steps per epoch, 16 in all, a checkpoint after every step.
SETTINGS = ["train.batch_size=16", "train.save_every_steps=1", "train.keep_checkpoints=50"]
STEPS = 16


def _cmd(script, *args):
    return [sys.executable, os.path.join(ROOT, "scripts", script), *args]


def _train_cmd(out, *extra):
    args = ["--config", CONFIG, "--quiet"]
    for s in SETTINGS + [f"output_dir={out}"] + list(extra):
        args += ["--set", s]
    return _cmd("train.py", *args)


def test_lr_schedules():
    sched = {"name": "cosine", "warmup_epochs": 1.0, "min_lr": 0.01, "milestones": [], "gamma": 0.1}
    r = np.array(lr_schedule(sched, 1.0, epochs=3, steps_per_epoch=4))
    assert len(r) == 12
    np.testing.assert_allclose(r[:4], 0.01 + 0.99 * np.arange(1, 5) / 4, rtol=1e-6)  # linear warm-up
    np.testing.assert_allclose(r[4:], 0.01 + 0.495 * (1 + np.cos(np.pi * np.arange(8) / 8)), rtol=1e-6)
    step = dict(sched, name="step", warmup_epochs=0.0, milestones=[1, 2], gamma=0.5)
    np.testing.assert_allclose(lr_schedule(step, 0.8, 3, 2), [0.8, 0.8, 0.4, 0.4, 0.2, 0.2], rtol=1e-6)
    const = dict(sched, name="constant", warmup_epochs=0.0)
    assert lr_schedule(const, 0.3, 2, 3) == pytest.approx([0.3] * 6)


def test_checkpoint_files(tmp_path):
    import mindspore as ms
    from mindspore import nn
    from model_zoo import create_model
    ms.set_seed(0)
    model = create_model("mnist_cnn", widths=(4, 4, 4, 4, 8))
    opt = nn.Adam(model.trainable_params(), learning_rate=0.01)
    path = save_checkpoint(str(tmp_path / checkpoint_name(1, 7)), model, opt, epoch=1, step=7, epoch_step=3,
                           global_batch=32)
    entries = _weights(path)
    assert "network.conv1.weight" in entries and "optimizer.moment1.network.conv1.weight" in entries
    assert "optimizer.global_step" in entries and "optimizer.learning_rate" not in entries
    # A save killed half-way leaves only a temporary (inn_ms.fileio's, MindSpore's own beside it, or one
    # of the name used before), which is ignored and removed.
    leftovers = [".ckpt_e0001_s00000009.k3x9.partial.ckpt", ".ckpt_e0001_s00000009.k3x9.partial.tmp",
                 "ckpt_e0001_s00000009.tmp.ckpt"]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"\x00" * 10)
    assert latest_checkpoint(str(tmp_path)) == path
    assert not [name for name in leftovers if (tmp_path / name).exists()]
    save_checkpoint(str(tmp_path / checkpoint_name(2, 10)), model, opt, epoch=2, step=10, global_batch=32, keep=1)
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == ["ckpt_e0002_s00000010.ckpt"]

    other = create_model("mnist_cnn", widths=(4, 4, 4, 4, 8))
    before = other.network.conv1.weight.asnumpy().copy() if hasattr(other.network.conv1, "weight") else None
    pos = load_checkpoint(str(tmp_path / checkpoint_name(2, 10)), other)
    assert pos == {"epoch": 2, "step": 10, "epoch_step": 0, "global_batch": 32, "epoch_loss": 0.0}
    opt2 = nn.Adam(other.trainable_params(), learning_rate=0.01)
    opt.moment1[0].set_data(opt.moment1[0] + 1.5)  # not the freshly initialised state
    save_checkpoint(str(tmp_path / "with_moments.ckpt"), model, opt)
    load_checkpoint(str(tmp_path / "with_moments.ckpt"), other, opt2)
    for p, q in zip(opt.moment1, opt2.moment1):
        np.testing.assert_array_equal(p.asnumpy(), q.asnumpy(), err_msg=p.name)
    assert float(np.abs(opt2.moment1[0].asnumpy()).min()) >= 1.5
    for (n, p), (_, q) in zip(model.parameters_and_names(), other.parameters_and_names()):
        np.testing.assert_array_equal(p.asnumpy(), q.asnumpy(), err_msg=n)
    assert before is None or not np.array_equal(before, other.network.conv1.weight.asnumpy())

    wider = create_model("mnist_cnn", widths=(4, 4, 4, 4, 16))
    with pytest.raises(ValueError, match="does not fit, nothing loaded.*fc1"):
        load_checkpoint(str(tmp_path / checkpoint_name(2, 10)), wider)
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(str(tmp_path / "broken.ckpt"), other)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    log = _run(_train_cmd(out))
    return out, log


def test_train_writes_checkpoints_history_and_artifact(uninterrupted):
    out, log = uninterrupted
    assert f"trained mnist_cnn to step {STEPS}" in log
    assert re.search(r"epoch 1/2 step 8: loss [\d.]+, full-width top-1", log)
    names = [os.path.basename(p) for p in list_checkpoints(str(out))]
    assert names[0] == checkpoint_name(0, 1) and names[-1] == checkpoint_name(2, STEPS) and len(names) == STEPS
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [8, 16] and all(0 <= h["top1"] <= h["top5"] <= 1 for h in history)
    assert (out / "final.ckpt").exists() and (out / "model.inn").exists() and (out / "config.yaml").exists()
    assert not list(out.glob("*.tmp*"))


def test_killed_run_resumes_and_matches_uninterrupted(uninterrupted, tmp_path):
    straight, _ = uninterrupted
    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(out), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list_checkpoints(str(out)):
            assert proc.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final.ckpt").exists(), "killed too late to test resuming"
    saved = latest_checkpoint(str(out), clean=False)
    step = int(re.search(r"_s(\d+)\.ckpt$", saved).group(1))
    assert 1 <= step < STEPS

    log = _run(_train_cmd(out))
    m = re.search(r"resumed from (\S+): epoch (\d+), step (\d+)", log)
    assert m, log[-3000:]
    assert os.path.basename(m.group(1)) == os.path.basename(saved) and int(m.group(3)) == step
    assert f"trained mnist_cnn to step {STEPS}" in log
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["step"] == STEPS

    a, b = _weights(str(straight / "final.ckpt")), _weights(str(out / "final.ckpt"))
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-12)) for k in a)
    print(f"killed after step {step}, resumed: max relative weight difference to the uninterrupted run {worst:.3g}")
    assert worst <= 1e-5, worst


def test_eval_table_plot_and_artifact(uninterrupted, tmp_path):
    out, _ = uninterrupted
    history = json.loads((out / "history.json").read_text())
    stem = tmp_path / "eval"
    log = _run(_cmd("eval.py", "--config", CONFIG, "--checkpoint", str(out / "final.ckpt"), "--widths", "1.0",
                    "0.75", "0.5", "--out", str(stem), "--quiet"))
    rows = re.findall(r"^\s*(1\.00|0\.75|0\.50)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%", log, re.M)
    assert [r[0] for r in rows] == ["1.00", "0.75", "0.50"], log
    table = json.loads((stem.with_suffix(".json")).read_text())["rows"]
    params = [r["params"] for r in table]
    assert params[0] > params[1] > params[2] and table[0]["compression"] == 0
    assert all(r["top1"] <= r["top5"] for r in table)
    # Full width: the same accuracy the training run measured after its last epoch.
    assert table[0]["top1"] == pytest.approx(history[-1]["top1"]) and table[0]["samples"] == 64
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The integral artifact gives the same table.
    log2 = _run(_cmd("eval.py", "--config", CONFIG, "--checkpoint", str(out / "model.inn"), "--widths", "1.0",
                     "0.75", "0.5", "--out", str(tmp_path / "eval_inn"), "--quiet"))
    table2 = json.loads((tmp_path / "eval_inn.json").read_text())["rows"]
    assert [(r["top1"], r["top5"], r["params"]) for r in table2] == [(r["top1"], r["top5"], r["params"]) for r in table]
    assert "top-1" in log2


def test_mixed_precision_and_max_steps(uninterrupted, tmp_path):
    """O2 (float16 except BatchNorm, loss scale 1024) runs on CPU too: 4 steps
    (max_steps, mid-epoch) land near the float32 run's weights after step 4."""
    straight, _ = uninterrupted
    out = tmp_path / "amp"
    log = _run(_train_cmd(out, "device.amp_level=O2", "train.max_steps=4"))
    assert "trained mnist_cnn to step 4" in log
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 0.5
    half, full = _weights(str(out / "final.ckpt")), _weights(str(straight / checkpoint_name(0, 4)))
    assert all(half[k].dtype == np.float32 for k in half)  # master weights stay float32
    moved = max(float(np.abs(full[k] - half[k]).max() / np.abs(full[k]).max()) for k in half)
    print(f"O2 vs float32 after 4 steps: max relative weight difference {moved:.3g}")
    assert 0 < moved < 0.05, moved
