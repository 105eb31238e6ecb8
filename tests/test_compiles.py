"""How often a network is compiled: a converted artifact loads without
tracing (its manifest keeps the conversion's groups, layers and MAC
positions), and PyTorch weights become a pruned MindIR in two compilations
(the conversion's one trace, the export). An artifact written without that
record still loads, by converting again."""
import os
import sys

import numpy as np
import pytest
from mindspore import Tensor
from mindspore.common import api

from inn_ms.artifact import load_artifact, read_manifest, save_artifact
from inn_ms.convert import convert
from model_zoo import create_model

from helpers import ROOT


@pytest.fixture
def compiles(monkeypatch):
    """The number of graph compilations so far (a list of one int)."""
    count = [0]
    compile_graph = api._CellGraphExecutor.compile

    def counted(self, *args, **kwargs):
        count[0] += 1
        return compile_graph(self, *args, **kwargs)

    monkeypatch.setattr(api._CellGraphExecutor, "compile", counted)
    return count


def _converted():
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    return convert(net, (2, 1, 28, 28), builder="mnist_torch_cnn", builder_kwargs={"num_classes": 10})


def test_loading_a_converted_artifact_compiles_nothing(tmp_path, compiles, rng):
    model = _converted()
    path = str(tmp_path / "m.inn")
    save_artifact(model, path)
    before = compiles[0]
    loaded = load_artifact(path)
    assert compiles[0] == before
    assert read_manifest(path)["conversion"]["plan"]["folded"]["bn1"] == "conv1"
    assert list(loaded.full_sizes.items()) == list(model.full_sizes.items())  # the groups' order too
    x = Tensor(rng.normal(size=(2, 1, 28, 28)).astype(np.float32))
    model.set_train(False)
    loaded.set_train(False)
    np.testing.assert_array_equal(loaded(x).asnumpy(), model(x).asnumpy())


def test_an_artifact_without_the_conversion_record_converts_again(tmp_path, rng):
    model = _converted()
    old = str(tmp_path / "old.inn")
    del model.conversion["plan"]  # what files written before the record look like
    save_artifact(model, old)
    assert "conversion" not in read_manifest(old)
    loaded = load_artifact(old)
    x = Tensor(rng.normal(size=(2, 1, 28, 28)).astype(np.float32))
    model.set_train(False)
    loaded.set_train(False)
    np.testing.assert_array_equal(loaded(x).asnumpy(), model(x).asnumpy())


def test_a_bad_conversion_record_is_refused(tmp_path):
    from inn_ms.artifact import ArtifactError
    from helpers import rewrite_artifact
    model = _converted()
    path, bad = str(tmp_path / "m.inn"), str(tmp_path / "bad.inn")
    save_artifact(model, path)

    def edit(manifest):
        manifest["conversion"]["plan"]["groups"][0][1] = 31
        return manifest
    rewrite_artifact(path, bad, manifest=edit)
    with pytest.raises(ArtifactError, match="conversion record"):
        load_artifact(bad)


def test_pytorch_weights_to_a_pruned_mindir_compile_twice(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "scripts", "bench"))
    try:
        from compiles import count_compiles
    finally:
        sys.path.pop(0)
    counts = count_compiles(str(tmp_path))
    assert counts == {"convert": 1, "prune": 1}, counts
    assert os.path.isfile(tmp_path / "m.mindir")
