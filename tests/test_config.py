"""YAML run configs: every shipped config validates and fits its zoo builder;
bad keys and values fail early naming the key; --set overrides are typed."""
import copy
import glob
import inspect
import os

import pytest
import yaml

from inn_ms.config import ConfigError, apply_overrides, dump_config, load_config, validate
from model_zoo import list_models
from model_zoo.registry import _REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "ascend_configs", "*.yaml")))
MINIMAL = {"model": {"name": "mnist_cnn"}, "data": {"name": "mnist_subset"}}


def test_configs_exist_for_the_first_models():
    names = {os.path.basename(p) for p in CONFIGS}
    for model in ("mnist_cnn", "mnist_torch_cnn", "resnet_small"):
        assert f"{model}_ascend.yaml" in names and f"{model}_cpu.yaml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_config_is_valid_and_fits_its_builder(path, tmp_path):
    cfg = load_config(path)
    # What a run records (output_dir/config.yaml, defaults resolved) loads back as the same config.
    (tmp_path / "recorded.yaml").write_text(dump_config(cfg))
    assert load_config(str(tmp_path / "recorded.yaml")) == cfg
    name = cfg["model"]["name"]
    device = os.path.basename(path)[:-len(".yaml")].rsplit("_", 1)[1]
    assert os.path.basename(path) == f"{name}_{device}.yaml"
    if device == "ascend":
        assert cfg["device"]["target"] == "Ascend" and cfg["device"]["mode"] == "graph"
        assert cfg["device"]["amp_level"] in ("O2", "O3")
        assert cfg["train"]["widths"]["multiple_of"] == 16
    else:
        assert device == "cpu" and cfg["device"]["target"] == "CPU" and cfg["device"]["amp_level"] == "O0"
        steps = cfg["train"]["epochs"] * (cfg["data"]["n_train"] // cfg["train"]["batch_size"])
        assert steps <= 10, "CPU configs are what the tests run: keep them tiny"
    if name not in list_models():
        pytest.skip(f"{name} is not in the zoo yet")
    # The config's arguments bind to the builder's signature (no model built: ImageNet nets are large).
    integral = cfg["model"]["convert"] is None
    classes = {} if cfg["model"]["num_classes"] is None else {"num_classes": cfg["model"]["num_classes"]}
    inspect.signature(_REGISTRY[name]).bind(integral=integral, **classes, **cfg["model"]["kwargs"])


@pytest.mark.parametrize("path", [c for c in CONFIGS if "mnist" in c or "srcnn" in c])
def test_validate_never_changes_its_argument(path):
    """Defaults and derived values (task, loss, scale) go into a new mapping."""
    raw = yaml.safe_load(open(path))
    before = copy.deepcopy(raw)
    cfg = validate(raw)
    assert raw == before and cfg != raw and cfg["task"] in ("classification", "super_resolution")


def test_defaults_filled():
    cfg = validate(MINIMAL)
    assert cfg["train"]["batch_size"] == 32 and cfg["device"]["target"] == "CPU"
    assert cfg["train"]["widths"] == {"low": 0.5, "high": 1.0, "levels": 5, "distribution": "uniform",
                                      "per_group": False, "multiple_of": 1}
    assert cfg["model"]["convert"] is None and cfg["distributed"] is False
    assert cfg["eval"]["tile_margin"] is None  # auto: the network's receptive-field radius
    assert validate(dict(MINIMAL, eval={"tile_margin": 12}))["eval"]["tile_margin"] == 12


@pytest.mark.parametrize("raw, words", [
    ({"train": {"optimzer": {"lr": 0.1}}}, ["train.optimzer", "did you mean 'optimizer'"]),
    ({"trian": {}}, ["'trian'", "did you mean 'train'"]),
    ({"train": {"batch_size": 0}}, ["train.batch_size", ">= 1"]),
    ({"train": {"epochs": 2.5}}, ["train.epochs", "int"]),
    ({"train": {"optimizer": {"lr": -1}}}, ["train.optimizer.lr"]),
    ({"train": {"optimizer": {"name": "lion"}}}, ["train.optimizer.name", "adam"]),
    ({"train": {"widths": {"low": 0.9, "high": 0.5}}}, ["train.widths.low", "train.widths.high"]),
    ({"train": {"widths": {"level": 3}}}, ["train.widths.level", "did you mean 'levels'"]),
    ({"device": {"target": "TPU"}}, ["device.target", "Ascend"]),
    ({"device": {"amp_level": "O4"}}, ["device.amp_level", "O3"]),
    ({"data": {"name": "cifar10"}}, ["data.root", "cifar10"]),
    ({"model": {"convert": {"fold_bn": True}}}, ["model.convert.input_shape"]),
    ({"model": {"name": None}}, ["model.name"]),
    ({"eval": {"tile_margin": -1}}, ["eval.tile_margin", ">= 0", "(or auto)"]),
    ({"eval": {"tile_margin": "wide"}}, ["eval.tile_margin", "(or auto)"]),
])
def test_bad_keys_and_values_are_named(raw, words):
    merged = {k: dict(MINIMAL.get(k, {})) for k in MINIMAL}
    for k, v in raw.items():
        merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and k in merged else v
    with pytest.raises(ConfigError) as e:
        validate(merged)
    for w in words:
        assert w in str(e.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key 'data.name'"):
        validate({"model": {"name": "mnist_cnn"}})


def test_overrides_are_parsed_as_yaml():
    raw = apply_overrides(MINIMAL, ["train.epochs=3", "eval.widths=[1, 0.5]", "train.widths=null",
                                   "train.optimizer.lr=1e-3", "model.kwargs.widths=[8, 8, 8, 8, 8]",
                                   "distributed=true", "output_dir=out dir"])
    cfg = validate(raw)
    assert cfg["train"]["epochs"] == 3 and isinstance(cfg["train"]["epochs"], int)
    assert cfg["eval"]["widths"] == [1.0, 0.5]
    assert cfg["train"]["widths"] is None
    assert cfg["train"]["optimizer"]["lr"] == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as a string
    assert cfg["model"]["kwargs"]["widths"] == [8, 8, 8, 8, 8]
    assert cfg["distributed"] is True and cfg["output_dir"] == "out dir"
    assert MINIMAL == {"model": {"name": "mnist_cnn"}, "data": {"name": "mnist_subset"}}  # not modified


@pytest.mark.parametrize("text, words", [
    ("train.epochs", ["key.sub=value"]),
    ("=3", ["key.sub=value"]),
    ("train..epochs=3", ["key.sub=value"]),
    ("train.epochs.max=3", ["train.epochs", "not a mapping"]),
    ("train.epochs=[1", ["not valid YAML"]),
])
def test_bad_overrides(text, words):
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides({"model": {"name": "m"}, "data": {"name": "digits"}, "train": {"epochs": 1}},
                                 [text]))
    for w in words:
        assert w in str(e.value)


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mnist_cnn}\ndata: {name: digits}\ntrain: {batchsize: 4}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(bad))
    assert str(bad) in str(e.value) and "train.batchsize" in str(e.value) and "batch_size" in str(e.value)
    cfg = load_config(str(bad), ["train={batch_size: 4}"])
    assert cfg["train"]["batch_size"] == 4


def test_cli_train_refuses_a_bad_config_before_building(tmp_path, capsys):
    from inn_ms.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mnist_cnn}\ndata: {name: digits}\n")
    out = tmp_path / "out"
    assert main(["train", "--config", str(bad), "--set", "train.lr=0.1", "--set", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "train.lr" in err and "allowed here" in err
    assert not out.exists()
