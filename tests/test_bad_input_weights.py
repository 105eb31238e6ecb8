"""Weights as they come: invalid values are refused at every load (naming
the tensor and an index), and checkpoints wrapped the usual ways
(``{'model': sd}``, nested wrappers, ``module.`` prefixes, a pickled
``nn.Module``) load when only one reading is possible, or are refused
naming what was found. Checked against a real PyTorch module."""
import sys
import types

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

torch = pytest.importorskip("torch")
tnn = torch.nn

from inn_ms.convert import load_torch_weights  # noqa: E402
from helpers import randomize_torch_bn  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class TorchNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = tnn.BatchNorm2d(8)
        self.conv2 = tnn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(12)
        self.fc = tnn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class MsNet(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1, has_bias=True)
        self.bn1 = nn.BatchNorm2d(8, momentum=0.9, eps=1e-5)
        self.conv2 = nn.Conv2d(8, 12, 3, pad_mode="pad", padding=1, has_bias=False)
        self.bn2 = nn.BatchNorm2d(12, momentum=0.9, eps=1e-5)
        self.fc = nn.Dense(12, 5)

    def construct(self, x):
        x = ops.relu(self.bn1(self.conv1(x)))
        x = ops.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def tnet():
    torch.manual_seed(0)
    net = TorchNet()
    randomize_torch_bn(net.bn1, net.bn2)
    return net.eval()


def _sd(net):
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def _write(sd, path):
    if path.suffix == ".pth":
        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, path)
    elif path.suffix == ".safetensors":
        from safetensors.numpy import save_file
        save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(path))
    else:
        np.savez(path, **sd)
    return str(path)


def _agrees(tnet, ms_net):
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 9)).astype(np.float32)
    with torch.no_grad():
        ref = tnet(torch.from_numpy(x)).numpy()
    ms_net.set_train(False)
    return float(np.abs(ms_net(Tensor(x)).asnumpy() - ref).max() / np.abs(ref).max()) <= 1e-5


def _snapshot(net):
    return {n: p.asnumpy().copy() for n, p in net.parameters_and_names()}


@pytest.mark.parametrize("ext, name, index, value, says", [
    (".safetensors", "conv2.weight", (5, 0, 1, 2), np.nan, r"conv2\.weight\[5, 0, 1, 2\] is nan \(1 of 864"),
    (".pth", "fc.bias", (2,), np.inf, r"fc\.bias\[2\] is inf"),
    (".npz", "bn1.running_var", (3,), -0.25, r"bn1\.running_var\[3\] is -0\.25, a negative BatchNorm variance"),
    (".npz", "bn2.running_mean", (0,), -np.inf, r"bn2\.running_mean\[0\] is -inf"),
])
def test_invalid_values_are_refused_and_change_nothing(tmp_path, tnet, ext, name, index, value, says):
    sd = _sd(tnet)
    sd[name][index] = value
    net = MsNet()
    before = _snapshot(net)
    with pytest.raises(ValueError, match=says):
        load_torch_weights(net, _write(sd, tmp_path / f"w{ext}"))
    after = _snapshot(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def _bad_small_resnet(kind):
    """A small integral ResNet-18 with one bad value: a negative BatchNorm
    variance or a NaN weight. Returns the model and the expected message."""
    from model_zoo import create_model
    model = create_model("resnet18", num_classes=10, width=0.125)
    suffix = "moving_variance" if kind == "variance" else "conv1.weight"
    name, p = next((n, p) for n, p in model.parameters_and_names() if n.endswith(suffix))
    a = p.asnumpy().copy()
    a.flat[1] = -1.0 if kind == "variance" else np.nan
    p.set_data(Tensor(a))
    index = ", ".join(map(str, np.unravel_index(1, a.shape)))
    says = "is -1, a negative BatchNorm variance" if kind == "variance" else "is nan"
    return model, f"{name}[{index}] {says}"


@pytest.mark.parametrize("path_kind, kind", [("zoo checkpoint", "variance"), ("training checkpoint", "nan"),
                                             ("artifact", "variance")])
def test_invalid_values_in_mindspore_files_are_refused(tmp_path, path_kind, kind):
    """Every other loading path checks too: the zoo's .ckpt
    (create_model(checkpoint=...)), training checkpoints (resume) and
    integral artifacts."""
    from inn_ms.artifact import load_artifact, save_artifact
    from inn_ms.checkpoint import load_checkpoint
    from model_zoo import create_model
    model, says = _bad_small_resnet(kind)
    if path_kind == "artifact":
        path = str(tmp_path / "bad.inn")
        save_artifact(model, path)
        load = lambda: load_artifact(path)
    else:
        path = str(tmp_path / "bad.ckpt")
        ms.save_checkpoint(model, path)
        fresh = create_model("resnet18", num_classes=10, width=0.125)
        load = {"zoo checkpoint": lambda: create_model("resnet18", num_classes=10, width=0.125, checkpoint=path),
                "training checkpoint": lambda: load_checkpoint(path, fresh)}[path_kind]
    with pytest.raises(ValueError) as err:
        load()
    assert says in str(err.value)


WRAPPERS = {
    "model": lambda sd: {"model": sd},
    "model_state_dict+optimizer": lambda sd: {"model_state_dict": sd, "epoch": 7,
                                              "optimizer_state_dict": {"state": {0: {"momentum_buffer":
                                                                                     torch.zeros(3)}},
                                                                       "param_groups": [{"lr": 0.1}]}},
    "nested": lambda sd: {"state_dict": {"model": sd}, "meta": {"epoch": 3}},
}


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_wrapped_state_dicts_are_unwrapped(tmp_path, tnet, wrapper):
    path = tmp_path / "wrapped.pth"
    torch.save(WRAPPERS[wrapper](tnet.state_dict()), path)
    net = MsNet()
    load_torch_weights(net, str(path))
    assert _agrees(tnet, net)


def test_data_parallel_prefix_is_stripped_from_a_sorted_file(tmp_path, tnet):
    """``module.`` keys, as DataParallel saves them, in a .safetensors (sorted keys)."""
    sd = {k: v.numpy() for k, v in tnn.DataParallel(tnet).state_dict().items()}
    assert all(k.startswith("module.") for k in sd)
    net = MsNet()
    load_torch_weights(net, _write(sd, tmp_path / "dp.safetensors"))
    assert _agrees(tnet, net)


def test_a_prefix_on_some_keys_only_is_refused_naming_it(tnet):
    sd = _sd(tnet)
    sd = {("module." + k if k.startswith("conv") else k): v for k, v in sd.items()}
    with pytest.raises(ValueError, match=r"3 of 13 checkpoint keys start with 'module\.' .* the others do not"):
        load_torch_weights(MsNet(), sd)


def test_two_state_dicts_are_refused_naming_both_and_key_picks_one(tmp_path, tnet):
    ema = TorchNet().eval()
    path = tmp_path / "two.pth"
    torch.save({"model": ema.state_dict(), "model_ema": tnet.state_dict(), "epoch": 3}, path)
    with pytest.raises(ValueError, match=r"2 state_dicts \(checkpoint\['model'\], checkpoint\['model_ema'\]\).*key="):
        load_torch_weights(MsNet(), str(path))
    net = MsNet()
    load_torch_weights(net, str(path), key="model_ema")
    assert _agrees(tnet, net)


def _pickle_with_module_gone(obj_factory, path, module="third_party_models"):
    """torch.save an object of a class from ``module``, a module that exists
    only while saving: loading must not need (or import) it."""
    fake = types.ModuleType(module)
    sys.modules[module] = fake
    try:
        obj = obj_factory(fake)
        torch.save(obj, path)
    finally:
        del sys.modules[module]
    return obj


def test_a_pickled_module_is_read_without_running_its_code(tmp_path, tnet):
    def make(fake):
        cls = type("Classifier", (TorchNet,), {"__module__": fake.__name__})
        fake.Classifier = cls
        obj = cls()
        obj.load_state_dict(tnet.state_dict())
        return obj

    path = tmp_path / "whole_model.pth"
    _pickle_with_module_gone(make, path)
    net = MsNet()
    load_torch_weights(net, str(path))
    assert "third_party_models" not in sys.modules
    assert _agrees(tnet, net)


def test_a_pickled_object_that_is_no_module_gets_one_clean_line(tmp_path):
    """No terminal colour codes, no advice to unpickle with weights_only=False."""
    def make(fake):
        cls = type("Config", (), {"__module__": fake.__name__})
        fake.Config = cls
        obj = cls()
        obj.depth = 18
        return obj

    path = tmp_path / "config.pth"
    _pickle_with_module_gone(make, path)
    with pytest.raises(ValueError) as err:
        load_torch_weights(MsNet(), str(path))
    message = str(err.value)
    assert "holds a pickled third_party_models.Config, not a state_dict" in message
    assert "\x1b" not in message and "weights_only" not in message and "\n" not in message
