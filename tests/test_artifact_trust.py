"""What an integral artifact can make us do: build only known or trusted
architectures (never import what the file names), be refused whole when any
of it was edited (one digest over manifest and weights), name a missing key,
and be the architecture the config says when ``eval`` reads it."""
import os
import sys

import numpy as np
import pytest
from mindspore import Tensor

from inn_ms.artifact import (ArtifactError, check_same_architecture, load_artifact, read_manifest, save_artifact,
                             upgrade_artifact)
from inn_ms.builders import UntrustedBuilderError, register_builder
from inn_ms.cli import main
from inn_ms.convert import convert
from model_zoo import create_model

from helpers import ROOT, rewrite_artifact

WIDTHS = (4, 8, 8, 8, 16)
PROBE = '''\
import pathlib
pathlib.Path({marker!r}).write_text("imported")


def build(**kwargs):
    from model_zoo import create_model
    return create_model("mnist_torch_cnn", integral=False, **kwargs)
'''


@pytest.fixture
def zoo_artifact(tmp_path):
    path = tmp_path / "zoo.inn"
    save_artifact(create_model("mnist_cnn", widths=WIDTHS), str(path))
    return path


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module on the import path that leaves a marker file when imported;
    its ``build`` makes the discrete mnist_torch_cnn. Returns its builder
    name and the marker."""
    name = f"inn_trust_probe_{os.getpid()}_{id(tmp_path)}"
    folder = tmp_path / "modules"
    folder.mkdir()
    marker = tmp_path / "imported.txt"
    (folder / f"{name}.py").write_text(PROBE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(folder))
    yield f"{name}:build", marker
    sys.modules.pop(name, None)


def _probe_artifact(tmp_path, builder):
    """A converted network whose architecture names ``builder`` (saved
    without running it: saving only records the name)."""
    net = create_model("mnist_torch_cnn", integral=False)
    model = convert(net, (2, 1, 28, 28), builder=builder)
    path = tmp_path / "probe.inn"
    save_artifact(model, str(path))
    return path, model


def test_a_builder_the_file_names_is_never_imported(tmp_path, probe, zoo_artifact, capsys):
    builder, marker = probe
    path, _ = _probe_artifact(tmp_path, builder)
    with pytest.raises(UntrustedBuilderError, match=f"unknown architecture builder '{builder}'.*--trust-builder"):
        load_artifact(str(path))
    assert not marker.exists() and builder.split(":")[0] not in sys.modules
    # The classic: a shell command as the "architecture". Signed, so only the registry stands in the way.
    evil = tmp_path / "evil.inn"
    command = f"touch {tmp_path / 'ran.txt'}"
    rewrite_artifact(zoo_artifact, evil, manifest=lambda m: {**m, "architecture": {
        "kind": "converted", "builder": "os:system", "kwargs": {"command": command}, "input_shape": [1, 1, 28, 28],
        "convert": {}}})
    with pytest.raises(UntrustedBuilderError, match="'os:system'"):
        load_artifact(str(evil))
    assert main(["prune", str(evil), "--keep", "0.5", "--out", str(tmp_path / "p.mindir"),
                 "--input-shape", "1,1,28,28"]) == 2
    assert "'os:system'" in capsys.readouterr().err
    assert not (tmp_path / "ran.txt").exists() and not (tmp_path / "p.mindir").exists()


def test_a_builder_the_caller_trusts_is_built(tmp_path, probe, rng):
    builder, marker = probe
    path, model = _probe_artifact(tmp_path, builder)
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    model.set_train(False)
    ref = model(Tensor(x)).asnumpy()
    # A function handed over: nothing imported.
    from model_zoo import create_model as zoo
    loaded = load_artifact(str(path), builders={builder: lambda **kw: zoo("mnist_torch_cnn", integral=False, **kw)})
    assert not marker.exists()
    loaded.set_train(False)
    np.testing.assert_array_equal(loaded(Tensor(x)).asnumpy(), ref)
    # A name trusted explicitly: imported.
    loaded = load_artifact(str(path), builders=[builder])
    assert marker.exists()
    loaded.set_train(False)
    np.testing.assert_array_equal(loaded(Tensor(x)).asnumpy(), ref)
    out = tmp_path / "p.mindir"
    assert main(["prune", str(path), "--keep", "0.5", "--out", str(out), "--trust-builder", builder, "--quiet"]) == 0
    assert out.is_file()
    assert main(["prune", str(path), "--keep", "0.5", "--out", str(out), "--trust-builder", "not a name"]) == 2


def test_a_registered_builder_needs_no_trust(tmp_path):
    net = create_model("mnist_torch_cnn", integral=False)
    model = convert(net, (2, 1, 28, 28), builder="tests_registered_mnist")
    path = tmp_path / "r.inn"
    save_artifact(model, str(path))
    with pytest.raises(UntrustedBuilderError, match="register_builder"):
        load_artifact(str(path))
    register_builder("tests_registered_mnist", discrete=lambda **kw: create_model("mnist_torch_cnn", integral=False))
    assert list(load_artifact(str(path)).full_sizes) == list(model.full_sizes)


@pytest.mark.parametrize("edit", ["group size", "allowed sizes", "architecture", "no digest"])
def test_an_edited_artifact_is_refused_as_corrupt(zoo_artifact, tmp_path, edit):
    def manifest(m):
        if edit == "group size":
            m["groups"]["c1"]["size"] = 3
        elif edit == "allowed sizes":
            m["groups"]["c2"]["allowed"] = [1, 8]
        elif edit == "architecture":
            m["architecture"]["kwargs"]["num_classes"] = 7
        return m
    bad = tmp_path / "edited.inn"
    rewrite_artifact(zoo_artifact, bad, manifest=manifest, sign=False)
    if edit == "no digest":
        import zipfile
        with zipfile.ZipFile(zoo_artifact) as z, zipfile.ZipFile(bad, "w") as out:
            for name in ("manifest.json", "weights.ckpt"):
                out.writestr(name, z.read(name))
    message = "no digest.sha256" if edit == "no digest" else "do not match the file's digest"
    with pytest.raises(ArtifactError, match=message):
        load_artifact(str(bad))
    with pytest.raises(ArtifactError, match=message):
        read_manifest(str(bad))


@pytest.mark.parametrize("key, message", [
    ("architecture", "has no 'architecture'"),
    ("groups", "has no 'groups'"),
    ("architecture.name", "needs 'name'"),
    ("architecture.kind", "unknown kind None"),
    ("groups.c1.size", r"group 'c1' in the manifest has no \['size'\]"),
])
def test_a_missing_key_is_named(zoo_artifact, tmp_path, key, message):
    def drop(m):
        parts = key.split(".")
        node = m
        for p in parts[:-1]:
            node = node[p]
        del node[parts[-1]]
        return m
    bad = tmp_path / "incomplete.inn"
    rewrite_artifact(zoo_artifact, bad, manifest=drop)  # signed: only the key is missing
    with pytest.raises(ArtifactError, match=message):
        load_artifact(str(bad))


def test_legacy_files_are_read_only_when_trusted(zoo_artifact, tmp_path):
    """Version 2 files have a checksum of the weights only: refused with the
    way out named, read with legacy=True, and upgraded to the digest."""
    import hashlib
    import json
    import zipfile
    with zipfile.ZipFile(zoo_artifact) as z:
        m, w = json.loads(z.read("manifest.json")), z.read("weights.ckpt")
    old = tmp_path / "old.inn"
    with zipfile.ZipFile(old, "w") as z:
        z.writestr("manifest.json", json.dumps({**m, "version": 2, "weights_sha256": hashlib.sha256(w).hexdigest()}))
        z.writestr("weights.ckpt", w)
    with pytest.raises(ArtifactError, match="version 2.*upgrade_artifact"):
        load_artifact(str(old))
    assert list(load_artifact(str(old), legacy=True).full_sizes.values()) == [4, 8, 8, 8, 16]
    upgrade_artifact(str(old))
    assert read_manifest(str(old))["version"] == 3
    assert list(load_artifact(str(old)).full_sizes.values()) == [4, 8, 8, 8, 16]


def test_eval_refuses_an_artifact_of_another_architecture(tmp_path, capsys):
    config = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")
    other = tmp_path / "other.inn"
    save_artifact(create_model("mnist_cnn", widths=WIDTHS), str(other))  # the config says widths 8, 16, 16, 16, 32
    out = tmp_path / "out"
    assert main(["eval", "--config", config, "--checkpoint", str(other), "--set", f"output_dir={out}",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "mnist_cnn(" in err and "[4, 8, 8, 8, 16]" in err and "[8, 16, 16, 16, 32]" in err and "widths" in err
    assert not out.exists()
    same = create_model("mnist_cnn", num_classes=10, widths=(8, 16, 16, 16, 32), control_ratio=0.5).architecture
    check_same_architecture(same, "mnist_cnn", {"widths": [8, 16, 16, 16, 32], "control_ratio": 0.5,
                                                "num_classes": 10})
    with pytest.raises(ValueError, match="holds resnet_small.*describes mnist_cnn"):
        check_same_architecture(create_model("resnet_small").architecture, "mnist_cnn", {})
