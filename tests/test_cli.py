"""The inn-ms command line."""
import pytest

from inn_ms.cli import main


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out.split()
    assert "mnist_cnn" in out and "resnet_small" in out


def test_resize_reports_fewer_parameters_at_smaller_keep(capsys):
    assert main(["resize", "mnist_cnn", "--keep", "1.0", "0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    params = [int(line.split()[1]) for line in lines]
    assert params[1] < params[0] / 3  # conv params scale with in x out channels


@pytest.mark.parametrize("argv, message", [(["resize", "nope"], "unknown model"),
                                           (["resize", "mnist_cnn", "--keep", "0"], "keep ratio")])
def test_errors_are_clear_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_convert_writes_an_integral_checkpoint(tmp_path, capsys):
    pytest.importorskip("safetensors")
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor
    from inn_ms.convert import convert
    from model_zoo import create_model
    from model_zoo.mnist_torch_cnn import bundled_checkpoint

    out = tmp_path / "inn.ckpt"
    argv = ["convert", "mnist_torch_cnn", "--weights", bundled_checkpoint(), "--input-shape", "2,1,28,28",
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "6 continuous groups" in text and "6 BatchNorms folded" in text and out.is_file()
    assert not list(tmp_path.glob("*partial*"))
    # The checkpoint holds the integral network: converting the architecture
    # again (no weights, no permutation) and loading it gives the same outputs.
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    net.set_train(False)
    ref = net(Tensor(x)).asnumpy()
    shell = convert(create_model("mnist_torch_cnn", integral=False), (2, 1, 28, 28), permute=False, verify=False)
    ckpt = ms.load_checkpoint(str(out))
    assert ms.load_param_into_net(shell, ckpt, strict_load=True) == ([], [])
    shell.set_train(False)
    out_np = shell(Tensor(x)).asnumpy()
    assert np.max(np.abs(out_np - ref)) <= 1e-5 * np.max(np.abs(ref))


@pytest.mark.parametrize("argv, message", [
    (["convert", "mnist_torch_cnn", "--input-shape", "2,1,x", "--out", "m.ckpt"], "input shape"),
    (["convert", "mnist_torch_cnn", "--input-shape", "2,1,28,28", "--out", "m.bin"], "must end with .inn"),
    (["convert", "no.such.module:fn", "--input-shape", "2,1,28,28", "--out", "m.ckpt"], "cannot import"),
    (["convert", "mnist_torch_cnn", "--weights", "missing.safetensors", "--input-shape", "2,1,28,28",
      "--out", "m.ckpt"], "no checkpoint file")])
def test_convert_errors_write_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_convert_writes_an_artifact(tmp_path, capsys):
    from inn_ms.artifact import load_artifact, read_manifest
    from model_zoo.mnist_torch_cnn import bundled_checkpoint

    out = tmp_path / "inn.inn"
    assert main(["convert", "mnist_torch_cnn", "--weights", bundled_checkpoint(), "--input-shape", "2,1,28,28",
                 "--out", str(out)]) == 0
    assert "integral artifact written" in capsys.readouterr().out
    arch = read_manifest(str(out))["architecture"]
    assert arch["kind"] == "converted" and arch["builder"] == "mnist_torch_cnn"
    assert list(load_artifact(str(out)).full_sizes.values()) == [32, 32, 64, 64, 128, 128]
