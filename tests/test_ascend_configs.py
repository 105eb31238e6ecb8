"""Every Ascend config runs: its model, optimiser, schedule, loss, random
widths (multiples of 16) and evaluation, one training step on this CPU
machine. Only what cannot run here is overridden — the device (CPU,
PyNative, float32), the data paths (fixtures written here with the
layout the config names), the amount of data and a narrower ``width`` for
the ImageNet networks — and the run must end with a checkpoint, an
artifact that reloads to the same outputs, and a finite evaluation."""
import glob
import json
import os

import numpy as np
import pytest

from inn_ms.artifact import load_artifact
from inn_ms.config import load_config
from inn_ms.runner import train

from helpers import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "ascend_configs", "*_ascend.yaml")))
# ImageNet networks run at a quarter of their width and 32 px here (the point
# is the config, not the size); the rest keep their architecture.
NARROW = {"resnet18", "resnet18_separable", "resnet50", "resnet50_separable", "mobilenet_v2", "vgg19"}


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    """Tiny data sets in each layout the Ascend configs read."""
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data")
    cifar = root / "cifar10"
    cifar.mkdir()
    for name in ("data_batch_1.bin", "test_batch.bin"):  # the reader wants whole 10,000-record files
        rec = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
        rec[:, 0] = np.arange(10000) % 10
        rec.tofile(cifar / name)
    folder = root / "imagenet"
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            os.makedirs(folder / split / cls)
            for k in range(2):
                Image.fromarray(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(
                    folder / split / cls / f"{k}.png")
    pairs = root / "pairs"
    for d in ("lr", "hr", "val_lr", "val_hr"):
        (pairs / d).mkdir(parents=True)
    for k in range(2):  # x2 and x3 both divide 48
        hr = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        for split in ("", "val_"):
            Image.fromarray(hr).save(pairs / f"{split}hr" / f"{k}.png")
            for scale in (2, 3):
                small = np.asarray(Image.fromarray(hr).resize((48 // scale,) * 2, Image.BICUBIC))
                os.makedirs(pairs / f"x{scale}" / f"{split}lr", exist_ok=True)
                Image.fromarray(small).save(pairs / f"x{scale}" / f"{split}lr" / f"{k}.png")
    return {"cifar10": str(cifar), "imagefolder": str(folder), "pairs": str(pairs)}


def _smoke_overrides(cfg, roots, out):
    """What makes the Ascend config ``cfg`` run one step here."""
    sets = {"device.target": "CPU", "device.mode": "pynative", "device.amp_level": "O0",
            "device.loss_scale": None, "distributed": False, "output_dir": str(out),
            "train.epochs": 1, "train.max_steps": 1, "train.batch_size": 2, "data.num_workers": 1,
            "eval.batch_size": 4, "eval.widths": [1.0, 0.5]}
    d = cfg["data"]
    if d["name"] == "cifar10":
        sets.update({"data.root": roots["cifar10"], "data.n_train": 2, "data.n_test": 4})
    elif d["name"] == "imagefolder":
        sets.update({"data.root": roots["imagefolder"], "data.train_dir": None, "data.val_dir": None,
                     "data.image_size": 32, "data.n_train": 2, "data.n_test": 4})
    elif d["name"] == "paired":
        lr = os.path.join(roots["pairs"], f"x{d['scale']}")
        sets.update({"data.lr_dir": os.path.join(lr, "lr"), "data.hr_dir": os.path.join(roots["pairs"], "hr"),
                     "data.val_lr_dir": os.path.join(lr, "val_lr"),
                     "data.val_hr_dir": os.path.join(roots["pairs"], "val_hr"),
                     "data.patch_size": 12, "eval.tile": None})
    else:
        sets.update({"data.n_train": 2, "data.n_test": 4})
    if cfg["model"]["name"] in NARROW:
        sets["model.kwargs.width"] = 0.25
    return [f"{k}={json.dumps(v)}" for k, v in sets.items()]


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_ascend_config_trains_one_step_on_cpu(path, data_roots, tmp_path, rng):
    out = tmp_path / "run"
    cfg = load_config(path, _smoke_overrides(load_config(path), data_roots, out))
    original = load_config(path)
    for section in ("optimizer", "lr_schedule"):  # what the test keeps from the config
        assert cfg["train"][section] == original["train"][section]
    assert cfg["train"]["widths"] == original["train"]["widths"] and cfg["train"]["loss"] == original["train"]["loss"]
    result = train(cfg, resume=None, progress=False)
    assert result["step"] == 1 and len(result["losses"]) == 1 and np.isfinite(result["losses"][0])
    record = result["history"][-1]
    quality = record["psnr"] if cfg["task"] == "super_resolution" else record["top1"]
    assert np.isfinite(quality)
    # The artifact is the trained network: it computes what final.ckpt does.
    from mindspore import Tensor
    from inn_ms.checkpoint import load_checkpoint
    from inn_ms.runner import build_model
    shape = (1, 1, 16, 16) if cfg["task"] == "super_resolution" else (1, 1, 28, 28) \
        if cfg["data"]["name"] == "mnist_subset" else (1, 3, 32, 32) if cfg["data"]["name"] == "cifar10" \
        else (1, 3, 32, 32)
    x = Tensor(rng.normal(size=(2,) + shape[1:]).astype(np.float32))
    artifact, trained = load_artifact(str(out / "model.inn")), build_model(cfg)
    load_checkpoint(str(out / "final.ckpt"), trained)
    artifact.set_train(False)
    trained.set_train(False)
    np.testing.assert_allclose(artifact(x).asnumpy(), trained(x).asnumpy(), rtol=1e-5, atol=1e-5)
