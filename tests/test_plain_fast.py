"""The networks the library makes run the fast CPU convolution by default,
also where a convolution stays discrete (on no continuous group): convert's
integral model, ``discretize``, ``prune`` and the channel-selection
baselines hold no plain ``nn.Conv2d`` (MindSpore's CPU kernel is tens of
times slower), compute the same function, and still export MindSpore's
standard ``Conv2D``."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops
from mindspore.train.mind_ir_pb2 import ModelProto

from inn_ms.convert import convert
from inn_ms.export import export_mindir, load_mindir
from inn_ms.layers import IntegralConv2d
from inn_ms.layers.plain import Conv2d
from inn_ms.prune import prune


class PinnedNet(nn.Cell):
    """A grouped 3x3 convolution (two groups) whose channels are pinned
    (``PINNED``): ``stem`` and ``grouped`` stay discrete, ``conv``'s output
    channels are continuous."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1, has_bias=True)
        self.grouped = nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, group=2, has_bias=True)
        self.conv = nn.Conv2d(8, 16, 3, pad_mode="same", stride=2, has_bias=True)
        self.head = nn.Dense(16, 10)
        self.relu = nn.ReLU()

    def construct(self, x):
        x = self.relu(self.grouped(self.relu(self.stem(x))))
        x = self.relu(self.conv(x))
        return self.head(ops.mean(x, (2, 3)))


PINNED = {"grouped.weight": [0, 1]}


def _slow(cell):
    return sorted(name for name, c in cell.cells_and_names() if type(c) is nn.Conv2d)


def _ops(path):
    proto = ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return [n.op_type.split("::")[-1].split(":")[0] for n in proto.graph.node]  # "REF::Conv2D:4" -> Conv2D


def test_no_plain_conv2d_in_what_the_library_returns_and_the_same_function(rng, tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = PinnedNet()
    x = Tensor(rng.normal(size=(2, 3, 12, 12)).astype(np.float32))
    ref = net(x).asnumpy()
    model = convert(net, x, discrete_dims=PINNED)
    assert isinstance(model.network.conv, IntegralConv2d)
    assert type(model.network.stem) is Conv2d and type(model.network.grouped) is Conv2d
    assert _slow(net) == ["conv", "grouped", "stem"]  # the original network is untouched
    assert _slow(model.network) == []
    full = model.discretize()
    assert _slow(full) == []
    np.testing.assert_allclose(full(x).asnumpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    (group,) = model.groups
    model.resize(sizes={group: 10})
    half = model.discretize()
    pruned, _ = prune(model, sizes={group: 10})
    picked = model.select_channels({group: np.arange(10)})
    for plain in (half, pruned, picked):
        assert _slow(plain) == []
    np.testing.assert_allclose(pruned(x).asnumpy(), half(x).asnumpy(), rtol=1e-6, atol=1e-6)

    # Exported: standard Conv2D ops (the fast backend is a run-time choice).
    path = export_mindir(half, str(tmp_path / "half.mindir"), (2, 3, 12, 12))
    kinds = _ops(path)
    assert kinds.count("Conv2D") == 3 and kinds.count("MatMul") == 1, kinds  # the head's MatMul
    assert type(half.stem) is Conv2d and half.stem.conv_backend == "matmul"  # restored after export
    np.testing.assert_allclose(load_mindir(path)(x).asnumpy(), half(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_a_depthwise_convolution_with_a_channel_multiplier_runs_natively(rng):
    """groups = input channels but twice as many outputs (PiT's pooling):
    not the matmul depthwise path (it raised), the native convolution."""
    conv = nn.Conv2d(4, 8, 3, stride=2, pad_mode="pad", padding=1, group=4, has_bias=True)
    x = Tensor(rng.normal(size=(2, 4, 7, 7)).astype(np.float32))
    fast = Conv2d(4, 8, 3, stride=2, pad_mode="pad", padding=1, group=4, has_bias=True)
    fast.weight.set_data(conv.weight.data.copy())
    fast.bias.set_data(conv.bias.data.copy())
    fast.conv_backend = "matmul"
    np.testing.assert_allclose(fast(x).asnumpy(), conv(x).asnumpy(), rtol=1e-5, atol=1e-6)
