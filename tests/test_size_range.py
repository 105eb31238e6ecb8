"""One allowed-size rule for channel groups (``inn_ms.partition.size_range``):
resize, keep ratios, prune, artifacts, pipeline B and the elastic network
accept and refuse the same sizes."""
import pytest

from inn_ms.artifact import load_artifact, read_manifest, save_artifact
from inn_ms.elastic import bucket_rows, elastic_ranges, elastic_sizes
from inn_ms.partition import UniformPartition, size_range
from inn_ms.partition_tuning import make_partitions_trainable
from inn_ms.prune import prune
from model_zoo import create_model


def small():
    return create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))


def test_size_range_of_partitions():
    assert size_range(UniformPartition(16)) == (2, 16)
    assert size_range(UniformPartition(4, full_size=16)) == (2, 16)
    assert size_range(UniformPartition(16, quadrature="simpson")) == (3, 16)
    # A one-channel group (a scalar head, say) keeps its full size only.
    assert size_range(UniformPartition(1)) == (1, 1)


def test_every_entry_point_refuses_one_channel_alike():
    model = small()
    assert {name: size_range(p) for name, p in model.groups.items()} == {
        "c1": (2, 8), "c2": (2, 16), "c3": (2, 16), "c4": (2, 16), "fc": (2, 32)}
    with pytest.raises(ValueError, match=r"group 'c1' must be an int in \[2, 8\], got 1"):
        model.resize(sizes={"c1": 1})
    with pytest.raises(ValueError, match=r"outside its allowed range \[2, 8\]"):
        prune(model, sizes={"c1": 1})
    with pytest.raises(ValueError, match=r"\[2, 8\]"):
        elastic_sizes(model, sizes={"c1": 1})
    with pytest.raises(ValueError, match=r"pipeline B: size of group 'c1' must be an int in \[2, 8\], got 1"):
        make_partitions_trainable(small(), {"c1": 1})
    assert dict(model.sizes) == dict(model.full_sizes)  # nothing changed on refusal
    # The smallest size is accepted everywhere.
    model.resize(sizes={"c1": 2})
    model.resize(sizes=dict(model.full_sizes))
    assert prune(model, sizes={"c1": 2})[1]["sizes"]["c1"] == 2
    assert elastic_ranges(model)[0] == (2, 8)


def test_keep_ratios_round_up_to_the_smallest_size():
    model = small()
    sizes = model.sizes_for_keep(0.01)
    assert all(n == size_range(model.groups[g])[0] for g, n in sizes.items())
    model.resize(keep=0.01)  # the rounded sizes are always accepted
    assert bucket_rows(model, 0.01) == [2, 2, 2, 2, 2]


def test_artifacts_allow_the_same_sizes(tmp_path):
    model = small()
    path = str(tmp_path / "m.inn")
    save_artifact(model, path)
    with pytest.raises(ValueError, match=r"must satisfy 2 <= low <= high <= 8, got \(1, 8\)"):
        save_artifact(model, str(tmp_path / "bad.inn"), allowed_sizes={"c1": (1, 8)})
    manifest = read_manifest(path)
    assert {g["allowed"][0] for g in manifest["groups"].values()} == {2}
    loaded = load_artifact(path)
    assert loaded.allowed_sizes["c1"] == (2, 8)
