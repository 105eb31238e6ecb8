"""Resampling rules (inn_ms.resampling): point sampling and antialiased
sampling against loop references, exact at full size, integrals of
high-frequency functions, gradients with respect to the nodes, and the rule
carried through the model, graph mode, pipeline B and the elastic network."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from inn_ms.convert import convert
from inn_ms.partition_tuning import make_partitions_trainable
from inn_ms.cubic import kernel_matrix
from inn_ms.elastic import elastic_sizes, make_elastic
from inn_ms.partition import CompositePartition, TrainablePartition, UniformPartition
from inn_ms.quadrature import get_quadrature
from inn_ms.resampling import RULES, sampling_matrix, stretch
from inn_ms.sampler import AxisSampler
from model_zoo import create_model

from helpers import run
from reference import ref_antialiased, ref_kernel

TRAP = get_quadrature("trapezoid")


@pytest.mark.parametrize("n,m", [(24, 32), (16, 32), (5, 32), (3, 10), (2, 7), (1, 9)])
def test_antialiased_matches_the_loop_reference(n, m):
    x = TRAP.nodes(n)
    got = sampling_matrix(x, m, "antialiased")
    np.testing.assert_allclose(got, ref_antialiased(x, m, stretch(n, m)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)  # a constant function stays that constant
    tensor = sampling_matrix(Tensor(x.astype(np.float32)), m, "antialiased").asnumpy()
    np.testing.assert_allclose(tensor, got, atol=2e-6)


@pytest.mark.parametrize("n,m", [(32, 32), (40, 16), (17, 9), (9, 9)])
def test_antialiased_is_point_sampling_when_there_is_nothing_to_filter(n, m):
    x = TRAP.nodes(n)
    np.testing.assert_array_equal(sampling_matrix(x, m, "antialiased"), sampling_matrix(x, m, "point"))
    np.testing.assert_allclose(sampling_matrix(x, m, "point"), ref_kernel(x, m), atol=1e-12)
    if n == m:
        np.testing.assert_allclose(sampling_matrix(x, m, "antialiased"), np.eye(m), atol=1e-12)


def test_antialiased_integrates_high_frequencies_better():
    """Detail finer than the node spacing (sines of 10-60 cycles, random
    phase, on a 201-value grid) integrates to nearly nothing. Trapezoid sums
    of point samples alias it (their error does not fall as nodes are added
    until the detail is resolved); antialiased samples average it out, and
    their error falls steadily with the number of nodes."""
    rng = np.random.default_rng(1)
    m = 201
    grid = np.linspace(0, 1, m)
    fine = TRAP.nodes(40001)
    integral = TRAP.weights(fine) @ kernel_matrix(fine, m)  # the integral of the cubic function
    ns = (9, 17, 33, 49, 65, 97)
    rows = {(n, r): TRAP.weights(TRAP.nodes(n)) @ sampling_matrix(TRAP.nodes(n), m, r) for n in ns for r in RULES}
    errors = {k: [] for k in rows}
    for _ in range(100):
        lam = np.sin(2 * np.pi * rng.uniform(10, 60) * grid + rng.uniform(0, 2 * np.pi))
        for k, row in rows.items():
            errors[k].append(row @ lam - integral @ lam)
    rms = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in errors.items()}
    for n in ns:
        assert rms[n, "antialiased"] < rms[n, "point"] / (5 if n <= 49 else 1.2), (n, rms)
    aa = [rms[n, "antialiased"] for n in ns]
    assert all(b < a for a, b in zip(aa, aa[1:])), aa
    point = [rms[n, "point"] for n in ns]
    assert not all(b < a for a, b in zip(point, point[1:])), point  # aliasing: not monotone


def test_every_rule_is_exact_at_full_size(rng):
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    ref = run(net, x)
    model = convert(net, (2, 1, 28, 28))
    for rule in RULES:
        model.set_resampling(rule)
        out = run(model.discretize(), x)
        assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max(), rule


def test_rule_matters_only_below_the_control_grid(rng):
    """The zoo's mnist_cnn has control grids of half its channels: the rules
    agree down to half width and differ below."""
    model = create_model("mnist_cnn")
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    out = {}
    for rule in RULES:
        model.set_resampling(rule)
        for keep in (1.0, 0.5, 0.3):
            model.resize(keep=keep)
            out[rule, keep] = run(model, x)
    np.testing.assert_array_equal(out["point", 1.0], out["antialiased", 1.0])
    np.testing.assert_array_equal(out["point", 0.5], out["antialiased", 0.5])
    assert np.abs(out["point", 0.3] - out["antialiased", 0.3]).max() > 1e-3


def test_changing_the_rule_compiles_a_new_graph(rng):
    """Graph mode bakes the sampling matrices in: the rule is part of the size key."""
    ms.set_context(mode=ms.GRAPH_MODE)
    model = create_model("mnist_cnn")
    model.resize(keep=0.3)
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    point = run(model, x)
    model.set_resampling("antialiased")
    graph_aa = run(model, x)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(graph_aa, run(model, x), rtol=1e-4, atol=1e-4)
    assert np.abs(graph_aa - point).max() > 1e-3


def test_gradient_with_respect_to_antialiased_nodes(rng):
    part = TrainablePartition(6, name="g", full_size=20, resampling="antialiased")
    part.theta.set_data(Tensor(rng.normal(size=5).astype(np.float32) * 0.3))
    axis = AxisSampler(part, 20, integrate=True)
    probe = Tensor(rng.normal(size=(6, 20)).astype(np.float32))

    def loss(theta):
        part.theta.set_data(theta)
        return (axis() * probe).sum()

    theta0 = part.theta.asnumpy().copy()
    grad = ms.grad(lambda: (axis() * probe).sum(), grad_position=None, weights=[part.theta])()[0].asnumpy()
    eps = 1e-3
    for k in range(5):
        step = np.zeros(5, np.float32)
        step[k] = eps
        fd = (float(loss(Tensor(theta0 + step)).asnumpy()) - float(loss(Tensor(theta0 - step)).asnumpy())) / (2 * eps)
        part.theta.set_data(Tensor(theta0))
        assert grad[k] == pytest.approx(fd, rel=2e-2, abs=2e-3 * np.abs(grad).max())
    numpy_matrix = axis.numpy_matrix()
    np.testing.assert_allclose(axis().asnumpy(), numpy_matrix, rtol=1e-4, atol=1e-5)


def test_rules_are_validated_and_carried():
    with pytest.raises(ValueError, match="unknown resampling rule 'area'"):
        UniformPartition(8, resampling="area")
    model = create_model("mnist_cnn")
    with pytest.raises(ValueError, match="unknown group"):
        model.set_resampling({"nope": "point"})
    with pytest.raises(ValueError, match="unknown resampling rule"):
        model.set_resampling({"c1": "antialiased", "c2": "bicubic"})
    assert model.resampling == "point"  # nothing changed: every entry is checked first
    parts = [UniformPartition(4, name="a"), UniformPartition(4, name="b", resampling="antialiased")]
    composite = CompositePartition(parts)
    assert composite.resampling == ("point", "antialiased")
    with pytest.raises(ValueError, match="parts of a composite"):
        composite.resampling = "point"
    model.set_resampling("antialiased")
    make_partitions_trainable(model, {"c2": 8})
    assert model.groups["c2"].trainable and model.groups["c2"].resampling == "antialiased"


def test_elastic_network_samples_with_the_rule(rng):
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    model = convert(net, (2, 1, 28, 28))
    model.set_resampling({"conv3": "antialiased", "conv4": "antialiased"})
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    elastic = make_elastic(model)
    elastic.set_train(False)
    for keep in (0.8, 0.45):
        model.resize(keep=keep)
        ref = run(model.discretize(), x)
        model.resize(keep=1.0)
        out = elastic(Tensor(x), elastic_sizes(model, keep=keep)).asnumpy()
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max(), keep
