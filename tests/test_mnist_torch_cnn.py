"""The PyTorch demo checkpoint and its MindSpore twin (model_zoo.mnist_torch_cnn).

The shipped ``model_zoo/checkpoints/mnist_torch_cnn.safetensors`` is made by
``scripts/make_torch_checkpoint.py`` (8 epochs: 98.4 % on the 1,000 test
digits of ``mnist_subset(4000, 1000, seed=0)``).
"""
import importlib.util
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from inn_ms.data import mnist_subset
from inn_ms.layers.plain import with_fast_convolutions
from model_zoo import create_model
from model_zoo.mnist_torch_cnn import MnistTorchNet, bundled_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "make_torch_checkpoint.py")
TRAINED_ACCURACY = 0.984  # printed by scripts/make_torch_checkpoint.py when it made the shipped file


@pytest.fixture(scope="module")
def data():
    return mnist_subset(n_train=4000, n_test=1000, seed=0)


def _torch_model():
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    spec = importlib.util.spec_from_file_location("make_torch_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TorchMnistNet()
    model.load_state_dict(load_file(bundled_checkpoint()))
    return torch, model.eval()


def test_bundled_checkpoint_ships_with_the_zoo():
    path = bundled_checkpoint()
    assert os.path.isfile(path) and path.endswith(".safetensors")
    assert os.path.getsize(path) < 2 * 2 ** 20


def test_twin_matches_pytorch_logits(mode, data, torch_single_thread):
    torch, reference = _torch_model()
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    assert isinstance(net, MnistTorchNet) and isinstance(net.conv1, nn.Conv2d)
    x = data[2][:8]
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = net(ms.Tensor(x)).asnumpy()
    assert got.shape == (8, 10)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_twin_is_the_trained_network(data):
    """The shipped weights are the trained ones: the MindSpore twin reaches
    the accuracy printed at training time (up to 0.2 points)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    _, _, x, y = data
    plain = create_model("mnist_torch_cnn", integral=False, checkpoint_torch=bundled_checkpoint())
    plain_logits = plain(ms.Tensor(x[:4])).asnumpy()
    net = with_fast_convolutions(create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled"))
    assert all(type(c) is not nn.Conv2d for c in net.cells())
    np.testing.assert_allclose(net(ms.Tensor(x[:4])).asnumpy(), plain_logits, rtol=0,
                               atol=1e-5 * np.abs(plain_logits).max())
    pred = np.concatenate([net(ms.Tensor(x[i:i + 250])).asnumpy().argmax(1) for i in range(0, len(x), 250)])
    assert (pred == y).mean() >= TRAINED_ACCURACY - 0.002


def test_integral_is_refused_with_a_pointer_to_the_converter():
    with pytest.raises(ValueError, match="convert"):
        create_model("mnist_torch_cnn", integral=True)


def test_unknown_checkpoint_and_arguments_are_errors(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint file"):
        create_model("mnist_torch_cnn", integral=False, checkpoint_torch=str(tmp_path / "nope.safetensors"))
    with pytest.raises(TypeError, match="widths"):
        create_model("mnist_torch_cnn", integral=False, widths=(8, 8))
