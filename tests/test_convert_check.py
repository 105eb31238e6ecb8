"""Conversion's own exactness check: it runs on seeded random inputs (an
all-zero input sees biases alone), on the integral and on the discretized
network, with a tolerance that follows the network's float32 rounding
floor; and a network with invalid weights is not converted at all."""
import logging

import numpy as np
import pytest
from mindspore import Tensor

from inn_ms.cli import main
from inn_ms.convert import convert
from inn_ms.layers import IntegralConv2d
from model_zoo import create_model
from model_zoo.mnist_torch_cnn import bundled_checkpoint

SHAPE = (2, 1, 28, 28)


@pytest.fixture
def net():
    """The shipped trained twin of the PyTorch demo CNN (1 → 32 → … → 10)."""
    return create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")


def _set(net, name, index, value):
    p = dict(net.parameters_and_names())[name]
    a = p.asnumpy().copy()
    a[index] = value
    p.set_data(Tensor(a))


def test_nan_weight_with_no_permute_is_refused_from_the_command_line(tmp_path, capsys):
    """The issue's case: one NaN in a weight file and --no-permute exited 0
    with an "exact" artifact whose discretized network was wrong."""
    from safetensors.numpy import load_file, save_file
    sd = dict(load_file(bundled_checkpoint()))
    sd["res_conv1.weight"] = sd["res_conv1.weight"].copy()
    sd["res_conv1.weight"][5, 3, 1, 1] = np.nan
    weights, out = tmp_path / "nan.safetensors", tmp_path / "nan.inn"
    save_file(sd, str(weights))
    code = main(["convert", "mnist_torch_cnn", "--weights", str(weights), "--input-shape", "2,1,28,28",
                 "--no-permute", "--out", str(out)])
    assert code == 2 and not out.exists()
    assert "res_conv1.weight[5, 3, 1, 1] is nan" in capsys.readouterr().err


@pytest.mark.parametrize("name, index, value, says", [
    ("res_conv1.weight", (5, 3, 1, 1), np.nan, r"res_conv1\.weight\[5, 3, 1, 1\] is nan"),
    ("fc1.bias", (7,), np.inf, r"fc1\.bias\[7\] is inf"),
    ("bn2.moving_variance", (4,), -0.5, r"bn2\.moving_variance\[4\] is -0\.5, a negative BatchNorm variance"),
])
def test_convert_refuses_invalid_weights(net, name, index, value, says):
    _set(net, name, index, value)
    with pytest.raises(ValueError, match=says):
        convert(net, SHAPE, permute=False)


def _corrupt_first_layer(monkeypatch):
    """Conversion that gets the first layer's weights wrong: an all-zero
    input never sees them (the layer then outputs its bias alone)."""
    real = IntegralConv2d.from_discrete.__func__

    def from_discrete(cls, conv, *args, **kwargs):
        layer = real(cls, conv, *args, **kwargs)
        if conv.in_channels == 1:
            w = layer.weight.asnumpy().copy()
            w[0] *= 1.5
            layer.weight.set_data(Tensor(w))
        return layer

    monkeypatch.setattr(IntegralConv2d, "from_discrete", classmethod(from_discrete))


def test_check_sees_what_an_all_zero_input_cannot(net, monkeypatch):
    _corrupt_first_layer(monkeypatch)
    with pytest.raises(ValueError, match="the integral network differs from the original by .* on a random normal"):
        convert(net, SHAPE, permute=False)


def test_check_compares_the_discretized_network(net, monkeypatch):
    """A discretized network that differs (by 0.1 % in one layer) while the
    integral network is exact is refused."""
    real = IntegralConv2d.discretize

    def discretize(self, *args, **kwargs):
        conv = real(self, *args, **kwargs)
        if conv.in_channels == 32 and conv.out_channels == 64:
            conv.weight.set_data(Tensor(conv.weight.asnumpy() * np.float32(1.001)))
        return conv

    monkeypatch.setattr(IntegralConv2d, "discretize", discretize)
    with pytest.raises(ValueError, match="the discretized network differs from the original"):
        convert(net, SHAPE, permute=False)


def test_tolerance_follows_the_rounding_floor(net, monkeypatch, caplog):
    """Below the network's float32 rounding floor no tolerance can be met
    (hrnet_w32 converts to 1.3e-5 against a fixed 1e-5): the tolerance rises
    to 16x the floor and says so, and a real error still fails, stating the
    tolerance used."""
    with caplog.at_level(logging.INFO, logger="inn_ms"):
        convert(net, SHAPE, permute=False, tolerance=1e-9)
    assert any("rounding floor" in r.getMessage() for r in caplog.records)
    _corrupt_first_layer(monkeypatch)
    with pytest.raises(ValueError, match=r"tolerance \S+, the larger of tolerance=1e-09 and 16 x \S+ \(how much one "
                                         r"float32 rounding step"):
        convert(net, SHAPE, permute=False, tolerance=1e-9)


def test_check_inputs_are_seeded_random_plus_the_sample():
    from inn_ms.convert.convert import check_inputs
    only_shape = check_inputs((2, 3, 4, 4))
    assert len(only_shape) == 1 and float(np.abs(only_shape[0][1].asnumpy()).min()) > 0
    np.testing.assert_array_equal(check_inputs((2, 3, 4, 4))[0][1].asnumpy(), only_shape[0][1].asnumpy())
    sample = np.ones((2, 3, 4, 4), np.float32)
    with_sample = check_inputs(sample)
    assert len(with_sample) == 2
    np.testing.assert_array_equal(with_sample[1][1].asnumpy(), sample)
