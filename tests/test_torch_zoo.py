"""The conversion zoo (model_zoo.torch_zoo): five PyTorch CNNs of different
shapes, their shipped checkpoints and their MindSpore twins.

The checkpoints ``model_zoo/checkpoints/mnist_<name>.safetensors`` are made
by ``scripts/make_torch_zoo.py`` (PyTorch on CPU, the 4,000 training digits
of ``mnist_subset(4000, 1000, seed=0)``).
"""
import importlib.util
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from inn_ms.convert import convert
from inn_ms.data import mnist_subset
from inn_ms.layers.batchnorm import IntegralBatchNorm2d
from inn_ms.layers.plain import with_fast_convolutions
from inn_ms.metrics import accuracy
from model_zoo import create_model, list_models
from model_zoo.torch_zoo import NETWORKS, ZOO_NAMES, bundled_checkpoint

from helpers import rel_err, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "make_torch_zoo.py")
# Printed by scripts/make_torch_zoo.py when it made the shipped files (1,000 test digits).
TRAINED_ACCURACY = {"plain": 0.976, "resnet_bn": 0.980, "resnet_nobn": 0.964, "densenet": 0.978, "mobilenet": 0.969}
# What conversion should see: continuous channel groups, BatchNorms folded, integral BatchNorms left.
STRUCTURE = {"plain": (6, 5, 0), "resnet_bn": (6, 10, 0), "resnet_nobn": (6, 0, 0), "densenet": (6, 1, 6),
             "mobilenet": (5, 10, 0)}


@pytest.fixture(scope="module")
def data():
    return mnist_subset(n_train=4000, n_test=1000, seed=0)


@pytest.fixture(scope="module")
def torch_zoo():
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("make_torch_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_network_is_registered_and_ships_a_small_checkpoint():
    assert set(ZOO_NAMES) <= set(list_models()) and len(ZOO_NAMES) == 5
    for name in NETWORKS:
        path = bundled_checkpoint(name)
        assert path.endswith(".safetensors") and os.path.getsize(path) < 2 ** 20


@pytest.mark.parametrize("name", list(NETWORKS))
def test_twin_matches_pytorch_logits(name, data, torch_zoo, torch_single_thread):
    import torch
    from safetensors.torch import load_file
    reference = torch_zoo.NETWORKS[name][0]()
    reference.load_state_dict(load_file(bundled_checkpoint(name)))
    reference.eval()
    x = data[2][:8]
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    net = create_model(f"mnist_{name}", integral=False, checkpoint_torch="bundled")
    assert not net.training and any(isinstance(c, nn.Conv2d) for _, c in net.cells_and_names())
    got = run(net, x)
    assert got.shape == (8, 10)
    assert rel_err(got, expected) <= 1e-5
    # Untrained twins differ: the comparison above is not vacuous.
    assert rel_err(run(create_model(f"mnist_{name}", integral=False), x), expected) > 1e-2


@pytest.mark.parametrize("name", list(NETWORKS))
def test_twin_is_the_trained_network_and_converts_exactly(name, data):
    """The shipped weights are the trained ones (the twin's accuracy is the one
    printed at training time, within 0.2 points), and conversion (which checks
    its own exactness) finds the expected groups and BatchNorms."""
    ms.set_context(mode=ms.GRAPH_MODE)
    _, _, x, y = data
    net = create_model(f"mnist_{name}", integral=False, checkpoint_torch="bundled")
    assert accuracy(with_fast_convolutions(net), x, y) >= TRAINED_ACCURACY[name] - 0.002
    model = convert(net, (2, 1, 28, 28))
    groups, folded, integral_bn = STRUCTURE[name]
    assert len(model.groups) == groups
    assert len(model.conversion["folded_bn"]) == folded
    assert sum(isinstance(c, IntegralBatchNorm2d) for _, c in model.cells_and_names()) == integral_bn
    model.set_train(False)
    ms.set_context(mode=ms.PYNATIVE_MODE)  # convert checked itself in graph mode: no two more compiles here
    assert rel_err(run(model, x[:16]), run(net, x[:16])) <= 1e-5


def test_integral_and_unknown_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="convert"):
        create_model("mnist_densenet", integral=True)
    with pytest.raises(TypeError, match="widths"):
        create_model("mnist_plain", integral=False, widths=(8, 8))
    with pytest.raises(ValueError, match="no checkpoint file"):
        create_model("mnist_mobilenet", integral=False, checkpoint_torch=str(tmp_path / "nope.safetensors"))
