"""The elastic MindIR's ``sizes`` input: the runner inn_ms ships refuses
sizes outside a group's range (naming the group and the range) and sizes of
the wrong length or type; the graph itself clamps to the range; and no
elastic MindIR is written for an input shape it cannot run."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from inn_ms.artifact import load_artifact, save_artifact
from inn_ms.cli import main
from inn_ms.elastic import elastic_sizes, export_elastic
from inn_ms.export import load_mindir
from model_zoo import create_model

FULL = [4, 8, 8, 8, 16]  # mnist_cnn's groups c1, c2, c3, c4, fc


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An artifact whose group c2 allows 3..6 channels, and its elastic MindIR."""
    folder = tmp_path_factory.mktemp("elastic")
    save_artifact(create_model("mnist_cnn", widths=FULL), str(folder / "m.inn"), allowed_sizes={"c2": (3, 6)})
    model = load_artifact(str(folder / "m.inn"))
    path = folder / "e.mindir"
    export_elastic(model, str(path), (1, 1, 28, 28), backend="matmul", buckets=(1.0,))
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    return model, str(path), Tensor(x)


def _sizes(**groups):
    v = dict(zip(["c1", "c2", "c3", "c4", "fc"], [4, 6, 8, 8, 16]))
    v.update(groups)
    return Tensor(np.array(list(v.values()), np.int32))


@pytest.mark.parametrize("sizes, message", [
    (Tensor(np.array(FULL, np.int32) * 2), r"size 8 of group 'c1' is outside its range \[2, 4\]"),
    (Tensor(np.zeros(5, np.int32)), r"size 0 of group 'c1' is outside its range \[2, 4\]"),
    (Tensor(np.ones(5, np.int32)), r"size 1 of group 'c1' is outside its range \[2, 4\]"),
    (Tensor(np.full(5, -5, np.int32)), r"size -5 of group 'c1' is outside its range \[2, 4\]"),
    (_sizes(c2=7), r"size 7 of group 'c2' is outside its range \[3, 6\]"),  # within full width, not allowed
    (_sizes(c2=2), r"size 2 of group 'c2' is outside its range \[3, 6\]"),
])
def test_the_runner_refuses_sizes_out_of_range(exported, sizes, message):
    _, path, x = exported
    with pytest.raises(ValueError, match=message):
        load_mindir(path)(x, sizes)


@pytest.mark.parametrize("sizes, message", [
    (Tensor(np.array(FULL[:4], np.int32)), r"input 'sizes' must have shape \(5,\), got \(4,\)"),
    (Tensor(np.array(FULL, np.int64)), "input 'sizes' must be int32, got int64"),
    (Tensor(np.array(FULL, np.float32)), "input 'sizes' must be int32, got float32"),
    (np.array(FULL, np.int32), "input 'sizes' must be a mindspore.Tensor of int32 and shape \\(5,\\), got numpy"),
])
def test_sizes_of_the_wrong_length_or_type_are_named(exported, sizes, message):
    _, path, x = exported
    with pytest.raises(ValueError, match=message):
        load_mindir(path)(x, sizes)


def test_the_graph_clamps_sizes_to_the_range(exported):
    """Called directly (ms.load + GraphCell, no inn_ms checks), the MindIR
    runs sizes outside the range as the nearest valid ones."""
    model, path, x = exported
    graph = nn.GraphCell(ms.load(path))
    run = lambda s: graph(x, s).asnumpy()
    widest, narrowest = run(_sizes()), run(Tensor(np.array([2, 3, 2, 2, 2], np.int32)))
    assert np.abs(widest - narrowest).max() > 1e-3  # the two ends differ, so the checks below mean something
    np.testing.assert_array_equal(run(Tensor(np.array(FULL, np.int32) * 2)), widest)
    np.testing.assert_array_equal(run(Tensor(np.array([-5, 1, 0, 1, 1], np.int32))), narrowest)
    np.testing.assert_array_equal(run(_sizes(c2=8)), widest)  # c2 stops at its allowed 6
    # And the runner gives the same numbers for the valid sizes.
    np.testing.assert_array_equal(load_mindir(path)(x, _sizes()).asnumpy(), widest)


def test_elastic_sizes_follow_the_allowed_range(exported):
    model, _, _ = exported
    with pytest.raises(ValueError, match=r"group 'c2' must be an int in \[3, 6\], got 7"):
        elastic_sizes(model, sizes={"c2": 7})
    assert elastic_sizes(model, sizes={"c2": 6}).asnumpy().tolist() == [4, 6, 8, 8, 16]


def test_no_elastic_mindir_for_an_input_it_cannot_run(tmp_path, capsys):
    """A 2×2 image vanishes in mnist_cnn's two poolings: refused up front (as
    prune refuses it), nothing written."""
    artifact = tmp_path / "m.inn"
    save_artifact(create_model("mnist_cnn", widths=FULL), str(artifact))
    out = tmp_path / "e.mindir"
    assert main(["elastic", str(artifact), "--out", str(out), "--input-shape", "1,1,2,2", "--buckets", "1.0",
                 "--backend", "matmul"]) == 2
    assert r"input shape (1, 1, 2, 2) does not fit the network" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.inn"]
