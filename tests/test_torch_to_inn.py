"""End to end against real PyTorch: a torch network with BatchNorm, a
concatenation of a plain and a depthwise branch, a residual add and a
linear head is saved, loaded into its MindSpore twin, converted to an
integral network, and compared with the torch logits at every step."""
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

torch = pytest.importorskip("torch")

from inn_ms.convert import convert, load_torch_weights  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class TorchConcatNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.stem_bn = torch.nn.BatchNorm2d(8)
        self.plain = torch.nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.cat_bn = torch.nn.BatchNorm2d(14)
        self.mix = torch.nn.Conv2d(14, 12, 1)
        self.skip = torch.nn.Conv2d(14, 12, 1)
        self.head = torch.nn.Linear(12, 4)

    def forward(self, x):
        s = torch.relu(self.stem_bn(self.stem(x)))
        y = torch.cat([torch.relu(self.plain(s)), torch.relu(self.depthwise(s))], 1)
        y = torch.relu(self.cat_bn(y))
        y = torch.relu(self.mix(y) + self.skip(y))
        return self.head(y.mean((2, 3)))


class MsConcatNet(nn.Cell):
    def __init__(self):
        super().__init__()
        conv = lambda cin, cout, k, **kw: nn.Conv2d(cin, cout, k, pad_mode="pad", padding=k // 2, **kw)
        self.stem = conv(3, 8, 3, has_bias=True)
        self.stem_bn = nn.BatchNorm2d(8)
        self.plain = conv(8, 6, 3)
        self.depthwise = conv(8, 8, 3, group=8, has_bias=True)
        self.cat_bn = nn.BatchNorm2d(14)
        self.mix = conv(14, 12, 1, has_bias=True)
        self.skip = conv(14, 12, 1, has_bias=True)
        self.head = nn.Dense(12, 4)

    def construct(self, x):
        s = ops.relu(self.stem_bn(self.stem(x)))
        y = ops.concat((ops.relu(self.plain(s)), ops.relu(self.depthwise(s))), 1)
        y = ops.relu(self.cat_bn(y))
        y = ops.relu(self.mix(y) + self.skip(y))
        return self.head(y.mean((2, 3)))


def test_torch_checkpoint_to_integral_network(tmp_path, rng):
    torch.manual_seed(0)
    tnet = TorchConcatNet()
    with torch.no_grad():
        for bn in (tnet.stem_bn, tnet.cat_bn):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    tnet.eval()
    path = tmp_path / "net.pth"
    torch.save(tnet.state_dict(), path)
    x = rng.normal(size=(2, 3, 10, 10)).astype(np.float32)
    with torch.no_grad():
        ref = tnet(torch.from_numpy(x)).numpy()

    def rel(out):
        return float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))

    net = MsConcatNet()
    load_torch_weights(net, str(path))
    net.set_train(False)
    assert rel(net(Tensor(x)).asnumpy()) < 1e-5

    model = convert(net, x.shape)
    model.set_train(False)
    assert rel(model(Tensor(x)).asnumpy()) < 1e-5
    groups = model.conversion["groups"]
    assert model.conversion["folded_bn"] == ["stem_bn"]  # cat_bn reads a concatenation: kept, integral
    # The concatenation: the plain branch's own group, then the depthwise branch (the stem's group).
    assert groups.layers["cat_bn"].inputs == [("plain", 6, 1), ("stem", 8, 1)]
    assert list(model.groups) == ["stem", "plain", "mix"]
    model.resize(keep=0.5)
    plain = model.discretize()
    plain.set_train(False)
    out_model, out_plain = model(Tensor(x)).asnumpy(), plain(Tensor(x)).asnumpy()
    assert np.max(np.abs(out_plain - out_model)) <= 1e-4 * np.max(np.abs(out_model))
    assert tuple(plain.cat_bn.moving_mean.shape) == (7,)  # 3 of the plain branch + 4 of the depthwise one
