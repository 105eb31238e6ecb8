"""Loading PyTorch state_dicts (.pth, .safetensors, .npz) into MindSpore
networks, checked against real PyTorch modules."""
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

torch = pytest.importorskip("torch")

from inn_ms.convert import CheckpointError, WeightLoadError, load_torch_weights, read_state_dict  # noqa: E402
from helpers import randomize_torch_bn  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class TorchNet(torch.nn.Module):
    """conv-BN-ReLU, depthwise conv-BN with a residual add, linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)) + x)
        return self.fc(x.mean((2, 3)))


class MsNet(nn.Cell):
    def __init__(self, names=("conv1", "bn1", "conv2", "bn2", "fc")):
        super().__init__()
        c1, b1, c2, b2, fc = names
        self.names = names
        setattr(self, c1, nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1, has_bias=True))
        setattr(self, b1, nn.BatchNorm2d(8, momentum=0.9, eps=1e-5))
        setattr(self, c2, nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, group=8, has_bias=False))
        setattr(self, b2, nn.BatchNorm2d(8, momentum=0.9, eps=1e-5))
        setattr(self, fc, nn.Dense(8, 5))

    def construct(self, x):  # PyNative (the tests' default mode): names resolved at run time
        c1, b1, c2, b2, fc = (getattr(self, n) for n in self.names)
        x = ops.relu(b1(c1(x)))
        x = ops.relu(b2(c2(x)) + x)
        return fc(x.mean((2, 3)))


@pytest.fixture
def trained_torch():
    torch.manual_seed(0)
    net = TorchNet()
    randomize_torch_bn(net.bn1, net.bn2)
    return net.eval()


def _logits(torch_net, ms_net, rng):
    x = rng.normal(size=(2, 3, 9, 9)).astype(np.float32)
    with torch.no_grad():
        ref = torch_net(torch.from_numpy(x)).numpy()
    ms_net.set_train(False)
    return ms_net(Tensor(x)).asnumpy(), ref


def _save(net, path):
    sd = net.state_dict()
    if path.suffix in (".pth", ".pt"):
        torch.save(sd, path)
    elif path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        np.savez(path, **{k: v.numpy() for k, v in sd.items()})


@pytest.mark.parametrize("ext", [".pth", ".safetensors", ".npz"])
def test_load_reproduces_torch_logits(tmp_path, trained_torch, rng, ext):
    path = tmp_path / f"net{ext}"
    _save(trained_torch, path)
    ms_net = MsNet()
    loaded = load_torch_weights(ms_net, str(path))
    assert len(loaded) == len(list(ms_net.get_parameters())) == len(trained_torch.state_dict()) - 2
    got, ref = _logits(trained_torch, ms_net, rng)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_structural_matching_when_names_differ(trained_torch, rng):
    """Renamed modules pair up where their shapes leave one choice (the
    convolutions, the head); the two BatchNorms of equal shapes are not
    paired by position but refused, with a name_map to complete."""
    ms_net = MsNet(names=("stem", "norm_a", "dw", "norm_b", "head"))
    with pytest.raises(WeightLoadError, match=r"\['bn1', 'bn2'\] and network modules \['norm_a', 'norm_b'\]") as err:
        load_torch_weights(ms_net, trained_torch.state_dict())
    assert "name_map={'bn1': 'norm_a', 'bn2': 'norm_b'}" in str(err.value)
    load_torch_weights(ms_net, trained_torch.state_dict(), name_map={"bn1": "norm_a", "bn2": "norm_b"})
    got, ref = _logits(trained_torch, ms_net, rng)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_user_name_map(trained_torch, rng):
    ms_net = MsNet(names=("conv1", "bn1", "conv2", "bn2", "classifier"))
    sd = {k: v.numpy() for k, v in trained_torch.state_dict().items()}
    sd["extra.weight"] = np.zeros((5, 8), np.float32)  # breaks the structural fallback
    with pytest.raises(WeightLoadError):
        load_torch_weights(ms_net, sd)
    del sd["extra.weight"]
    load_torch_weights(ms_net, sd, name_map={"fc.weight": "classifier.weight", "fc.bias": "classifier.bias"})
    got, ref = _logits(trained_torch, ms_net, rng)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def _snapshot(net):
    return {n: p.asnumpy().copy() for n, p in net.parameters_and_names()}


@pytest.mark.parametrize("change, field", [
    (lambda sd: sd.pop("bn2.running_var"), "missing"),
    (lambda sd: sd.__setitem__("head.bias", np.zeros(3, np.float32)), "unexpected"),
    (lambda sd: sd.__setitem__("fc.weight", np.zeros((5, 7), np.float32)), "mismatched"),
])
def test_partial_load_is_refused_and_changes_nothing(trained_torch, change, field):
    sd = {k: v.numpy() for k, v in trained_torch.state_dict().items()}
    change(sd)
    ms_net = MsNet()
    before = _snapshot(ms_net)
    with pytest.raises(WeightLoadError) as err:
        load_torch_weights(ms_net, sd)
    assert getattr(err.value, field), err.value
    assert "nothing was changed" in str(err.value)
    after = _snapshot(ms_net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("ext", [".pth", ".safetensors", ".npz"])
def test_truncated_checkpoint_gives_clear_error(tmp_path, trained_torch, ext):
    path = tmp_path / f"net{ext}"
    _save(trained_torch, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_state_dict(str(path))


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint file"):
        read_state_dict(str(tmp_path / "absent.pth"))
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        read_state_dict(str(other))
    listy = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listy)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        read_state_dict(str(listy))
