"""Matching a checkpoint's keys to a network's parameters when the names
differ: modules are paired only where their shapes leave one choice,
never by the order of the keys (which the file format decides), and
same-shaped modules are refused with a ``name_map`` to complete."""
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

torch = pytest.importorskip("torch")
tnn = torch.nn

from inn_ms.convert import WeightLoadError, load_torch_weights  # noqa: E402
from helpers import save_torch_state_dict  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class TorchResidual(tnn.Module):
    """A residual pair of equal shapes, with ``res_conv2`` registered first."""

    def __init__(self):
        super().__init__()
        self.stem = tnn.Conv2d(3, 8, 3, padding=1)
        self.res_conv2 = tnn.Conv2d(8, 8, 3, padding=1)
        self.res_conv1 = tnn.Conv2d(8, 8, 3, padding=1)
        self.fc = tnn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = self.res_conv2(torch.relu(self.res_conv1(x)))
        return self.fc(torch.relu(x + y).mean((2, 3)))


class MsResidual(nn.Cell):
    """The same network under other names, in the natural order."""

    def __init__(self):
        super().__init__()
        conv = lambda cin, cout: nn.Conv2d(cin, cout, 3, pad_mode="pad", padding=1, has_bias=True)
        self.conv_in = conv(3, 8)
        self.conv_a = conv(8, 8)  # res_conv1
        self.conv_b = conv(8, 8)  # res_conv2
        self.head = nn.Dense(8, 4)

    def construct(self, x):
        x = ops.relu(self.conv_in(x))
        y = self.conv_b(ops.relu(self.conv_a(x)))
        return self.head(ops.relu(x + y).mean((2, 3)))


@pytest.fixture
def tnet():
    torch.manual_seed(0)
    return TorchResidual().eval()


def _rel_err(tnet, ms_net):
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = tnet(torch.from_numpy(x)).numpy()
    ms_net.set_train(False)
    return float(np.abs(ms_net(Tensor(x)).asnumpy() - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
def test_same_shaped_modules_are_not_paired_by_order(tmp_path, tnet, ext):
    """The two residual convolutions loaded swapped (by module order); now
    the load is refused naming both sides, and the suggested name_map loads
    the network PyTorch computes."""
    path = save_torch_state_dict(tnet, tmp_path / f"residual{ext}")
    net = MsResidual()
    with pytest.raises(WeightLoadError, match=r"checkpoint modules \['res_conv1', 'res_conv2'\] and network "
                                              r"modules \['conv_a', 'conv_b'\] all hold") as err:
        load_torch_weights(net, path)
    assert "name_map={'res_conv1': 'conv_a', 'res_conv2': 'conv_b'}" in str(err.value)
    assert "\n" not in str(err.value)
    load_torch_weights(net, path, name_map={"res_conv1": "conv_a", "res_conv2": "conv_b"})
    assert _rel_err(tnet, net) <= 1e-5


def test_unique_shapes_pair_alike_from_every_key_order(tmp_path):
    """Modules with shapes no other module has pair up whatever the file's
    key order: module order (.pth), sorted (.safetensors), reverse (.npz)."""
    class Torch(tnn.Module):
        def __init__(self):
            super().__init__()
            self.z_first = tnn.Conv2d(3, 6, 3, padding=1)
            self.a_second = tnn.Conv2d(6, 10, 3, padding=1)
            self.m_head = tnn.Linear(10, 4)

        def forward(self, x):
            x = torch.relu(self.a_second(torch.relu(self.z_first(x))))
            return self.m_head(x.mean((2, 3)))

    class Ms(nn.Cell):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 6, 3, pad_mode="pad", padding=1, has_bias=True)
            self.c2 = nn.Conv2d(6, 10, 3, pad_mode="pad", padding=1, has_bias=True)
            self.out = nn.Dense(10, 4)

        def construct(self, x):
            return self.out(ops.relu(self.c2(ops.relu(self.c1(x)))).mean((2, 3)))

    torch.manual_seed(0)
    tnet = Torch().eval()
    for ext in (".pth", ".safetensors", ".npz"):
        net = Ms()
        load_torch_weights(net, save_torch_state_dict(tnet, tmp_path / f"unique{ext}"))
        assert _rel_err(tnet, net) <= 1e-5, ext


def test_name_map_renames_whole_modules(tnet):
    net = MsResidual()
    load_torch_weights(net, tnet.state_dict(), name_map={"stem": "conv_in", "res_conv1": "conv_a",
                                                         "res_conv2": "conv_b", "fc": "head"})
    assert _rel_err(tnet, net) <= 1e-5
