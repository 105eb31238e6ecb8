"""Quadrature rules on [0, 1] (inn_ms.quadrature).

Every check compares against an independent reference: exact integrals of
polynomials and smooth functions, scipy.integrate, or hand-written sums.
"""
import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn
from scipy import integrate as si

from inn_ms.quadrature import (RULES, GaussLegendre, LeftRiemann, Quadrature, RightRiemann,
                               Simpson, Trapezoid, get_quadrature, integrate)

from reference import fd_grad

COMPOSITE = ["left", "right", "trapezoid", "simpson"]
ALL_RULES = COMPOSITE + ["gauss-legendre"]


def random_nodes(rng, n):
    """Sorted random nodes in [0, 1] with 0 and 1 included and no tiny gaps."""
    while True:
        x = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0.0, 1.0, n - 2)]))
        if np.diff(x).min() > 1e-3:
            return x


def quad(rule, x, f):
    return float(np.sum(get_quadrature(rule).weights(x) * f(x)))


# --- registry ---------------------------------------------------------------------------

def test_registry_names_and_classes():
    assert set(RULES) == set(ALL_RULES)
    expected = {"left": LeftRiemann, "right": RightRiemann, "trapezoid": Trapezoid,
                "simpson": Simpson, "gauss-legendre": GaussLegendre}
    for name, cls in expected.items():
        q = get_quadrature(name)
        assert type(q) is cls and q.name == name
    inst = Simpson()
    assert get_quadrature(inst) is inst


@pytest.mark.parametrize("bad", ["midpoint", "Trapezoid", "", None, 3, ["simpson"]])
def test_unknown_rule_raises(bad):
    with pytest.raises(ValueError, match="unknown quadrature") as err:
        get_quadrature(bad)
    # The message lists the valid choices.
    for name in ALL_RULES:
        assert name in str(err.value)


def test_integrate_unknown_rule_raises():
    with pytest.raises(ValueError, match="unknown quadrature"):
        integrate(np.exp, 5, rule="boole")


# --- weights sum to one -------------------------------------------------------------------

@pytest.mark.parametrize("rule,n", [(r, n) for r in ALL_RULES for n in (1, 2, 3, 4, 5, 8, 17, 64)
                                    if n >= RULES[r].min_points])
def test_weights_sum_to_one_default_nodes(rule, n):
    q = get_quadrature(rule)
    x = q.nodes(n)
    assert x.shape == (n,)
    assert np.all((x >= 0) & (x <= 1))
    if n > 1:
        assert np.all(np.diff(x) > 0)
    w = q.weights(x)
    assert w.shape == (n,)
    assert abs(w.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("rule", COMPOSITE)
@pytest.mark.parametrize("n", [3, 4, 7, 10])
def test_weights_sum_to_one_random_nodes(rule, n, rng):
    x = random_nodes(rng, n)
    assert abs(get_quadrature(rule).weights(x).sum() - 1.0) < 1e-12


def test_default_nodes_are_uniform_or_legendre():
    for rule in COMPOSITE:
        q = get_quadrature(rule)
        np.testing.assert_allclose(q.nodes(9), np.arange(9) / 8, atol=1e-15)
    t, w = np.polynomial.legendre.leggauss(6)
    gl = GaussLegendre()
    np.testing.assert_allclose(gl.nodes(6), (t + 1) / 2, atol=1e-15)
    np.testing.assert_allclose(gl.weights(gl.nodes(6)), w / 2, atol=1e-15)


# --- polynomial exactness -----------------------------------------------------------------

def _poly_error(rule, n, k, x=None):
    q = get_quadrature(rule)
    x = q.nodes(n) if x is None else x
    return abs(float(np.sum(q.weights(x) * x ** k)) - 1.0 / (k + 1))


@pytest.mark.parametrize("rule,n,degree", [
    ("left", 2, 0), ("left", 9, 0), ("right", 2, 0), ("right", 9, 0),
    ("trapezoid", 2, 1), ("trapezoid", 3, 1), ("trapezoid", 10, 1),
    ("simpson", 3, 3), ("simpson", 5, 3), ("simpson", 11, 3),
    ("gauss-legendre", 1, 1), ("gauss-legendre", 2, 3), ("gauss-legendre", 3, 5),
    ("gauss-legendre", 5, 9), ("gauss-legendre", 8, 15),
])
def test_exact_up_to_degree_not_beyond(rule, n, degree):
    for k in range(degree + 1):
        assert _poly_error(rule, n, k) < 1e-13, f"{rule} n={n} not exact for x^{k}"
    # One degree higher the rule is not exact: the check above has teeth.
    # (Gauss-Legendre's error on x^(2n) is tiny for large n, ~4e-10 at n=8,
    # yet still 1e6 times the round-off level.)
    assert _poly_error(rule, n, degree + 1) > 1e-11


def test_declared_degree_attributes():
    assert LeftRiemann.degree == 0 and RightRiemann.degree == 0
    assert Trapezoid.degree == 1 and Simpson.degree == 3


@pytest.mark.parametrize("n", [4, 6, 10])
def test_simpson_even_n_exact_for_quadratics(n):
    # An odd number of intervals: the last one uses a quadratic, so exactness
    # drops to degree 2 (still better than trapezoid).
    for k in range(3):
        assert _poly_error("simpson", n, k) < 1e-13
    assert _poly_error("simpson", n, 3) > 1e-6


@pytest.mark.parametrize("n", [3, 4, 5, 8, 11])
def test_simpson_random_nodes_exact_for_quadratics(n, rng):
    x = random_nodes(rng, n)
    for k in range(3):
        assert _poly_error("simpson", n, k, x) < 1e-12
    assert _poly_error("simpson", n, 3, x) > 1e-8


@pytest.mark.parametrize("n", [2, 5, 9])
def test_trapezoid_random_nodes_exact_for_linear(n, rng):
    x = random_nodes(rng, n)
    assert _poly_error("trapezoid", n, 0, x) < 1e-13
    assert _poly_error("trapezoid", n, 1, x) < 1e-13
    assert _poly_error("trapezoid", n, 2, x) > 1e-8


# --- convergence order ----------------------------------------------------------------------

FUNCS = {
    "exp": (np.exp, math.e - 1.0),
    "recip": (lambda x: 1.0 / (1.0 + x), math.log(2.0)),
}


def measured_order(rule, sizes, func):
    f, exact = FUNCS[func]
    h, err = [], []
    for n in sizes:
        h.append(1.0 / (n - 1))
        err.append(abs(integrate(f, n, rule) - exact))
    assert min(err) > 1e-14, "errors at round-off level: the fit would be meaningless"
    slope, _ = np.polyfit(np.log(h), np.log(err), 1)
    return slope


@pytest.mark.parametrize("func", sorted(FUNCS))
@pytest.mark.parametrize("rule,sizes,order", [
    ("left", [9, 17, 33, 65, 129, 257], 1.0),
    ("right", [9, 17, 33, 65, 129, 257], 1.0),
    ("trapezoid", [5, 9, 17, 33, 65, 129], 2.0),
    ("simpson", [5, 9, 17, 33, 65], 4.0),
])
def test_convergence_order(rule, sizes, order, func):
    slope = measured_order(rule, sizes, func)
    assert abs(slope - order) < 0.15, f"{rule}: measured order {slope:.3f}, expected {order}"
    assert get_quadrature(rule).order == order


@pytest.mark.parametrize("func", sorted(FUNCS))
def test_simpson_even_n_converges_at_least_order_3(func):
    slope = measured_order("simpson", [6, 10, 18, 34, 66], func)
    assert slope >= 3.0, f"simpson with even n: measured order {slope:.3f}"


@pytest.mark.parametrize("func", sorted(FUNCS))
def test_gauss_legendre_spectral(func):
    f, exact = FUNCS[func]
    errs = [abs(integrate(f, n, "gauss-legendre") - exact) for n in (2, 4, 8)]
    # Doubling n squares (at least) the error: far faster than any composite rule.
    assert errs[0] > 1e-6
    assert errs[1] < errs[0] ** 1.5
    assert errs[2] < 1e-11


# --- non-uniform nodes against scipy ------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 4, 5, 6, 9, 12, 17])
def test_nonuniform_against_scipy(n, rng):
    x = random_nodes(rng, n)
    eye = np.eye(n)
    # The weights as linear functionals: scipy applied to every unit vector.
    w_trap = np.array([si.trapezoid(e, x=x) for e in eye])
    w_simp = np.array([si.simpson(e, x=x) for e in eye])
    np.testing.assert_allclose(get_quadrature("trapezoid").weights(x), w_trap, atol=1e-13)
    np.testing.assert_allclose(get_quadrature("simpson").weights(x), w_simp, atol=1e-13)
    for f in (np.exp, lambda t: np.sin(7 * t) + t ** 5):
        y = f(x)
        assert abs(quad("trapezoid", x, f) - si.trapezoid(y, x=x)) < 1e-13
        assert abs(quad("simpson", x, f) - si.simpson(y, x=x)) < 1e-13


@pytest.mark.parametrize("n", [2, 3, 6, 11])
def test_nonuniform_riemann_sums(n, rng):
    x = random_nodes(rng, n)
    y = np.cos(2 * x) + x
    left = sum(y[i] * (x[i + 1] - x[i]) for i in range(n - 1))
    right = sum(y[i + 1] * (x[i + 1] - x[i]) for i in range(n - 1))
    assert abs(quad("left", x, lambda t: np.cos(2 * t) + t) - left) < 1e-14
    assert abs(quad("right", x, lambda t: np.cos(2 * t) + t) - right) < 1e-14


def test_nonuniform_composite_rules_converge(rng):
    # Random but refining partitions: every rule approaches the integral.
    f, exact = FUNCS["exp"]
    for rule, tol in (("left", 5e-2), ("right", 5e-2), ("trapezoid", 1e-3), ("simpson", 1e-6)):
        x = np.sort(np.concatenate([[0, 1], np.linspace(0, 1, 201)[1:-1] + rng.uniform(-1e-3, 1e-3, 199)]))
        assert abs(quad(rule, x, f) - exact) < tol


def test_single_point_and_two_points():
    for rule in ("left", "right", "trapezoid"):
        q = get_quadrature(rule)
        np.testing.assert_array_equal(q.nodes(1), [0.5])
        np.testing.assert_array_equal(q.weights(np.array([0.3])), [1.0])
    np.testing.assert_allclose(Trapezoid().weights(np.array([0.0, 1.0])), [0.5, 0.5])
    np.testing.assert_allclose(LeftRiemann().weights(np.array([0.0, 0.25, 1.0])), [0.25, 0.75, 0.0])
    np.testing.assert_allclose(RightRiemann().weights(np.array([0.0, 0.25, 1.0])), [0.0, 0.25, 0.75])
    np.testing.assert_allclose(Simpson().weights(np.linspace(0, 1, 3)), [1 / 6, 4 / 6, 1 / 6])


# --- the integrate helper ----------------------------------------------------------------------

def test_integrate_helper():
    assert isinstance(integrate(np.exp, 9), float)
    # Default rule is the trapezoid: matches scipy on the same nodes.
    x = np.linspace(0, 1, 9)
    assert abs(integrate(np.exp, 9) - si.trapezoid(np.exp(x), x=x)) < 1e-14
    assert abs(integrate(lambda t: t ** 3, 5, "simpson") - 0.25) < 1e-14
    assert abs(integrate(lambda t: t ** 7, 4, GaussLegendre()) - 0.125) < 1e-14
    assert abs(integrate(np.sin, 33, "simpson") - (1 - math.cos(1.0))) < 1e-8
    with pytest.raises(ValueError, match="at least 3"):
        integrate(np.exp, 2, "simpson")


# --- MindSpore tensor path ----------------------------------------------------------------------

class _Weights(nn.Cell):
    def __init__(self, rule):
        super().__init__()
        self.q = get_quadrature(rule)

    def construct(self, x):
        return self.q.weights(x)


@pytest.mark.parametrize("rule", COMPOSITE)
def test_tensor_weights_match_numpy(rule, mode, rng):
    cell = _Weights(rule)
    for n in (3, 4, 9, 10):
        x = random_nodes(rng, n)
        xt = Tensor(x.astype(np.float32))
        w_ms = cell(xt)
        assert isinstance(w_ms, ms.Tensor)
        assert w_ms.dtype == ms.float32 and w_ms.shape == (n,)
        w_np = get_quadrature(rule).weights(x.astype(np.float32).astype(np.float64))
        np.testing.assert_allclose(w_ms.asnumpy(), w_np, rtol=1e-5, atol=2e-6)


def test_tensor_weights_differentiable(mode):
    # d/dx_i of Σ q_i(x) f(x_i) for the trapezoid against finite differences.
    x = np.array([0.0, 0.2, 0.45, 0.8, 1.0])
    c = np.array([1.0, -2.0, 0.5, 3.0, 1.5])

    class Loss(nn.Cell):
        def __init__(self):
            super().__init__()
            self.q = Trapezoid()
            self.c = Tensor(c.astype(np.float32))

        def construct(self, x):
            return (self.q.weights(x) * self.c).sum()

    g = ms.grad(Loss())(Tensor(x.astype(np.float32))).asnumpy()
    fd = fd_grad(lambda xx: np.sum(Trapezoid().weights(xx) * c), x)
    np.testing.assert_allclose(g, fd, atol=1e-5)


# --- errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ALL_RULES)
def test_too_few_points(rule):
    q = get_quadrature(rule)
    with pytest.raises(ValueError, match=f"{q.name} quadrature needs at least {q.min_points}"):
        q.nodes(q.min_points - 1)
    with pytest.raises(ValueError, match="at least"):
        q.weights(np.linspace(0, 1, q.min_points - 1))


def test_simpson_needs_three_points():
    assert Simpson.min_points == 3
    with pytest.raises(ValueError, match="simpson quadrature needs at least 3 points, got 2"):
        Simpson().weights(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="got 2"):
        Simpson().nodes(2)


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize("bad", [2.0, "3", True, None])
def test_non_int_size(rule, bad):
    with pytest.raises(ValueError, match="must be an int"):
        get_quadrature(rule).nodes(bad)


@pytest.mark.parametrize("rule", COMPOSITE)
def test_decreasing_nodes_raise(rule):
    x = np.array([0.0, 0.3, 0.2, 0.7, 1.0])
    with pytest.raises(ValueError, match=f"{get_quadrature(rule).name} quadrature: nodes must be in increasing order"):
        get_quadrature(rule).weights(x)
    with pytest.raises(ValueError, match="increasing"):
        get_quadrature(rule).weights(x[::-1].copy())


def test_simpson_repeated_node_raises():
    # Simpson divides by the spacings: a repeated node must not give NaN weights.
    with pytest.raises(ValueError, match="simpson.*distinct"):
        Simpson().weights(np.array([0.0, 0.5, 0.5, 1.0]))


@pytest.mark.parametrize("rule", COMPOSITE)
def test_two_dimensional_nodes_raise(rule):
    with pytest.raises(ValueError, match="1-D"):
        get_quadrature(rule).weights(np.linspace(0, 1, 12).reshape(4, 3))


def test_gauss_legendre_refuses_other_nodes():
    gl = GaussLegendre()
    with pytest.raises(ValueError, match=r"only weights its own nodes.*GaussLegendre\(\)\.nodes"):
        gl.weights(np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="own nodes"):
        gl.weights(gl.nodes(5) + 1e-3)
    # Its own nodes in float32 are accepted.
    w = gl.weights(gl.nodes(5).astype(np.float32))
    assert w.dtype == np.float32 and abs(w.sum() - 1) < 1e-6


def test_gauss_legendre_refuses_tensor():
    gl = GaussLegendre()
    with pytest.raises(ValueError, match="fixes its nodes.*trainable partition.*composite rule"):
        gl.weights(Tensor(gl.nodes(4).astype(np.float32)))


def test_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Quadrature().weights(np.linspace(0, 1, 3))
