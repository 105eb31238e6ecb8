"""Pruning to a target width or budget, MACs, and MindIR round trips
(``ms.load`` + ``nn.GraphCell``) with a dynamic batch dimension."""
import numpy as np
import pytest
from mindspore import Tensor, nn

from inn_ms.artifact import load_artifact, save_artifact
from inn_ms.cli import main
from inn_ms.export import export_mindir, load_mindir
from inn_ms.prune import macs_of, prune, sizes_for_budget
from inn_ms.graph.flops import count_macs
from inn_ms.model import count_parameters
from model_zoo import create_model

from helpers import run


def small():
    return create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))


@pytest.mark.parametrize("backend", ["native", "matmul"])
def test_pruned_mindir_matches_the_network_at_several_batch_sizes(tmp_path, rng, backend):
    model = small()
    plain, report = prune(model, keep=0.5, input_shape=(1, 1, 28, 28))
    assert report["sizes"] == {"c1": 4, "c2": 8, "c3": 8, "c4": 8, "fc": 16}
    assert report["params"] == count_parameters(plain) < report["full_params"]
    assert dict(model.sizes) == dict(model.full_sizes)  # the model is left as it was
    path = tmp_path / "p.mindir"
    assert export_mindir(plain, str(path), (1, 1, 28, 28), backend=backend) == str(path)
    graph = load_mindir(str(path))
    for batch in (1, 4, 7):
        x = rng.normal(size=(batch, 1, 28, 28)).astype(np.float32)
        ref = run(plain, x)
        out = graph(Tensor(x)).asnumpy()
        assert out.shape == (batch, 10)
        assert np.max(np.abs(out - ref)) <= 1e-5 * np.max(np.abs(ref))
    assert [p.name for p in tmp_path.iterdir()] == ["p.mindir"]


def test_loaded_mindir_runs_where_a_cell_does(tmp_path, rng):
    """``predict``/``accuracy`` (written for Cells: set_train, batches with a
    smaller last one) run a loaded MindIR and give the network's results."""
    from inn_ms.metrics import accuracy, predict
    plain, _ = prune(small(), keep=0.5, input_shape=(1, 1, 28, 28))
    path = tmp_path / "p.mindir"
    export_mindir(plain, str(path), (1, 1, 28, 28), backend="matmul")
    graph = load_mindir(str(path))
    x = rng.normal(size=(10, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=10)
    np.testing.assert_allclose(predict(graph, x, batch_size=4), predict(plain, x, batch_size=4), rtol=1e-5, atol=1e-5)
    assert accuracy(graph, x, y, batch_size=4) == accuracy(plain, x, y, batch_size=4)
    with pytest.raises(ValueError, match="inference"):
        graph.set_train(True)
    with pytest.raises(ValueError, match="takes 1 input"):
        graph(Tensor(x), Tensor(x))


def test_count_macs_matches_the_formula():
    net = create_model("mnist_cnn", integral=False, widths=(8, 16, 16, 16, 32))
    total, per_layer = count_macs(net, (2, 1, 28, 28))
    expected = {"conv1": 8 * 28 * 28 * 1 * 9, "conv2": 16 * 14 * 14 * 8 * 9, "conv3": 16 * 7 * 7 * 16 * 9,
                "conv4": 16 * 7 * 7 * 16 * 9, "fc1": 32 * 16, "fc2": 10 * 32}
    assert per_layer == expected and total == sum(expected.values())


def test_prune_to_sizes_and_errors():
    model = small()
    plain, report = prune(model, sizes={"c3": 5})
    assert report["sizes"]["c3"] == 5 and report["sizes"]["c1"] == 8
    assert tuple(plain.conv3.weight.shape) == (5, 16, 3, 3) and tuple(plain.conv4.weight.shape) == (16, 5, 3, 3)
    with pytest.raises(ValueError, match="unknown group"):
        prune(model, sizes={"nope": 3})
    with pytest.raises(ValueError, match="keep ratio"):
        prune(model, keep=0)
    with pytest.raises(ValueError, match="keep ratio"):
        prune(model, keep=1.5)
    with pytest.raises(ValueError, match="exactly one"):
        prune(model, keep=0.5, sizes={"c1": 2})
    with pytest.raises(ValueError, match=r"outside its allowed range \[2, 16\]"):
        prune(model, sizes={"c3": 17})
    model.allowed_sizes = {"c3": (8, 16)}
    with pytest.raises(ValueError, match="outside its allowed range"):
        prune(model, sizes={"c3": 5})


def test_budgets_pick_the_widest_network_that_fits():
    model = small()
    full = count_parameters(model.discretize())
    budget = full // 3
    sizes = sizes_for_budget(model, params=budget)
    plain, report = prune(model, params=budget)
    assert report["sizes"] == dict(sizes) and report["params"] <= budget
    # One more channel in the largest group would break the budget or the ratio rounding.
    wider = {g: min(n + 1, model.full_sizes[g]) for g, n in sizes.items()}
    model.resize(sizes=wider)
    assert count_parameters(model.discretize()) > budget
    model.resize(keep=1.0)
    full_macs = macs_of(model.discretize(), (1, 1, 28, 28))
    plain, report = prune(model, macs=full_macs // 2, input_shape=(1, 1, 28, 28))
    assert report["macs"] <= full_macs // 2 and report["macs"] > full_macs // 4
    with pytest.raises(ValueError, match="no width meets"):
        prune(model, params=10)
    with pytest.raises(ValueError, match="needs input_shape"):
        sizes_for_budget(model, macs=1000)


def test_cli_prune_writes_a_mindir_and_errors_write_nothing(tmp_path, capsys, rng):
    model = small()
    artifact = tmp_path / "m.inn"
    save_artifact(model, str(artifact), allowed_sizes={"c1": (4, 8)})
    out = tmp_path / "p.mindir"
    assert main(["prune", str(artifact), "--keep", "0.5", "--out", str(out), "--input-shape", "1,1,28,28"]) == 0
    text = capsys.readouterr().out
    assert "parameters" in text and "MACs per sample" in text and out.is_file()
    loaded = load_artifact(str(artifact))
    plain, _ = prune(loaded, keep=0.5)
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(load_mindir(str(out))(Tensor(x)).asnumpy(), run(plain, x), rtol=1e-5, atol=1e-5)
    bad = [(["--keep", "0"], "keep ratio"), (["--keep", "1.2"], "keep ratio"),
           (["--sizes", "nope=3"], "unknown group"), (["--sizes", "c1=2"], "outside its allowed range"),
           (["--sizes", "c1"], "group=size"), (["--keep", "0.5", "--input-shape", "1,1,x"], "input shape")]
    for args, message in bad:
        dst = tmp_path / "bad.mindir"
        argv = ["prune", str(artifact), "--out", str(dst)] + args
        if "--input-shape" not in args:
            argv += ["--input-shape", "1,1,28,28"]
        assert main(argv) == 2, args
        assert message in capsys.readouterr().err, args
        assert not dst.exists()
    assert main(["prune", str(artifact), "--keep", "0.5", "--out", str(tmp_path / "x.onnx"),
                 "--input-shape", "1,1,28,28"]) == 2
    assert main(["prune", str(tmp_path / "missing.inn"), "--keep", "0.5", "--out", str(tmp_path / "y.mindir"),
                 "--input-shape", "1,1,28,28"]) == 2
    flops_out = tmp_path / "f.mindir"
    assert main(["prune", str(artifact), "--flops", str(2 * 300000), "--out", str(flops_out),
                 "--input-shape", "1,1,28,28"]) == 0
    macs_line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("MACs")][0]
    assert int(macs_line.split()[3]) <= 300000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.mindir", "m.inn", "p.mindir"]


def test_load_mindir_refuses_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no MindIR"):
        load_mindir(str(tmp_path / "none.mindir"))
    p = tmp_path / "bad.mindir"
    p.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_mindir(str(p))
    with pytest.raises(ValueError, match="ends with .mindir"):
        export_mindir(nn.Dense(2, 2), str(tmp_path / "a.bin"), (1, 2))


def test_cli_export_every_width_of_a_configs_run(tmp_path, rng, capsys):
    """``inn-ms export --config``: the run's artifact (output_dir/model.inn)
    pruned to each eval width and exported; each MindIR equals the pruned
    network. Missing artifacts and bad widths are refused."""
    import os
    from inn_ms.config import load_config
    from inn_ms.runner import build_model
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ascend_configs",
                          "mnist_cnn_cpu.yaml")
    overrides = [f"output_dir={tmp_path}", "eval.widths=[1.0, 0.5]"]
    model = build_model(load_config(config, overrides))
    save_artifact(model, str(tmp_path / "model.inn"))
    sets = [a for o in overrides for a in ("--set", o)]
    assert main(["export", "--config", config, "--backend", "matmul"] + sets) == 0
    out = capsys.readouterr().out
    x = rng.normal(size=(3, 1, 28, 28)).astype(np.float32)
    for keep in (1.0, 0.5):
        path = tmp_path / "mindir" / f"mnist_cnn_keep{int(keep * 100):03d}.mindir"
        assert str(path) in out
        plain, _ = prune(model, keep=keep, input_shape=(1, 1, 28, 28))
        np.testing.assert_allclose(load_mindir(str(path))(Tensor(x)).asnumpy(), run(plain, x), rtol=1e-5, atol=1e-5)
    assert main(["export", "--config", config, "--set", f"output_dir={tmp_path / 'none'}"]) == 2
    assert "no integral artifact" in capsys.readouterr().err
    assert main(["export", "--config", config, "--widths", "0"] + sets) == 2
    assert not (tmp_path / "none").exists()
