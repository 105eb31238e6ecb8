"""Control grids smaller than the channel count (``control=(m_out, m_in)``):
weights sampled from fewer control values, smooth along the channel axes."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from inn_ms.layers import IntegralConv2d, IntegralDense
from model_zoo import create_model
from reference import ref_conv, ref_kernel, ref_trapezoid, uniform_nodes


def _sampled(lam, n_out, n_in, full_in):
    """Reference sampling: quadrature normalised by the in-group's full size."""
    x_out, x_in = uniform_nodes(n_out), uniform_nodes(n_in)
    b = ref_kernel(x_in, lam.shape[1]) * (ref_trapezoid(x_in) * full_in)[:, None]
    w = np.einsum("ji,oi...->oj...", b, lam)
    return np.einsum("ko,o...->k...", ref_kernel(x_out, lam.shape[0]), w)


@pytest.mark.parametrize("n_out, n_in", [(12, 10), (7, 5), (3, 4)])
def test_conv_with_small_control_grid_matches_reference(mode, rng, n_out, n_in):
    layer = IntegralConv2d(10, 12, 3, padding=1, control=(6, 5))
    assert layer.weight.shape == (6, 5, 3, 3)
    layer.partitions["out"].resize(n_out)
    layer.partitions["in"].resize(n_in)
    x = rng.normal(size=(2, n_in, 7, 7)).astype(np.float32)
    lam = layer.weight.asnumpy().astype(np.float64)
    w = _sampled(lam, n_out, n_in, full_in=10)
    b = ref_kernel(uniform_nodes(n_out), 6) @ layer.bias.asnumpy().astype(np.float64)
    expected = ref_conv(x.astype(np.float64), w, b, padding=(1, 1, 1, 1))
    got = layer(Tensor(x)).asnumpy()
    assert got.shape == (2, n_out, 7, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(layer.discretize()(Tensor(x)).asnumpy(), got, rtol=1e-4, atol=1e-5)


def test_dense_control_grid_per_axis_and_discrete_output():
    layer = IntegralDense(16, 10, out_partition=None, control=(None, 4))
    assert layer.weight.shape == (10, 4)
    # A smooth function of the input channel: neighbouring columns are close.
    w = layer.numpy_weight()
    assert np.abs(np.diff(w, axis=1)).mean() < 0.5 * np.abs(w).mean()


def test_small_grid_initial_scale_matches_he_init():
    """Initial sampled weights have the He-uniform spread of the full-size
    layer, whatever the grid size (the grid is not the fan-in)."""
    ms.set_seed(1)
    layer = IntegralConv2d(64, 64, 3, control=(32, 32))
    w = layer.numpy_weight()
    he_std = np.sqrt(2.0 / (64 * 9))
    assert 0.5 * he_std < w.std() < 1.2 * he_std


@pytest.mark.parametrize("control, message", [((0, 4), "control size"), ((4,), "pair"), ("4", "pair"),
                                              ((4, 4), "discrete")])
def test_bad_control_sizes_are_refused(control, message):
    with pytest.raises(ValueError, match=message) as err:
        IntegralDense(8, 6, out_partition=None if message == "discrete" else "auto", control=control)
    assert "IntegralDense" in str(err.value)


def test_zoo_control_ratio():
    m = create_model("mnist_cnn", control_ratio=0.5)
    assert m.network.conv2.weight.shape == (16, 8, 3, 3)
    assert m.network.conv1.weight.shape == (8, 1, 3, 3)  # network input stays discrete
    assert m.network.fc2.weight.shape == (10, 64)  # class scores stay discrete
    exact = create_model("mnist_cnn", control_ratio=1.0)
    assert exact.network.conv2.weight.shape == (32, 16, 3, 3)
    with pytest.raises(ValueError, match="control_ratio"):
        create_model("mnist_cnn", control_ratio=0)
