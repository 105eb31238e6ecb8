"""The integral artifact (.inn): round trips of zoo and converted networks,
what the manifest records, atomic writes and refusing bad files."""
import zipfile

import numpy as np
import pytest
from mindspore import Tensor

from inn_ms.artifact import (FORMAT, VERSION, ArtifactError, load_artifact, read_manifest, save_artifact,
                             zoo_architecture)
from inn_ms.convert import convert
from model_zoo import create_model

from helpers import rewrite_artifact


def outputs(model, x):
    model.set_train(False)
    return model(Tensor(x)).asnumpy()


@pytest.fixture
def x(rng):
    return rng.normal(size=(3, 1, 28, 28)).astype(np.float32)


def test_zoo_network_round_trip(tmp_path, x):
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    model.resize(keep=0.75)
    path = tmp_path / "m.inn"
    save_artifact(model, str(path), allowed_sizes={"c1": (4, 8)})
    m = read_manifest(str(path))
    assert m["format"] == FORMAT and m["version"] == VERSION
    assert m["architecture"] == zoo_architecture("mnist_cnn", num_classes=10, widths=[8, 16, 16, 16, 32])
    assert m["groups"]["c2"] == {"full_size": 16, "size": 12, "allowed": [2, 16], "quadrature": "trapezoid"}
    assert m["groups"]["c1"]["allowed"] == [4, 8]
    assert m["parametrization"]["layers"]["conv2"] == {"type": "IntegralConv2d", "control": [8, 4]}  # ½ grids
    loaded = load_artifact(str(path))
    assert dict(loaded.sizes) == dict(model.sizes) and loaded.allowed_sizes["c1"] == (4, 8)
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
    for keep in (1.0, 0.5):
        model.resize(keep=keep)
        loaded.resize(keep=keep)
        np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))


def test_converted_network_round_trip(tmp_path, x):
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    model = convert(net, (2, 1, 28, 28), builder="mnist_torch_cnn")
    path = tmp_path / "c.inn"
    save_artifact(model, str(path))
    arch = read_manifest(str(path))["architecture"]
    assert arch["kind"] == "converted" and arch["builder"] == "mnist_torch_cnn" and arch["input_shape"] == [2, 1, 28, 28]
    loaded = load_artifact(str(path))  # rebuilt from the architecture alone, weights from the file
    for keep in (1.0, 0.6):
        model.resize(keep=keep)
        loaded.resize(keep=keep)
        np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))


def test_resampling_rule_round_trip(tmp_path, x):
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    model.set_resampling({"c2": "antialiased"})
    path = tmp_path / "aa.inn"
    save_artifact(model, str(path))
    m = read_manifest(str(path))
    assert m["version"] == VERSION  # a version-1 reader would sample it wrongly: it must refuse the file
    assert m["groups"]["c2"]["resampling"] == "antialiased" and "resampling" not in m["groups"]["c1"]
    loaded = load_artifact(str(path))
    assert loaded.resampling == {**{g: "point" for g in model.groups}, "c2": "antialiased"}
    for keep in (0.5, 0.25):
        model.resize(keep=keep)
        loaded.resize(keep=keep)
        np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
    # c2's control grid has 8 values: at 4 channels the rule matters, and the file kept it
    model.set_resampling("point")
    assert np.abs(outputs(model, x) - outputs(loaded, x)).max() > 1e-3


def test_unknown_resampling_rule_is_refused(tmp_path):
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    good = tmp_path / "g.inn"
    save_artifact(model, str(good))
    bad = tmp_path / "b.inn"

    def edit(m):
        m["groups"]["c1"]["resampling"] = "nearest"
        return m
    _rewrite(good, bad, manifest=edit)
    with pytest.raises(ArtifactError, match="unknown resampling rule 'nearest'"):
        load_artifact(str(bad))


def test_saving_needs_an_architecture_and_fixed_partitions(tmp_path):
    net = create_model("mnist_torch_cnn", integral=False)
    model = convert(net, (2, 1, 28, 28), verify=False)  # no builder: it cannot be rebuilt
    with pytest.raises(ValueError, match="architecture="):
        save_artifact(model, str(tmp_path / "a.inn"))
    with pytest.raises(ValueError, match="ends with .inn"):
        save_artifact(model, str(tmp_path / "a.zip"), architecture=zoo_architecture("x"))
    with pytest.raises(ValueError, match="JSON"):
        save_artifact(model, str(tmp_path / "a.inn"), architecture={"kind": "zoo", "name": object()})
    from inn_ms.partition_tuning import make_partitions_trainable
    make_partitions_trainable(model, {"conv1": 16})
    with pytest.raises(ValueError, match="trainable partition"):
        save_artifact(model, str(tmp_path / "a.inn"), architecture=zoo_architecture("x"))
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


def test_a_failed_save_keeps_the_old_file(tmp_path):
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    path = tmp_path / "m.inn"
    save_artifact(model, str(path))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="allowed sizes"):
        save_artifact(model, str(path), allowed_sizes={"c1": (4, 99)})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.inn"]


def _rewrite(src, dst, manifest=None, weights=None):
    rewrite_artifact(src, dst, manifest, weights)


def test_bad_files_are_refused_clearly(tmp_path):
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    good = tmp_path / "good.inn"
    save_artifact(model, str(good))
    data = good.read_bytes()
    cases = {}
    cases["truncated"] = data[:len(data) // 2]
    cases["garbage"] = b"not an artifact at all"
    for name, content in cases.items():
        p = tmp_path / f"{name}.inn"
        p.write_bytes(content)
        with pytest.raises(ArtifactError, match="corrupt or truncated"):
            load_artifact(str(p))
    p = tmp_path / "newer.inn"
    _rewrite(good, p, manifest=lambda m: {**m, "version": VERSION + 1})
    with pytest.raises(ArtifactError, match="newer"):
        load_artifact(str(p))
    p = tmp_path / "other.inn"
    _rewrite(good, p, manifest=lambda m: {**m, "format": "something-else"})
    with pytest.raises(ArtifactError, match="not an inn_ms integral artifact"):
        read_manifest(str(p))
    p = tmp_path / "flipped.inn"
    rewrite_artifact(good, p, weights=lambda w: w[:-10] + bytes(10), sign=False)
    with pytest.raises(ArtifactError, match="digest"):
        load_artifact(str(p))
    p = tmp_path / "resized.inn"
    _rewrite(good, p, manifest=lambda m: {**m, "groups": {**m["groups"], "c1": {**m["groups"]["c1"], "full_size": 9}}})
    with pytest.raises(ArtifactError, match="channel groups"):
        load_artifact(str(p))
    p = tmp_path / "members.inn"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ArtifactError, match="manifest.json"):
        load_artifact(str(p))
    with pytest.raises(ArtifactError, match="no integral artifact"):
        load_artifact(str(tmp_path / "missing.inn"))


def test_round_trip_after_training_renamed_parameters(tmp_path, x, rng):
    """Attaching a model to a train step renames its Parameters in MindSpore;
    the artifact keys weights by their path, so it still loads."""
    from mindspore import nn
    from inn_ms.train import RandomWidthTrainer
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    opt = nn.SGD(model.trainable_params(), learning_rate=0.1)
    trainer = RandomWidthTrainer(model, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), opt)
    trainer.fit(x, rng.integers(0, 10, size=len(x)).astype(np.int32), epochs=1, batch_size=3, progress=False)
    path = tmp_path / "trained.inn"
    save_artifact(model, str(path))
    loaded = load_artifact(str(path))
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
