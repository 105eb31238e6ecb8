"""Quadrature rules on [0, 1]: the weights that turn a sampled weight function
into a sum that approximates an integral over the input-channel coordinate.

An integral layer computes ``F_O(x_out) = ∫ F_W(x_out, x_in) F_I(x_in) dx_in``
and evaluates it as ``Σ_i q_i F_W(x_out, x_i) F_I(x_i)``. ``q`` comes from one
of the rules here. Every rule accepts arbitrary ordered nodes (non-uniform,
even trainable partitions) except Gauss–Legendre, whose nodes are fixed.

The formulas are written once on top of slicing and arithmetic, so the same
code returns numpy weights for fixed partitions and differentiable MindSpore
tensors for trainable ones (see :mod:`inn_ms._backend`).
"""
import numpy as np

from inn_ms import _backend as B


class Quadrature:
    """A rule: default nodes for ``n`` points and the weights for given nodes.

    ``degree`` is the highest polynomial degree integrated exactly (for the
    default nodes of the size at which it is largest); ``order`` is the
    convergence order of the composite rule on smooth functions.
    """

    name = "base"
    degree = 0
    order = 1
    min_points = 1

    def nodes(self, n):
        """The rule's partition of [0, 1] with ``n`` points (uniform by default)."""
        n = _check_size(n, self)
        if n == 1:
            return np.array([0.5])
        return np.linspace(0.0, 1.0, n)

    def weights(self, x):
        """Weights for the ordered nodes ``x`` (numpy array or MindSpore tensor)."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


def _check_size(n, rule):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"{rule.name} quadrature: the number of points must be an int, got {n!r}")
    if n < rule.min_points:
        raise ValueError(f"{rule.name} quadrature needs at least {rule.min_points} points, got {n}")
    return int(n)


def _check_nodes(x, rule, distinct=False):
    n = int(x.shape[0])
    _check_size(n, rule)
    if B.is_numpy(x):
        if x.ndim != 1:
            raise ValueError(f"{rule.name} quadrature: nodes must be 1-D, got shape {x.shape}")
        if n > 1 and np.any(np.diff(x) < 0):
            raise ValueError(f"{rule.name} quadrature: nodes must be in increasing order")
        if distinct and n > 1 and np.any(np.diff(x) == 0):
            raise ValueError(f"{rule.name} quadrature: nodes must be distinct "
                             f"(its weights divide by the spacings)")
    return n


def _single_point(x):
    # One node: the only consistent choice is the whole interval's length.
    return x * 0 + 1


class LeftRiemann(Quadrature):
    """``q_i = x_{i+1} - x_i`` for every node but the last, which gets 0."""

    name = "left"

    def weights(self, x):
        n = _check_nodes(x, self)
        if n == 1:
            return _single_point(x)
        h = x[1:] - x[:-1]
        return B.concat([h, B.zeros(1, like=x)], like=x)


class RightRiemann(Quadrature):
    """``q_i = x_i - x_{i-1}`` for every node but the first, which gets 0."""

    name = "right"

    def weights(self, x):
        n = _check_nodes(x, self)
        if n == 1:
            return _single_point(x)
        h = x[1:] - x[:-1]
        return B.concat([B.zeros(1, like=x), h], like=x)


class Trapezoid(Quadrature):
    """Composite trapezoidal rule: exact for linear functions, error O(h²)."""

    name = "trapezoid"
    degree = 1
    order = 2

    def weights(self, x):
        n = _check_nodes(x, self)
        if n == 1:
            return _single_point(x)
        h = x[1:] - x[:-1]
        if n == 2:
            return B.concat([h / 2, h / 2], like=x)
        return B.concat([h[:1] / 2, (h[:-1] + h[1:]) / 2, h[-1:] / 2], like=x)


class Simpson(Quadrature):
    """Composite Simpson rule for possibly non-uniform nodes, error O(h⁴).

    Pairs of intervals use the 3-point rule for uneven spacing (exact for
    quadratics; for cubics too where the pair's two intervals are equal).
    With an odd number of intervals the last one is integrated with the
    quadratic through its last three nodes, so every size ≥ 3 works.
    Nodes must be distinct: the weights divide by the spacings.
    """

    name = "simpson"
    degree = 3
    order = 4
    min_points = 3

    def weights(self, x):
        _check_nodes(x, self, distinct=True)
        h = x[1:] - x[:-1]
        intervals = int(h.shape[0])
        pairs = intervals // 2
        h0, h1 = h[0:2 * pairs:2], h[1:2 * pairs:2]
        s = (h0 + h1) / 6
        first = s * (2 - h1 / h0)                 # weight of a pair's left node
        middle = s * (h0 + h1) ** 2 / (h0 * h1)   # its middle node
        last = s * (2 - h0 / h1)                  # its right node
        zero = B.zeros(1, like=x)
        even = B.concat([first, zero], like=x) + B.concat([zero, last], like=x)
        w = B.concat([B.interleave(even[:-1], middle, like=x), even[-1:]], like=x)
        if intervals % 2:
            a, b = h[-2:-1], h[-1:]
            alpha = (2 * b ** 2 + 3 * a * b) / (6 * (a + b))
            beta = (b ** 2 + 3 * a * b) / (6 * a)
            eta = b ** 3 / (6 * a * (a + b))
            w = B.concat([w[:-2], w[-2:-1] - eta, w[-1:] + beta, alpha], like=x)
        return w


class GaussLegendre(Quadrature):
    """Gauss–Legendre rule: ``n`` fixed nodes inside (0, 1), exact to degree 2n−1.

    Its nodes are part of the rule, so it cannot weight an arbitrary (e.g.
    trainable) partition; :meth:`weights` checks that it is given its own.
    """

    name = "gauss-legendre"
    degree = None  # 2n - 1: depends on n
    order = None

    def nodes(self, n):
        n = _check_size(n, self)
        t, _ = np.polynomial.legendre.leggauss(n)
        return (t + 1) / 2

    def weights(self, x):
        n = _check_nodes(x, self)
        if not B.is_numpy(x):
            raise ValueError("gauss-legendre quadrature fixes its nodes; a trainable partition "
                             "needs a composite rule (trapezoid, simpson, left, right)")
        t, w = np.polynomial.legendre.leggauss(n)
        if not np.allclose(x, (t + 1) / 2, atol=1e-6):
            raise ValueError("gauss-legendre quadrature only weights its own nodes "
                             "(GaussLegendre().nodes(n)); got a different partition")
        return (w / 2).astype(x.dtype)


RULES = {
    "left": LeftRiemann,
    "right": RightRiemann,
    "trapezoid": Trapezoid,
    "simpson": Simpson,
    "gauss-legendre": GaussLegendre,
}


def get_quadrature(rule):
    """A :class:`Quadrature` from a name in :data:`RULES` or an instance."""
    if isinstance(rule, Quadrature):
        return rule
    try:
        return RULES[rule]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown quadrature {rule!r}; choose one of {sorted(RULES)}") from None


def integrate(f, n, rule="trapezoid"):
    """Approximate ``∫₀¹ f(x) dx`` with ``n`` points of ``rule``.

    ``f`` is a callable on a numpy array of nodes.
    """
    q = get_quadrature(rule)
    x = q.nodes(n)
    return float(np.sum(q.weights(x) * f(x)))
