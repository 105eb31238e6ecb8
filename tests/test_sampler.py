"""AxisSampler: the sampling matrix of one continuous axis, and its diagonal
shortcut (a uniform partition sampled at its own control grid)."""
import numpy as np
import pytest
from mindspore import Tensor

from inn_ms.layers import IntegralDense
from inn_ms.partition import CompositePartition, UniformPartition
from inn_ms.quadrature import Trapezoid
from inn_ms.sampler import AxisSampler


def check_against_matrix(sampler, rng):
    a = sampler.numpy_matrix()
    x = rng.normal(size=(sampler.control_size, 5)).astype(np.float32)
    np.testing.assert_allclose(sampler.sample_rows(Tensor(x)).asnumpy(), a @ x, rtol=1e-5, atol=1e-5)
    y = rng.normal(size=(3, sampler.control_size, 4)).astype(np.float32)
    np.testing.assert_allclose(sampler.sample_columns(Tensor(y)).asnumpy(),
                               np.einsum("nm,smr->snr", a, y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("integrate", [False, True])
def test_diagonal_at_the_control_grid_and_matmul_elsewhere(integrate, rng):
    p = UniformPartition(8)
    s = AxisSampler(p, 8, integrate=integrate)
    assert s.diagonal is not None
    expected = Trapezoid().weights(np.linspace(0, 1, 8)) * 8 if integrate else np.ones(8)
    np.testing.assert_allclose(s.diagonal.asnumpy(), expected, rtol=1e-6)
    check_against_matrix(s, rng)
    p.resize(5)
    assert s.diagonal is None
    check_against_matrix(s, rng)
    p.resize(8)
    assert s.diagonal is not None
    check_against_matrix(s, rng)


def test_no_diagonal_with_a_smaller_control_grid_or_a_composite_at_part_size(rng):
    s = AxisSampler(UniformPartition(8), 4, integrate=True)  # 8 × 4: not square
    assert s.diagonal is None
    check_against_matrix(s, rng)
    a, b = UniformPartition(4, name="a"), UniformPartition(6, name="b")
    c = AxisSampler(CompositePartition([a, b]), 10, integrate=True)
    assert c.diagonal is not None  # both blocks at their control grids
    check_against_matrix(c, rng)
    b.resize(3)
    assert c.diagonal is None
    check_against_matrix(c, rng)


def test_layer_output_across_widths_in_both_modes(mode, rng):
    """Full width (diagonal path), a smaller width (matmul), full again:
    each call equals the layer's numpy reference (graph mode caches one
    graph per width, so a stale path would show here)."""
    p = UniformPartition(12)
    layer = IntegralDense(12, 6, in_partition=p)
    x = rng.normal(size=(2, 12)).astype(np.float32)
    for n in (12, 7, 12):
        p.resize(n)
        ref = x[:, :n] @ layer.numpy_weight().T + layer.numpy_bias()
        np.testing.assert_allclose(layer(Tensor(x[:, :n])).asnumpy(), ref, rtol=1e-5, atol=1e-5)
