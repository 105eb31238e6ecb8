"""Bad data and set-up inputs are named before training starts: a broken
image in an ImageFolder (train or validation split; before: an unnamed
pipeline error after most of an epoch, or a SIGFPE that killed the process),
a typo in ``model.kwargs``, ``widths`` of the wrong length, a device the
MindSpore build cannot use."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from inn_ms.cli import main
from inn_ms.config import ConfigError, load_config

from helpers import ROOT, script_env

CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")


def _folder(root):
    """train/ and val/ with two classes of four 48x48 JPEGs each."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            os.makedirs(root / split / cls)
            for k in range(4):
                pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"img{k}.jpg", quality=95)
    return root


def _break(path, how):
    data = path.read_bytes()
    cut = {"garbage": b"<html>404 not found</html>", "empty": b"",
           "cut in the scan": data[:len(data) * 3 // 10], "cut after the header": data[:200]}[how]
    if how == "cut in the scan":  # headers whole (Pillow's verify passes), pixels missing (MindSpore fails)
        from PIL import Image
        import mindspore.dataset.vision as vision
        path.write_bytes(cut)
        with Image.open(path) as im:
            im.verify()
        with pytest.raises(RuntimeError):
            vision.Decode()(np.frombuffer(cut, np.uint8))
        for dump in glob.glob("abnormal_image.*"):  # the copy MindSpore makes of an image it cannot decode
            os.remove(dump)
    path.write_bytes(cut)


def _argv(root, out, command="train"):
    sets = [f"data.root={root}", "data.name=imagefolder", "data.image_size=16", "data.augment=false",
            "model.kwargs={widths: [4, 4, 4, 4, 8], in_channels: 3}", "model.num_classes=2",
            "train.batch_size=4", "train.epochs=1", "device.mode=pynative", f"output_dir={out}"]
    argv = [command, "--config", CONFIG, "--quiet"] + (["--no-resume"] if command == "train" else [])
    for s in sets:
        argv += ["--set", s]
    return argv


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("inn-ms: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("split, how", [("train", "garbage"), ("train", "empty"), ("val", "cut in the scan")])
def test_broken_image_is_named_before_training(tmp_path, monkeypatch, capsys, split, how):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    root = _folder(tmp_path / "data")
    bad = root / split / "dog" / "img2.jpg"
    _break(bad, how)
    out = tmp_path / "run"
    assert main(_argv(root, out)) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(bad) in line and "1 of 8 files" in line, line
    assert not os.path.exists(out) or not [f for f in os.listdir(out) if f.endswith(".ckpt")]
    assert not os.listdir(tmp_path / "cwd")  # not even the copy MindSpore's decoder makes of a broken image


def test_jpeg_cut_after_its_header_is_named_not_a_crash(tmp_path):
    """MindSpore's decoder dies of SIGFPE on this file: a subprocess, as a user runs it."""
    root = _folder(tmp_path / "data")
    bad = root / "train" / "cat" / "img1.jpg"
    _break(bad, "cut after the header")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py")] + _argv(root, tmp_path / "run")[1:],
                       cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert str(bad) in _one_line(r.stderr)


def test_eval_names_a_broken_validation_image(tmp_path, capsys):
    root = _folder(tmp_path / "data")
    bad = root / "val" / "cat" / "img0.jpg"
    _break(bad, "garbage")
    (tmp_path / "c.ckpt").write_bytes(b"never read")
    assert main(_argv(root, tmp_path / "run", "eval") + ["--checkpoint", str(tmp_path / "c.ckpt")]) == 2
    assert f"{bad} (not an image)" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("override, words", [
    ("model.kwargs.widht=[8, 8, 8, 8, 8]", ["model.kwargs", "'widht'", "did you mean 'widths'"]),
    ("model.kwargs.num_classes=3", ["model.kwargs", "model.num_classes"]),
])
def test_model_kwargs_typo_is_named_at_config_validation(override, words):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, [override])
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("widths", ["[8, 16]", "[8, 16, 16, 16, 32, 64]", "[8, 0, 16, 16, 32]"])
def test_wrong_widths_are_named_at_set_up(tmp_path, capsys, widths):
    """Before: 'not enough values to unpack (expected 5, got 2)' or a MindSpore shape error."""
    argv = ["train", "--config", CONFIG, "--quiet", "--no-resume", "--set", f"model.kwargs.widths={widths}",
            "--set", f"output_dir={tmp_path}", "--set", "device.mode=pynative"]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "mnist_cnn: widths must be 5 channel counts (conv1, conv2, conv3, conv4, fc1)" in line, line
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".ckpt")]


def test_a_device_the_build_lacks_is_named(tmp_path, capsys):
    import mindspore as ms
    if ms.hal.is_available("GPU"):
        pytest.skip("this MindSpore can use a GPU")
    argv = ["train", "--config", CONFIG, "--quiet", "--set", "device.target=GPU", "--set", f"output_dir={tmp_path}"]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "device.target is GPU" in line and "CPU" in line, line
    assert ms.get_context("device_target") == "CPU"
