"""Super resolution through the config runner (scripts/train.py and
scripts/eval.py as a user runs them, tiny CPU configs): an SRCNN run trains,
logs loss and PSNR per epoch, writes checkpoints and resumes mid-epoch to
the weights of an uninterrupted run; eval reports PSNR/SSIM at every width
beside bicubic, and its full-width PSNR is the one of the model's own
outputs on whole images scored with inn_ms.data.sr. EDSR (LR input) runs
the same way. Config errors name the key."""
import json
import os
import re
import sys

import numpy as np
import pytest

from inn_ms.config import ConfigError, load_config, validate

from helpers import ROOT, checkpoint_weights as _weights, run_script

SRCNN = os.path.join(ROOT, "ascend_configs", "srcnn_cpu.yaml")
EDSR = os.path.join(ROOT, "ascend_configs", "edsr_cpu.yaml")
STEPS = 8  # srcnn_cpu: 64 patches per epoch, batch 16, 2 epochs


def _run(script, config, *args, sets=()):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", script), "--config", config, "--quiet", *args]
    for s in sets:
        cmd += ["--set", s]
    return run_script(cmd)


@pytest.fixture(scope="module")
def srcnn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("srcnn")
    return out, _run("train.py", SRCNN, sets=[f"output_dir={out}"])


def test_srcnn_trains_with_checkpoints_and_psnr_per_epoch(srcnn_run):
    out, log = srcnn_run
    assert re.search(r"epoch 1/2 step 4: loss [\d.]+, full-width PSNR [\d.]+ dB, SSIM 0\.\d+", log), log[-2000:]
    assert f"trained srcnn to step {STEPS}" in log and "full-width PSNR" in log
    assert sorted(os.path.basename(p) for p in out.glob("ckpt_*.ckpt")) == \
        ["ckpt_e0001_s00000004.ckpt", "ckpt_e0002_s00000008.ckpt"]
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [4, STEPS]
    assert all(h["loss"] > 0 and 10 < h["psnr"] < 60 and 0 < h["ssim"] <= 1 for h in history)
    assert (out / "final.ckpt").exists() and (out / "model.inn").exists()
    assert load_config(str(out / "config.yaml"))["task"] == "super_resolution"  # the recorded config reloads


def test_srcnn_eval_psnr_equals_model_outputs_scored_directly(srcnn_run, tmp_path):
    out, _ = srcnn_run
    stem = tmp_path / "eval"
    log = _run("eval.py", SRCNN, "--checkpoint", str(out / "final.ckpt"), "--widths", "1.0", "0.75", "0.5",
               "--out", str(stem))
    labels = re.findall(r"^(bicubic|INN keep [\d.]+)\s", log, re.M)
    assert labels == ["bicubic", "INN keep 1.00", "INN keep 0.75", "INN keep 0.50"], log
    rows = json.loads(stem.with_suffix(".json").read_text())["rows"]
    assert [r["keep"] for r in rows] == [None, 1.0, 0.75, 0.5]
    assert rows[1]["params"] > rows[2]["params"] > rows[3]["params"] and rows[1]["compression"] == 0
    assert rows[1]["sizes"] == {"c1": 16, "c2": 8} and rows[3]["sizes"] == {"c1": 8, "c2": 4}
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Reference: the trained network run on each whole test image (no tiles), scored by inn_ms.metrics.
    import mindspore as ms
    from mindspore import Tensor
    from inn_ms import metrics
    from inn_ms.data import sr as data_sr
    from inn_ms.checkpoint import load_checkpoint
    from inn_ms.runner import build_model
    cfg = load_config(SRCNN)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model = build_model(cfg)
    load_checkpoint(str(out / "final.ckpt"), model)
    model.set_train(False)
    pairs = data_sr.photo_pairs(data_sr.TEST_PHOTOS, 3, max_side=48)
    full, bicubic = {}, {}
    for name, hr, _, up in pairs:
        pred = np.clip(model(Tensor(up[None, None].astype(np.float32))).asnumpy()[0, 0], 0, 1)
        full[name] = metrics.psnr(pred, hr, border=3)
        bicubic[name] = metrics.psnr(up, hr, border=3)
    for name in full:
        assert rows[1]["per_image"][name]["psnr"] == pytest.approx(full[name], abs=1e-4)
        assert rows[0]["per_image"][name]["psnr"] == pytest.approx(bicubic[name], abs=1e-9)
    assert rows[1]["psnr"] == pytest.approx(np.mean(list(full.values())), abs=1e-4)
    # the run's own last-epoch evaluation scored the same network
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["psnr"] == pytest.approx(rows[1]["psnr"], abs=1e-6)


def test_srcnn_resumed_mid_epoch_matches_uninterrupted(srcnn_run, tmp_path):
    straight, _ = srcnn_run
    out = tmp_path / "resumed"
    log = _run("train.py", SRCNN, sets=[f"output_dir={out}", "train.max_steps=5"])  # stops in epoch 2
    assert "trained srcnn to step 5" in log and not list(out.glob("ckpt_e0002*"))
    log = _run("train.py", SRCNN, sets=[f"output_dir={out}"])
    assert re.search(r"resumed from \S+ckpt_e0001_s00000005\.ckpt: epoch 1, step 5", log), log[-3000:]
    a, b = _weights(str(straight / "final.ckpt")), _weights(str(out / "final.ckpt"))
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-12)) for k in a)
    assert worst <= 1e-6, worst


def test_edsr_trains_and_evaluates_from_lr_input(tmp_path):
    out = tmp_path / "edsr"
    log = _run("train.py", EDSR, sets=[f"output_dir={out}", "train.max_steps=2"])
    assert "trained edsr to step 2" in log and "full-width PSNR" in log
    cfg = load_config(EDSR)
    assert cfg["data"]["scale"] == 2 and cfg["train"]["loss"] == "l1"  # from model.kwargs.scale
    log = _run("eval.py", EDSR, "--checkpoint", str(out / "model.inn"), "--out", str(tmp_path / "ev"))
    rows = json.loads((tmp_path / "ev.json").read_text())["rows"]
    assert [r["keep"] for r in rows] == [None, 1.0, 0.75, 0.5]  # eval.widths of the config
    assert rows[1]["sizes"]["feat"] == 8 and rows[3]["sizes"]["feat"] == 4
    assert 25 < rows[0]["psnr"] < 40 and all(np.isfinite(r["psnr"]) for r in rows)
    # The artifact rebuilt by eval is the network the run scored after its last step.
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["step"] == 2 and rows[1]["psnr"] == pytest.approx(history[-1]["psnr"], abs=1e-6)


def test_patch_source_is_a_function_of_seed_epoch_and_index(tmp_path):
    from PIL import Image
    from inn_ms.data import build_source, sr as data_sr
    rng = np.random.default_rng(0)
    for d in ("lr", "hr", "vlr", "vhr"):
        (tmp_path / d).mkdir()
    for n in ("a.png", "b.png"):
        hr = (rng.random((24, 30, 3)) * 255).astype(np.uint8)
        Image.fromarray(hr).save(tmp_path / "hr" / n)
        Image.fromarray(hr).save(tmp_path / "vhr" / n)
        lr = (rng.random((12, 15, 3)) * 255).astype(np.uint8)
        Image.fromarray(lr).save(tmp_path / "lr" / n)
        Image.fromarray(lr).save(tmp_path / "vlr" / n)
    cfg = validate({"model": {"name": "edsr", "kwargs": {"n_resblocks": 1, "n_feats": 4, "channels": 1}},
                    "data": {"name": "paired", "lr_dir": str(tmp_path / "lr"), "hr_dir": str(tmp_path / "hr"),
                             "val_lr_dir": str(tmp_path / "vlr"), "val_hr_dir": str(tmp_path / "vhr"),
                             "patch_size": 5, "n_train": 6}})
    src = build_source(cfg["data"], train=True, upscaled=False)
    assert src.size == 6
    x, y = src.sample(3, epoch=1, seed=7, augment=False)
    np.testing.assert_array_equal(x, src.sample(3, epoch=1, seed=7, augment=False)[0])
    assert not np.array_equal(x, src.sample(3, epoch=2, seed=7, augment=False)[0])
    assert x.shape == (1, 5, 5) and y.shape == (1, 10, 10)
    lr, hr = data_sr.read_y(tmp_path / "lr" / "b.png"), data_sr.read_y(tmp_path / "hr" / "b.png")  # sample 3: b
    hits = [(i, j) for i in range(8) for j in range(11) if np.allclose(lr[i:i + 5, j:j + 5], x[0], atol=1e-6)]
    assert len(hits) == 1
    i, j = hits[0]
    np.testing.assert_allclose(hr[2 * i:2 * i + 10, 2 * j:2 * j + 10], y[0], atol=1e-6)
    batches = list(src.batches([5, 0, 3, 1], 2, epoch=1, seed=7, augment=False))
    assert len(batches) == 2 and batches[1][0].shape == (2, 1, 5, 5)
    np.testing.assert_array_equal(batches[1][0][0], x)
    threaded = list(src.batches([5, 0, 3, 1], 2, epoch=1, seed=7, augment=True, workers=3))
    for (xa, ya), (xb, yb) in zip(threaded, src.batches([5, 0, 3, 1], 2, epoch=1, seed=7, augment=True)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    pairs = build_source(cfg["data"], train=False, upscaled=False)
    assert [p[0] for p in pairs] == ["a.png", "b.png"] and pairs[1][2].shape == (12, 15) and pairs[1][3] is None


SR = {"model": {"name": "srcnn"}, "data": {"name": "skimage_photos", "scale": 3}}


def _with(base, **sections):
    raw = {k: dict(v) for k, v in base.items()}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return raw


def test_sr_task_and_defaults_inferred():
    cfg = validate(SR)
    assert cfg["task"] == "super_resolution" and cfg["train"]["loss"] == "l1"
    assert cfg["model"]["num_classes"] is None and cfg["data"]["patch_size"] == 33
    cfg = validate({"model": {"name": "edsr", "kwargs": {"scale": 4}}, "data": {"name": "skimage_photos"}})
    assert cfg["data"]["scale"] == 4 and cfg["data"]["patch_size"] == 48
    cfg = validate({"model": {"name": "mnist_cnn"}, "data": {"name": "digits"}})
    assert cfg["task"] == "classification" and cfg["model"]["num_classes"] == 10
    assert cfg["train"]["loss"] == "cross_entropy"


@pytest.mark.parametrize("raw, words", [
    (_with(SR, model={"num_classes": 10}), ["model.num_classes", "srcnn"]),
    (_with(SR, data={"name": "cifar10", "root": "/x", "scale": None}), ["data.name", "cifar10", "skimage_photos"]),
    (_with(SR, data={"scale": None}), ["data.scale", "required"]),
    (_with(SR, train={"loss": "cross_entropy"}), ["train.loss", "l1 or mse"]),
    (_with(SR, train={"label_smoothing": 0.1}), ["train.label_smoothing"]),
    (_with(SR, data={"image_size": 32}), ["data.image_size", "classification only"]),
    (_with(SR, task="classification"), ["task", "super_resolution network"]),
    (_with(SR, data={"name": "paired"}), ["data.lr_dir", "paired"]),
    (_with(SR, data={"lr_dir": "/x"}), ["data.lr_dir", "paired only"]),
    ({"model": {"name": "edsr", "kwargs": {"scale": 2}}, "data": {"name": "skimage_photos", "scale": 3}},
     ["data.scale", "x2", "model.kwargs.scale"]),
    ({"model": {"name": "mnist_cnn"}, "data": {"name": "skimage_photos"}}, ["data.name", "super-resolution data"]),
    ({"model": {"name": "mnist_cnn"}, "data": {"name": "digits", "scale": 2}}, ["data.scale", "super resolution only"]),
    ({"model": {"name": "mnist_cnn"}, "data": {"name": "digits"}, "train": {"loss": "mse"}}, ["train.loss"]),
    (_with(SR, task="segmentation"), ["task", "super_resolution"]),
])
def test_sr_config_errors_name_the_key(raw, words):
    with pytest.raises(ConfigError) as e:
        validate(raw)
    for w in words:
        assert w in str(e.value)
