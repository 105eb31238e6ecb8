"""Gradients of integral layers: with respect to control weights, biases and
trainable partition positions.

MindSpore's gradients (float32) are compared with central finite
differences of an independent float64 re-implementation of the forward pass
(numpy Keys kernel written the PyTorch way, trapezoid weights, softmax
spacing of trainable nodes, torch float64 convolution), after checking that
this reference computes the same loss as the layer. A second check runs
finite differences on the MindSpore layer itself, in float32, along random
directions.
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

pytest.importorskip("torch")  # the float64 reference convolutions

from inn_ms.layers import IntegralConv2d, IntegralDense, SeparableIntegralConv2d  # noqa: E402
from inn_ms.partition import TrainablePartition, UniformPartition  # noqa: E402

from reference import (assert_close, fd_grad, ref_bias, ref_conv, ref_weight,  # noqa: E402
                       softmax_nodes, uniform_nodes)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# --------------------------------------------------------------------------
# float64 reference loss (the forward pass is in reference.py)
# --------------------------------------------------------------------------

def half_sq(y, target):
    return 0.5 * float(np.sum((y - target) ** 2))


def assert_grad_close(actual, expected, what, rel=2e-3):
    assert_close(actual, expected, rel=rel, what=what, min_scale=1e-3)


def assert_grads_match(layer, x, target, params, loss_of):
    """The layer's loss equals the float64 reference ``loss_of(params)``
    and its gradient of every parameter the reference's finite differences."""
    loss, grads = ms_value_and_grads(layer, x, target)
    assert loss == pytest.approx(loss_of(params), rel=1e-5)
    for name in params:
        def f(v, name=name):
            return loss_of(dict(params, **{name: v}))
        assert_grad_close(grads[name], fd_grad(f, params[name]), f"d/d {name}")


# --------------------------------------------------------------------------
# MindSpore side
# --------------------------------------------------------------------------

class HalfSquaredError(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x, target):
        d = self.net(x) - target
        return (d * d).sum() / 2


def ms_value_and_grads(net, x, target):
    """Loss and {parameter name: gradient} for every trainable parameter."""
    params = net.trainable_params()
    names = [p.name for p in params]  # before wrapping: the wrapper prefixes them
    loss_cell = HalfSquaredError(net)
    loss, grads = ms.value_and_grad(loss_cell, None, params)(Tensor(x), Tensor(target))
    return float(loss), {n: g.asnumpy() for n, g in zip(names, grads)}


def f32(a):
    return np.asarray(a, np.float32)


def set_theta(partition, theta):
    partition.theta.set_data(Tensor(f32(theta)))
    return np.asarray(f32(theta), np.float64)


def theta_name(grads, which):
    """The gradient entry of the theta parameter under the ``which`` axis."""
    names = [n for n in grads if n.endswith("theta") and which in n]
    assert len(names) == 1, f"expected one {which} theta among {list(grads)}"
    return names[0]


# --------------------------------------------------------------------------
# Control weights and biases
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [(4, 5), (3, 2)], ids=["full", "resized"])
def test_conv_grad_wrt_control_weight_and_bias(mode, sizes, rng):
    lam = f32(rng.standard_normal((4, 5, 3, 3)))
    beta = f32(rng.standard_normal(4))
    layer = IntegralConv2d(5, 4, 3, padding=1, weight=lam, bias=beta)
    n_out, n_in = sizes
    layer.partitions["out"].resize(n_out)
    layer.partitions["in"].resize(n_in)
    x = f32(rng.standard_normal((2, n_in, 5, 5)))
    target = f32(rng.standard_normal((2, n_out, 5, 5)))
    no, ni = uniform_nodes(n_out), uniform_nodes(n_in)

    def loss_of(lam_, beta_):
        return half_sq(ref_conv(x, ref_weight(lam_, no, ni), ref_bias(beta_, no), padding=1), target)

    loss, grads = ms_value_and_grads(layer, x, target)
    lam64, beta64 = lam.astype(np.float64), beta.astype(np.float64)
    assert loss == pytest.approx(loss_of(lam64, beta64), rel=1e-5)
    assert_grad_close(grads["weight"], fd_grad(lambda p: loss_of(p, beta64), lam64), "d/d weight")
    assert_grad_close(grads["bias"], fd_grad(lambda p: loss_of(lam64, p), beta64), "d/d bias")


def test_dense_grad_wrt_control_weight_and_bias(mode, rng):
    lam = f32(rng.standard_normal((5, 6)))
    beta = f32(rng.standard_normal(5))
    layer = IntegralDense(6, 5, weight=lam, bias=beta)
    layer.partitions["out"].resize(3)
    layer.partitions["in"].resize(4)
    x = f32(rng.standard_normal((3, 4)))
    target = f32(rng.standard_normal((3, 3)))
    no, ni = uniform_nodes(3), uniform_nodes(4)

    def loss_of(lam_, beta_):
        return half_sq(x.astype(np.float64) @ ref_weight(lam_, no, ni).T + ref_bias(beta_, no), target)

    loss, grads = ms_value_and_grads(layer, x, target)
    lam64, beta64 = lam.astype(np.float64), beta.astype(np.float64)
    assert loss == pytest.approx(loss_of(lam64, beta64), rel=1e-5)
    assert_grad_close(grads["weight"], fd_grad(lambda p: loss_of(p, beta64), lam64), "d/d weight")
    assert_grad_close(grads["bias"], fd_grad(lambda p: loss_of(lam64, p), beta64), "d/d bias")


def test_separable_grads(rng):
    """Both halves of a separable conv, through the shared input group."""
    c, o = 5, 3
    layer = SeparableIntegralConv2d(c, o, 3, padding=1)
    p_in, p_out = layer.depthwise.partitions["out"], layer.pointwise.partitions["out"]
    p_in.resize(4)
    p_out.resize(2)
    params = {p.name: p.asnumpy().astype(np.float64) for p in layer.trainable_params()}
    assert set(params) == {"depthwise.weight", "depthwise.bias", "pointwise.weight", "pointwise.bias"}
    x = f32(rng.standard_normal((2, 4, 5, 5)))
    target = f32(rng.standard_normal((2, 2, 5, 5)))
    ni, no = uniform_nodes(4), uniform_nodes(2)

    def loss_of(p):
        h = ref_conv(x, ref_weight(p["depthwise.weight"], ni, None), ref_bias(p["depthwise.bias"], ni),
                     padding=1, groups=4)
        y = ref_conv(h, ref_weight(p["pointwise.weight"], no, ni), ref_bias(p["pointwise.bias"], no), padding=0)
        return half_sq(y, target)

    assert_grads_match(layer, x, target, params, loss_of)


def test_grouped_grads(rng):
    """A grouped convolution (2 groups) resized per group: every block's
    weight and bias get the gradient of its own per-block resample."""
    layer = IntegralConv2d(8, 8, 3, padding=1, groups=2)
    layer.partitions["in"].resize(6)
    layer.partitions["out"].resize(6)
    params = {p.name: p.asnumpy().astype(np.float64) for p in layer.trainable_params()}
    x = f32(rng.standard_normal((2, 6, 5, 5)))
    target = f32(rng.standard_normal((2, 6, 5, 5)))
    nodes = uniform_nodes(3)  # 3 of each group's 4 channels

    def loss_of(p):
        w = np.concatenate([ref_weight(p["weight"][k * 4:(k + 1) * 4], nodes, nodes) for k in range(2)])
        b = np.concatenate([ref_bias(p["bias"][k * 4:(k + 1) * 4], nodes) for k in range(2)])
        return half_sq(ref_conv(x, w, b, padding=1, groups=2), target)

    assert_grads_match(layer, x, target, params, loss_of)


def test_grads_along_random_directions_float32(rng):
    """Finite differences of the MindSpore layer itself (float32, step 1e-2)."""
    lam = f32(rng.standard_normal((4, 5, 3, 3)))
    part = TrainablePartition(5, name="in")
    set_theta(part, rng.standard_normal(4) * 0.4)
    layer = IntegralConv2d(5, 4, 3, padding=1, weight=lam, bias=f32(rng.standard_normal(4)), in_partition=part)
    layer.partitions["out"].resize(3)
    x = Tensor(f32(rng.standard_normal((2, 5, 5, 5))))
    target = Tensor(f32(rng.standard_normal((2, 3, 5, 5))))
    loss_cell = HalfSquaredError(layer)
    params = layer.trainable_params()
    _, grads = ms.value_and_grad(loss_cell, None, params)(x, target)
    eps = 1e-2
    for p, g in zip(params, grads):
        base = p.asnumpy().copy()
        for _ in range(2):
            v = rng.standard_normal(base.shape)
            v /= np.linalg.norm(v)
            p.set_data(Tensor(f32(base + eps * v)))
            hi = float(loss_cell(x, target))
            p.set_data(Tensor(f32(base - eps * v)))
            lo = float(loss_cell(x, target))
            p.set_data(Tensor(base))
            fd = (hi - lo) / (2 * eps)
            analytic = float(np.sum(g.asnumpy() * v))
            assert analytic == pytest.approx(fd, rel=1e-2, abs=1e-2 * np.linalg.norm(g.asnumpy())), p.name


# --------------------------------------------------------------------------
# Trainable partitions
# --------------------------------------------------------------------------

def test_trainable_partition_at_zero_theta_is_uniform_nodes(rng):
    """θ = 0 is the uniform partition: same output as a fixed one."""
    w = f32(rng.standard_normal((4, 6, 3, 3)))
    conv = nn.Conv2d(6, 4, 3, pad_mode="pad", padding=1, weight_init=Tensor(w))
    layer = IntegralConv2d.from_discrete(conv, in_partition=TrainablePartition(6), out_partition=None)
    x = Tensor(f32(rng.standard_normal((2, 6, 5, 5))))
    expected = conv(x).asnumpy()
    out = layer(x).asnumpy()
    assert np.abs(out - expected).max() <= 1e-5 * np.abs(expected).max()


def test_conv_grad_wrt_trainable_in_partition(mode, rng):
    lam = f32(rng.standard_normal((4, 6, 3, 3)))
    beta = f32(rng.standard_normal(4))
    part = TrainablePartition(6, name="in")
    theta = set_theta(part, rng.standard_normal(5) * 0.5)
    layer = IntegralConv2d(6, 4, 3, padding=1, weight=lam, bias=beta, in_partition=part, out_partition=None)
    x = f32(rng.standard_normal((2, 6, 5, 5)))
    target = f32(rng.standard_normal((2, 4, 5, 5)))

    def loss_of(th, lam_=lam.astype(np.float64)):
        return half_sq(ref_conv(x, ref_weight(lam_, None, softmax_nodes(th)), beta.astype(np.float64), padding=1),
                       target)

    loss, grads = ms_value_and_grads(layer, x, target)
    assert loss == pytest.approx(loss_of(theta), rel=1e-5)
    assert_grad_close(grads[theta_name(grads, "in_axis")], fd_grad(loss_of, theta), "d/d theta_in")
    assert_grad_close(grads["weight"], fd_grad(lambda p: loss_of(theta, p), lam.astype(np.float64)),
                      "d/d weight (non-uniform nodes)")


def test_grad_wrt_trainable_in_and_out_partitions(rng):
    lam = f32(rng.standard_normal((5, 4, 3, 3)))
    beta = f32(rng.standard_normal(5))
    p_in, p_out = TrainablePartition(4, name="in"), TrainablePartition(5, name="out")
    th_in = set_theta(p_in, rng.standard_normal(3) * 0.5)
    th_out = set_theta(p_out, rng.standard_normal(4) * 0.5)
    layer = IntegralConv2d(4, 5, 3, padding=1, weight=lam, bias=beta, in_partition=p_in, out_partition=p_out)
    x = f32(rng.standard_normal((2, 4, 5, 5)))
    target = f32(rng.standard_normal((2, 5, 5, 5)))

    def loss_of(ti, to):
        no = softmax_nodes(to)
        w = ref_weight(lam, no, softmax_nodes(ti))
        return half_sq(ref_conv(x, w, ref_bias(beta, no), padding=1), target)

    loss, grads = ms_value_and_grads(layer, x, target)
    assert loss == pytest.approx(loss_of(th_in, th_out), rel=1e-5)
    assert_grad_close(grads[theta_name(grads, "in_axis")], fd_grad(lambda t: loss_of(t, th_out), th_in), "d/d theta_in")
    assert_grad_close(grads[theta_name(grads, "out_axis")], fd_grad(lambda t: loss_of(th_in, t), th_out),
                      "d/d theta_out")


def test_dense_grad_wrt_trainable_out_partition(rng):
    lam = f32(rng.standard_normal((6, 4)))
    beta = f32(rng.standard_normal(6))
    part = TrainablePartition(6, name="out")
    theta = set_theta(part, rng.standard_normal(5) * 0.5)
    layer = IntegralDense(4, 6, weight=lam, bias=beta, in_partition=UniformPartition(4), out_partition=part)
    x = f32(rng.standard_normal((3, 4)))
    target = f32(rng.standard_normal((3, 6)))

    def loss_of(th):
        no = softmax_nodes(th)
        return half_sq(x.astype(np.float64) @ ref_weight(lam, no, uniform_nodes(4)).T + ref_bias(beta, no), target)

    loss, grads = ms_value_and_grads(layer, x, target)
    assert loss == pytest.approx(loss_of(theta), rel=1e-5)
    assert_grad_close(grads[theta_name(grads, "out_axis")], fd_grad(loss_of, theta), "d/d theta_out")


def test_depthwise_grad_wrt_trainable_partition(rng):
    """A depthwise conv's single group as a trainable partition: sampled,
    not integrated."""
    lam = f32(rng.standard_normal((5, 1, 3, 3)))
    beta = f32(rng.standard_normal(5))
    part = TrainablePartition(5, name="group")
    theta = set_theta(part, rng.standard_normal(4) * 0.5)
    layer = IntegralConv2d(5, 5, 3, padding=1, groups=5, weight=lam, bias=beta, in_partition=part)
    assert layer.partitions == {"out": part}
    x = f32(rng.standard_normal((2, 5, 5, 5)))
    target = f32(rng.standard_normal((2, 5, 5, 5)))

    def loss_of(th):
        no = softmax_nodes(th)
        return half_sq(ref_conv(x, ref_weight(lam, no, None), ref_bias(beta, no), padding=1, groups=5), target)

    loss, grads = ms_value_and_grads(layer, x, target)
    assert loss == pytest.approx(loss_of(theta), rel=1e-5)
    assert_grad_close(grads[theta_name(grads, "out_axis")], fd_grad(loss_of, theta), "d/d theta")
