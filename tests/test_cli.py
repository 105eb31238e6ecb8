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


@pytest.fixture(scope="module")
def converted_artifact(tmp_path_factory):
    """``inn-ms convert`` to an artifact, once for the module (a conversion
    costs 3 s of CPU): its path and what it printed."""
    import contextlib
    import io
    from model_zoo.mnist_torch_cnn import bundled_checkpoint
    out = tmp_path_factory.mktemp("art") / "m.inn"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["convert", "mnist_torch_cnn", "--weights", bundled_checkpoint(), "--input-shape",
                     "2,1,28,28", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_convert_writes_an_artifact(converted_artifact):
    from inn_ms.artifact import load_artifact, read_manifest
    out, printed = converted_artifact
    assert "integral artifact written" in printed
    arch = read_manifest(str(out))["architecture"]
    assert arch["kind"] == "converted" and arch["builder"] == "mnist_torch_cnn"
    assert list(load_artifact(str(out)).full_sizes.values()) == [32, 32, 64, 64, 128, 128]


def test_prune_repairs_on_calibration_images(tmp_path, capsys, converted_artifact):
    """--repair calib --calib-data: the MindIR is the repaired network."""
    import numpy as np
    from mindspore import Tensor
    from inn_ms.artifact import load_artifact
    from inn_ms.data import mnist_subset
    from inn_ms.export import load_mindir
    from inn_ms.prune import prune
    converted_artifact, _ = converted_artifact
    xtr, _, xte, _ = mnist_subset(4000, 1000, seed=0)
    calib = tmp_path / "calib.npy"
    np.save(calib, xtr[:48])
    out = tmp_path / "m.mindir"
    argv = ["prune", str(converted_artifact), "--keep", "0.5", "--repair", "calib", "--calib-data", str(calib),
            "--calib", "32", "--resample", "antialiased", "--out", str(out), "--backend", "matmul", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "resampling: antialiased; repaired on 32 calibration images" in text
    plain, _ = prune(load_artifact(str(converted_artifact)), keep=0.5, resampling="antialiased", repair="calib",
                     calib=xtr[:32])
    plain.set_train(False)
    x = Tensor(xte[:4])
    np.testing.assert_allclose(load_mindir(str(out))(x).asnumpy(), plain(x).asnumpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["--repair", "calib"], "--calib-data FILE.npy, or --config"),
    (["--calib-data", "x.npy"], "only with --repair calib"),
    (["--repair", "calib", "--calib-data", "missing.npy"], "existing .npy file"),
    (["--repair", "calib", "--calib-data", "x.npy", "--calib", "0"], "--calib must be >= 1")])
def test_prune_repair_errors_write_nothing(tmp_path, monkeypatch, capsys, converted_artifact, extra, message):
    import numpy as np
    converted_artifact, _ = converted_artifact
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 28, 28), np.float32))
    assert main(["prune", str(converted_artifact), "--keep", "0.5", "--out", "m.mindir"] + extra) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
