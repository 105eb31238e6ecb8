"""One YAML config drives a model from PyTorch weights to MindIR:
``inn-ms convert --config`` (the weights named by ``model.convert.weights``),
training from the converted artifact (``model.checkpoint: X.inn``) and
``inn-ms prune --config``. References: the real PyTorch network the
bundled checkpoint was trained as, and the in-memory pruned network."""
import importlib.util
import os

import numpy as np
import pytest
from mindspore import Tensor

from inn_ms.artifact import load_artifact, read_manifest
from inn_ms.cli import main
from inn_ms.config import load_config
from inn_ms.export import load_mindir
from inn_ms.prune import prune
from inn_ms.runner import build_model
from model_zoo.mnist_torch_cnn import bundled_checkpoint

from helpers import ROOT, run

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TORCH_CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_torch_cnn_cpu.yaml")
ZOO_CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")


def _sets(*overrides):
    return [a for o in overrides for a in ("--set", o)]


def _torch_reference():
    """The PyTorch network of scripts/make_torch_checkpoint.py with the
    bundled weights: what the converted artifact must compute."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    spec = importlib.util.spec_from_file_location("make_torch_checkpoint",
                                                  os.path.join(ROOT, "scripts", "make_torch_checkpoint.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.TorchMnistNet()
    net.load_state_dict(load_file(bundled_checkpoint()))
    return torch, net.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``inn-ms convert --config``: the weights come from
    ``model.convert.weights``, not the builder's own ``checkpoint_torch``."""
    out = tmp_path_factory.mktemp("run")
    overrides = [f"output_dir={out}", "model.kwargs={}", f"model.convert.weights={bundled_checkpoint()}"]
    assert main(["convert", "--config", TORCH_CONFIG] + _sets(*overrides)) == 0
    return out, overrides


def test_convert_from_config_computes_the_pytorch_network(converted, capsys, rng):
    out, _ = converted
    path = out / "converted.inn"
    assert path.is_file() and not list(out.glob("*.tmp*"))
    arch = read_manifest(str(path))["architecture"]
    assert arch["builder"] == "mnist_torch_cnn" and arch["input_shape"] == [1, 1, 28, 28]
    torch, reference = _torch_reference()
    x = rng.normal(size=(4, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    model = load_artifact(str(path))
    model.set_train(False)
    got = model(Tensor(x)).asnumpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_training_starts_from_the_converted_artifact(converted, rng):
    out, overrides = converted
    cfg = load_config(TORCH_CONFIG, overrides + [f"model.checkpoint={out / 'converted.inn'}"])
    model, reference = build_model(cfg), load_artifact(str(out / "converted.inn"))
    x = Tensor(rng.normal(size=(2, 1, 28, 28)).astype(np.float32))
    model.set_train(False)
    reference.set_train(False)
    np.testing.assert_array_equal(model(x).asnumpy(), reference(x).asnumpy())
    wrong = load_config(ZOO_CONFIG, [f"model.checkpoint={out / 'converted.inn'}"])
    with pytest.raises(ValueError, match="holds 'mnist_torch_cnn', but model.name is 'mnist_cnn'"):
        build_model(wrong)


def test_prune_from_config_writes_the_pruned_network(converted, capsys, rng):
    out, overrides = converted
    artifact = str(out / "converted.inn")
    assert main(["prune", artifact, "--config", TORCH_CONFIG, "--keep", "0.5", "--backend", "matmul"]
                + _sets(*overrides)) == 0
    mindir = out / "mindir" / "mnist_torch_cnn_keep050.mindir"
    assert str(mindir) in capsys.readouterr().out
    model = load_artifact(artifact)
    plain, _ = prune(model, keep=0.5, input_shape=(1, 1, 28, 28))
    x = rng.normal(size=(3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(run(load_mindir(str(mindir)), x), run(plain, x), rtol=1e-5, atol=1e-5)

    # The config's training granularity (train.widths.multiple_of) is the default rounding.
    assert main(["prune", artifact, "--config", TORCH_CONFIG, "--keep", "0.3", "--backend", "matmul"]
                + _sets(*overrides, "train.widths.multiple_of=8")) == 0
    table = capsys.readouterr().out.splitlines()
    sizes = {line.split()[0]: int(line.split()[1]) for line in table[1:7]}
    _, report = prune(model, keep=0.3, input_shape=(1, 1, 28, 28), multiple_of=8)
    assert sizes == report["sizes"] and all(n % 8 == 0 for n in sizes.values())
    assert (out / "mindir" / "mnist_torch_cnn_keep030.mindir").is_file()


@pytest.mark.parametrize("argv, message", [
    (["convert", "--config", ZOO_CONFIG], "model.convert is null"),
    (["convert", "mnist_torch_cnn", "--config", TORCH_CONFIG], "not both"),
    (["convert", "--config", TORCH_CONFIG, "--set", "model.convert.weights=missing.safetensors"],
     "no checkpoint file 'missing.safetensors'"),
    (["convert", "--config", TORCH_CONFIG, "--set", "model.convert.wieghts=x"], "did you mean 'weights'"),
    (["convert", "mnist_torch_cnn", "--out", "m.inn"], "--input-shape is needed"),
    (["prune", "--keep", "0.5", "--out", "m.mindir"], "give an integral artifact"),
    (["prune", "--config", TORCH_CONFIG, "--keep", "0.5"], "no integral artifact"),
    (["prune", "--config", TORCH_CONFIG, "--keep", "0.5", "--multiple-of", "0"], "--multiple-of must be >= 1"),
])
def test_config_command_errors_write_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--set", f"output_dir={tmp_path / 'run'}"] if "--config" in argv else argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_prune_from_config_repairs_on_the_training_data(converted, capsys, rng):
    """eval.repair / eval.calib / eval.resampling: the calibration images are
    the config's first training samples (labels unused)."""
    from inn_ms.data import build_source
    out, overrides = converted
    artifact = str(out / "converted.inn")
    sets = overrides + ["eval.repair=calib", "eval.calib=24", "eval.resampling=antialiased"]
    assert main(["prune", artifact, "--config", TORCH_CONFIG, "--keep", "0.5", "--backend", "matmul",
                 "--out", str(out / "r.mindir"), "--quiet"] + _sets(*sets)) == 0
    assert "resampling: antialiased; repaired on 24 calibration images" in capsys.readouterr().out
    source = build_source(load_config(TORCH_CONFIG, sets)["data"], train=True)
    calib = np.concatenate([x for x, _ in source.batches(range(24), 24, drop_remainder=False)])
    plain, _ = prune(load_artifact(artifact), keep=0.5, resampling="antialiased", repair="calib", calib=calib)
    x = rng.normal(size=(3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(run(load_mindir(str(out / "r.mindir")), x), run(plain, x), rtol=1e-4, atol=1e-4)
