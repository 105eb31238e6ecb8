"""Partitions of [0, 1] and random-size distributions (inn_ms.partition)."""
import gc

import numpy as np
import pytest
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from inn_ms.partition import (CompositePartition, NormalSizes, SizeDistribution, TrainablePartition, size_range,
                              UniformPartition, UniformSizes, check_size)
from inn_ms.quadrature import GaussLegendre, Simpson, Trapezoid

from reference import fd_grad, softmax_nodes


class Recorder:
    """A minimal listener: counts notifications and what size it saw."""

    def __init__(self, partition=None):
        self.calls = 0
        self.seen = []
        self.partition = partition

    def partition_changed(self):
        self.calls += 1
        if self.partition is not None:
            self.seen.append(self.partition.size)


# --- check_size ----------------------------------------------------------------------------------

def test_check_size():
    assert check_size(3, "w") == 3 and type(check_size(np.int64(3), "w")) is int
    for bad, msg in ((0, "must be >= 1, got 0"), (-2, "must be >= 1, got -2"), (2.0, "must be an int"), (True, "must be an int"),
                     ("3", "must be an int"), (None, "must be an int")):
        with pytest.raises(ValueError, match=f"thing: size {msg}"):
            check_size(bad, "thing")


# --- UniformPartition -------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["left", "right", "trapezoid", "simpson"])
@pytest.mark.parametrize("n", [3, 8, 17])
def test_uniform_nodes_and_weights(rule, n):
    p = UniformPartition(n, quadrature=rule, name="g")
    assert p.size == n and p.sizes == (n,) and p.full_size == n and not p.trainable
    np.testing.assert_allclose(p.nodes(), np.arange(n) / (n - 1), atol=1e-15)
    w = p.weights()
    assert w.shape == (n,) and abs(w.sum() - 1) < 1e-12
    # Integrates x ↦ x exactly (all these rules but the Riemann sums).
    if rule in ("trapezoid", "simpson"):
        assert abs(np.sum(w * p.nodes()) - 0.5) < 1e-13


def test_uniform_default_rule_is_trapezoid():
    p = UniformPartition(5)
    assert isinstance(p.quadrature, Trapezoid)
    np.testing.assert_allclose(p.weights(), [0.125, 0.25, 0.25, 0.25, 0.125])


def test_uniform_gauss_legendre_nodes():
    p = UniformPartition(6, quadrature="gauss-legendre")
    t, w = np.polynomial.legendre.leggauss(6)
    np.testing.assert_allclose(p.nodes(), (t + 1) / 2, atol=1e-15)
    np.testing.assert_allclose(p.weights(), w / 2, atol=1e-15)
    p = UniformPartition(6, quadrature=GaussLegendre(), full_size=8)
    p.resize(8)
    t, w = np.polynomial.legendre.leggauss(8)
    np.testing.assert_allclose(p.weights(), w / 2, atol=1e-15)


def test_uniform_resize():
    p = UniformPartition(8, name="layer1.out", full_size=16)
    assert p.full_size == 16
    p.resize(12)
    assert p.size == 12 and p.sizes == (12,)
    np.testing.assert_allclose(p.nodes(), np.linspace(0, 1, 12), atol=1e-15)
    assert abs(p.weights().sum() - 1) < 1e-12
    p.resize(np.int32(16))
    assert p.size == 16
    p.resize(1)
    np.testing.assert_array_equal(p.nodes(), [0.5])
    np.testing.assert_array_equal(p.weights(), [1.0])
    p.resize(3)
    assert p.size == 3


@pytest.mark.parametrize("bad,msg", [
    (0, "size must be >= 1"), (-1, "size must be >= 1"), (17, "exceeds the full size 16"),
    (4.0, "must be an int"), ("4", "must be an int"), (True, "must be an int"), (None, "must be an int"),
])
def test_uniform_resize_errors(bad, msg):
    p = UniformPartition(8, name="layer1.out", full_size=16)
    with pytest.raises(ValueError, match=msg) as err:
        p.resize(bad)
    assert "layer1.out" in str(err.value)
    assert p.size == 8  # a failed resize changes nothing


@pytest.mark.parametrize("kwargs,msg", [
    (dict(size=0), "size must be >= 1"),
    (dict(size=-3), "size must be >= 1"),
    (dict(size=2.5), "must be an int"),
    (dict(size="8"), "must be an int"),
    (dict(size=True), "must be an int"),
    (dict(size=False), "must be an int"),
    (dict(size=9, full_size=8), "exceeds full_size 8"),
    (dict(size=4, full_size=0), "size must be >= 1"),
    (dict(size=4, full_size=True), "must be an int"),
    (dict(size=2, quadrature="simpson"), "simpson quadrature needs at least 3"),
])
def test_uniform_constructor_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg) as err:
        UniformPartition(name="stage2.conv", **kwargs)
    assert "stage2.conv" in str(err.value)


def test_uniform_unknown_rule():
    with pytest.raises(ValueError, match="unknown quadrature"):
        UniformPartition(4, quadrature="boole")


def test_uniform_simpson_resize_below_minimum():
    p = UniformPartition(5, quadrature="simpson", name="blk")
    with pytest.raises(ValueError, match="blk: simpson quadrature needs at least 3 points, got 2"):
        p.resize(2)
    assert p.size == 5


def test_uniform_listener_notified_on_resize():
    p = UniformPartition(8, name="g", full_size=16)
    r = Recorder(p)
    p.add_listener(r)
    p.resize(10)
    assert r.calls == 1 and r.seen == [10]  # notified after the size changed
    p.resize(10)  # same size: nothing changed, no notification
    assert r.calls == 1
    with pytest.raises(ValueError):
        p.resize(32)
    assert r.calls == 1
    p.resize(4)
    assert r.calls == 2 and r.seen == [10, 4]


def test_uniform_several_listeners_and_weak_references():
    p = UniformPartition(8, full_size=16)
    a, b = Recorder(), Recorder()
    p.add_listener(a)
    p.add_listener(b)
    p.add_listener(a)  # the same listener twice is notified once
    p.resize(9)
    assert (a.calls, b.calls) == (1, 1)
    # Listeners are held weakly: a dropped listener is forgotten, not called.
    del b
    gc.collect()
    p.resize(7)
    assert a.calls == 2


def test_uniform_repr():
    r = repr(UniformPartition(8, quadrature="simpson", name="conv1.out"))
    assert "conv1.out" in r and "8" in r and "simpson" in r


# --- TrainablePartition ------------------------------------------------------------------------------

def test_trainable_starts_uniform(mode):
    p = TrainablePartition(9, name="t")
    assert p.trainable and p.size == 9 and p.sizes == (9,) and size_range(p)[1] == 9
    assert isinstance(p.theta, Parameter) and p.theta.shape == (8,)
    assert [q.name for q in p.trainable_params()] == [p.theta.name]
    np.testing.assert_allclose(p.nodes(), np.linspace(0, 1, 9), atol=1e-15)
    out = p()
    assert isinstance(out, ms.Tensor) and out.shape == (9,) and out.dtype == ms.float32
    np.testing.assert_allclose(out.asnumpy(), np.linspace(0, 1, 9), atol=1e-6)
    np.testing.assert_allclose(p.weights(), Trapezoid().weights(np.linspace(0, 1, 9)), atol=1e-15)


@pytest.mark.parametrize("n", [2, 5, 33])
def test_trainable_random_theta(n, mode, rng):
    p = TrainablePartition(n, name="t")
    for scale in (0.3, 3.0):
        theta = rng.normal(0, scale, n - 1).astype(np.float32)
        p.theta.set_data(Tensor(theta))
        ref = softmax_nodes(theta)
        x = p.nodes()
        assert x.dtype == np.float64 and x.shape == (n,)
        assert x[0] == 0.0 and abs(x[-1] - 1.0) < 1e-12
        assert np.all(np.diff(x) > 0)
        np.testing.assert_allclose(x, ref, atol=1e-12)
        t = p().asnumpy()
        assert t[0] == 0.0 and abs(t[-1] - 1.0) < 1e-6
        assert np.all(np.diff(t) > 0)
        np.testing.assert_allclose(t, x, atol=1e-6)
        # Non-uniform after set_data: the test would notice a stale theta.
        assert np.abs(x - np.linspace(0, 1, n)).max() > 1e-3 or n == 2


def test_trainable_weights_follow_nodes(rng):
    p = TrainablePartition(7, quadrature="simpson")
    p.theta.set_data(Tensor(rng.normal(size=6).astype(np.float32)))
    np.testing.assert_allclose(p.weights(), Simpson().weights(p.nodes()), atol=1e-15)
    assert abs(p.weights().sum() - 1) < 1e-12


class _NodeLoss(nn.Cell):
    """Σ c_i x_i + Σ q_i(x) g(x_i): through the nodes and the quadrature weights."""

    def __init__(self, partition, c):
        super().__init__()
        self.p = partition
        self.c = Tensor(c.astype(np.float32))

    def construct(self):
        x = self.p()
        q = self.p.quadrature.weights(x)
        return (x * self.c).sum() + (q * ops.sin(3 * x)).sum()


@pytest.mark.parametrize("rule", ["trapezoid", "simpson"])
def test_trainable_gradient_reaches_theta(rule, mode, rng):
    n = 6
    p = TrainablePartition(n, quadrature=rule)
    theta = rng.normal(0, 0.5, n - 1)
    p.theta.set_data(Tensor(theta.astype(np.float32)))
    theta = theta.astype(np.float32).astype(np.float64)
    c = rng.normal(size=n)
    net = _NodeLoss(p, c)
    grads = ms.grad(net, grad_position=None, weights=net.trainable_params())()
    assert len(grads) == 1
    g = grads[0].asnumpy()
    assert g.shape == (n - 1,)

    quad = p.quadrature

    def f(th):
        x = softmax_nodes(th)
        return float(np.sum(x * c) + np.sum(quad.weights(x) * np.sin(3 * x)))

    fd = fd_grad(f, theta)
    assert np.abs(fd).max() > 1e-2
    np.testing.assert_allclose(g, fd, atol=2e-4 * max(1.0, np.abs(fd).max()))


def test_trainable_training_step_moves_nodes(mode):
    # One SGD step on a loss that wants the second node at 0.5 moves it there.
    p = TrainablePartition(5)

    class Loss(nn.Cell):
        def __init__(self, part):
            super().__init__()
            self.p = part

        def construct(self):
            return (self.p()[1] - 0.5) ** 2

    net = Loss(p)
    opt = nn.SGD(net.trainable_params(), learning_rate=1.0)
    grad_fn = ms.value_and_grad(net, grad_position=None, weights=opt.parameters)
    before = p.nodes()[1]
    for _ in range(5):
        _, g = grad_fn()
        opt(g)
    after = p.nodes()
    assert abs(after[1] - 0.5) < abs(before - 0.5)
    assert after[0] == 0.0 and abs(after[-1] - 1.0) < 1e-12 and np.all(np.diff(after) > 0)


@pytest.mark.parametrize("nodes", [[0.0, 1.0], [0.0, 0.1, 0.35, 0.7, 1.0],
                                   [0.0, 0.01, 0.02, 0.5, 0.98, 0.99, 1.0]])
def test_trainable_given_nodes_reproduced(nodes, mode):
    p = TrainablePartition(len(nodes), nodes=np.array(nodes), name="tp")
    np.testing.assert_allclose(p.nodes(), nodes, atol=1e-6)
    np.testing.assert_allclose(p().asnumpy(), nodes, atol=1e-6)


@pytest.mark.parametrize("nodes", [
    [0.0, 0.5, 1.0],                # wrong length for size 4
    [0.1, 0.3, 0.6, 1.0],           # does not start at 0
    [0.0, 0.3, 0.6, 0.9],           # does not end at 1
    [0.0, 0.6, 0.3, 1.0],           # not increasing
    [0.0, 0.5, 0.5, 1.0],           # repeated node
])
def test_trainable_bad_given_nodes(nodes):
    with pytest.raises(ValueError, match="tp: nodes must be 4 increasing values from 0 to 1"):
        TrainablePartition(4, nodes=nodes, name="tp")


@pytest.mark.parametrize("kwargs,msg", [
    (dict(size=1), "at least 2 nodes"),
    (dict(size=0), "size must be >= 1"),
    (dict(size=3.0), "must be an int"),
    (dict(size=True), "must be an int"),
    (dict(size=2, quadrature="simpson"), "simpson quadrature needs at least 3"),
])
def test_trainable_size_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg) as err:
        TrainablePartition(name="tp", **kwargs)
    assert "tp" in str(err.value)


def test_trainable_refuses_gauss_legendre():
    for rule in ("gauss-legendre", GaussLegendre()):
        with pytest.raises(ValueError, match="gauss-legendre.*composite rule"):
            TrainablePartition(5, quadrature=rule)


def test_trainable_fixed_size():
    p = TrainablePartition(6, name="tp")
    p.resize(6)  # same size: allowed, nothing happens
    for bad in (5, 7):
        with pytest.raises(ValueError, match=r"tp: a trainable partition has a fixed size \(6\)"):
            p.resize(bad)
    with pytest.raises(ValueError, match="must be an int"):
        p.resize(6.0)
    assert p.size == 6


def test_trainable_listener_and_repr():
    p = TrainablePartition(4, name="tp")
    r = Recorder()
    p.add_listener(r)  # supported (samplers listen to every partition kind)
    p.resize(4)
    assert r.calls == 0
    assert "tp" in repr(p) and "4" in repr(p)


# --- CompositePartition -------------------------------------------------------------------------------

def test_composite_concatenates_parts():
    a = UniformPartition(4, name="a", full_size=8)
    b = UniformPartition(3, quadrature="simpson", name="b")
    c = UniformPartition(5, quadrature="gauss-legendre", name="c")
    comp = CompositePartition([a, b, c], name="cat")
    assert comp.size == 12 and comp.sizes == (4, 3, 5) and comp.full_size == 16
    assert not comp.trainable
    np.testing.assert_array_equal(comp.nodes(), np.concatenate([a.nodes(), b.nodes(), c.nodes()]))
    np.testing.assert_array_equal(comp.weights(), np.concatenate([a.weights(), b.weights(), c.weights()]))
    # Each block is its own copy of [0, 1]: its weights integrate to one.
    w = comp.weights()
    for lo, hi in ((0, 4), (4, 7), (7, 12)):
        assert abs(w[lo:hi].sum() - 1) < 1e-12
    assert "cat" in repr(comp) and "'a'" in repr(comp)


def test_composite_follows_part_changes():
    a = UniformPartition(4, name="a", full_size=8)
    b = UniformPartition(6, name="b")
    comp = CompositePartition([a, b], name="cat")
    r = Recorder(comp)
    comp.add_listener(r)
    a.resize(8)
    assert r.calls == 1 and r.seen == [14]
    assert comp.sizes == (8, 6) and comp.nodes().shape == (14,)
    np.testing.assert_array_equal(comp.nodes()[:8], np.linspace(0, 1, 8))
    b.resize(2)
    assert r.calls == 2 and r.seen == [14, 10]
    a.resize(8)  # unchanged
    assert r.calls == 2


def test_nested_composite_propagates():
    a = UniformPartition(2, name="a", full_size=4)
    inner = CompositePartition([a, UniformPartition(3, name="b")], name="inner")
    outer = CompositePartition([inner, UniformPartition(2, name="c")], name="outer")
    r = Recorder(outer)
    outer.add_listener(r)
    a.resize(4)
    assert r.calls == 1 and r.seen == [9]
    assert outer.sizes == (7, 2)


def test_composite_errors():
    with pytest.raises(ValueError, match="cat: a composite partition needs at least one part"):
        CompositePartition([], name="cat")
    with pytest.raises(ValueError, match="cat: trainable parts are not supported"):
        CompositePartition([UniformPartition(3), TrainablePartition(3)], name="cat")
    comp = CompositePartition([UniformPartition(3)], name="cat")
    with pytest.raises(ValueError, match="cat: resize the parts"):
        comp.resize(3)


# --- SizeDistribution ------------------------------------------------------------------------------------

def ref_support(low, high, step):
    s = [v for v in range(low, high + 1) if v % step == 0]
    if high not in s:
        s.append(high)
    return s


@pytest.mark.parametrize("cls", [UniformSizes, NormalSizes])
@pytest.mark.parametrize("low,high,step", [(16, 64, 8), (10, 60, 8), (3, 7, 1), (1, 5, 16),
                                           (5, 7, 8), (32, 32, 8), (1, 100, 7)])
def test_support(cls, low, high, step):
    d = cls(low, high, step)
    assert list(d.support) == ref_support(low, high, step)
    assert all(low <= s <= high for s in d.support)
    assert d.support[-1] == high
    assert all(s % step == 0 for s in d.support[:-1])
    p = d.probabilities()
    assert p.shape == d.support.shape and np.all(p > 0)
    assert abs(p.sum() - 1) < 1e-12


def test_default_step_is_one():
    assert list(UniformSizes(4, 9).support) == [4, 5, 6, 7, 8, 9]


def test_uniform_sizes_probabilities():
    p = UniformSizes(8, 64, 8).probabilities()
    np.testing.assert_allclose(p, np.full(8, 1 / 8))


@pytest.mark.parametrize("sigma", [0.25, 0.5, 1.0])
def test_normal_sizes_probabilities(sigma):
    d = NormalSizes(16, 128, 16, sigma=sigma)
    p = d.probabilities()
    s = d.support
    # A half-normal in the distance from high, scale sigma × (high - low).
    ref = np.exp(-0.5 * ((128 - s) / (112 * sigma)) ** 2)
    np.testing.assert_allclose(p, ref / ref.sum(), rtol=1e-12)
    assert np.all(np.diff(p) > 0)  # more likely as the size grows
    assert p[-1] > p[0]
    half = s >= (16 + 128) / 2
    assert p[half].sum() > p[~half].sum()


def test_normal_sizes_smaller_sigma_concentrates_on_high():
    tight = NormalSizes(8, 64, 8, sigma=0.2).probabilities()
    wide = NormalSizes(8, 64, 8, sigma=2.0).probabilities()
    assert tight[-1] > wide[-1] and tight[0] < wide[0]


def test_single_size():
    for d in (UniformSizes(24, 24, 8), NormalSizes(24, 24, 8)):
        assert list(d.support) == [24]
        np.testing.assert_allclose(d.probabilities(), [1.0])
        assert d.sample(np.random.default_rng(0)) == 24


@pytest.mark.parametrize("cls", [UniformSizes, NormalSizes])
def test_sampling(cls):
    d = cls(10, 64, 8)
    rng = np.random.default_rng(123)
    draws = [d.sample(rng) for _ in range(4000)]
    assert all(type(v) is int for v in draws)
    assert set(draws) <= set(d.support.tolist())
    assert set(draws) == set(d.support.tolist())  # every size gets drawn
    freq = np.array([draws.count(s) for s in d.support]) / len(draws)
    p = d.probabilities()
    # Binomial standard error is at most 0.008 here; allow 5 of them.
    np.testing.assert_allclose(freq, p, atol=0.04)
    # Same seed, same sequence.
    rng2 = np.random.default_rng(123)
    assert [d.sample(rng2) for _ in range(50)] == draws[:50]


def test_normal_draws_more_near_high():
    d = NormalSizes(8, 128, 8)
    rng = np.random.default_rng(7)
    draws = np.array([d.sample(rng) for _ in range(3000)])
    assert np.mean(draws >= 96) > np.mean(draws <= 40)
    assert draws.mean() > (8 + 128) / 2


@pytest.mark.parametrize("args,kwargs,msg", [
    ((0, 10), {}, "size must be >= 1"),
    ((4, 0), {}, "size must be >= 1"),
    ((4, 10, 0), {}, "size must be >= 1"),
    ((4, 10, -8), {}, "size must be >= 1"),
    ((12, 10), {}, "low 12 > high 10"),
    ((4.0, 10), {}, "must be an int"),
    ((4, "10"), {}, "must be an int"),
    ((4, 10, True), {}, "must be an int"),
    ((4, 10, 2.5), {}, "must be an int"),
])
@pytest.mark.parametrize("cls", [UniformSizes, NormalSizes])
def test_size_distribution_errors(cls, args, kwargs, msg):
    with pytest.raises(ValueError, match=msg) as err:
        cls(*args, **kwargs)
    assert cls.__name__ in str(err.value)


@pytest.mark.parametrize("sigma", [0, -0.5, float("nan")])
def test_normal_sizes_bad_sigma(sigma):
    with pytest.raises(ValueError, match="NormalSizes: sigma must be > 0"):
        NormalSizes(4, 10, sigma=sigma)


def test_base_distribution_is_abstract():
    d = SizeDistribution(4, 10)
    with pytest.raises(NotImplementedError):
        d.probabilities()
    assert "SizeDistribution" in repr(d) and "10" in repr(d)
