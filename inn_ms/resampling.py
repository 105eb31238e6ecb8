"""Resampling rules: how a continuous channel axis becomes ``n`` channels.

A continuous axis with ``m`` control values is the cubic function
``F(x) = Σ_j λ_j u(x (m − 1) − j)`` (:mod:`inn_ms.cubic`). A width of ``n``
channels samples it at ``n`` nodes. Two rules:

* ``"point"`` — ``F`` evaluated at the nodes: the paper's rule and the
  default. When ``n`` is smaller than ``m`` the nodes are further apart than
  the control values and ``F`` may vary between them faster than ``n``
  samples can carry (aliasing): along the output axis that is picking some
  channels and skipping the ones between.
* ``"antialiased"`` — ``F`` low-passed before sampling: the Keys kernel
  stretched by ``s = (m − 1)/(n − 1)``, the ratio of the node spacing to the
  control spacing, as antialiased image resizing does (PIL, PyTorch's
  ``antialias=True``). Each new channel is a weighted mean of the control
  values around its node; on the integrated axis, with the quadrature
  weights, a consumer's new column is about the sum of the columns it
  stands for. Along a channel order made smooth by the travelling-salesman
  permutation this merges neighbouring channels, as channel folding does.
  When ``n ≥ m`` (``s ≤ 1``) there is nothing to filter and the rule *is*
  ``"point"``: exact at full size, and unchanged for networks whose control
  grid is coarser than their channels.

Both rules give ``n × m`` matrices that are linear in the control values and
differentiable with respect to the nodes (trainable partitions), in numpy
for fixed partitions and as MindSpore tensors in a graph.

Edges: taps past the control grid are clamped to its edge values, as in
:func:`inn_ms.cubic.kernel_matrix`, and every antialiased row is normalised
to sum 1, so a constant function stays that constant at every width (the
antialiased matrix is :func:`inn_ms.cubic.stretched_matrix`, which images
are resized with too).
"""
import numpy as np

from inn_ms import _backend as B
from inn_ms.cubic import kernel_matrix, stretched_matrix

RULES = ("point", "antialiased")


def check_rule(rule, what="resampling"):
    """``rule`` if it is one of :data:`RULES`, else a ValueError naming it."""
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"{what}: unknown resampling rule {rule!r}; choose one of {list(RULES)}")
    return rule


def stretch(n, m):
    """The antialiasing stretch ``max(1, (m − 1)/(n − 1))`` for ``n`` nodes
    over ``m`` control values (one node: the whole grid, ``m − 1``)."""
    if m <= 1:
        return 1.0
    return max(1.0, (m - 1) / max(n - 1, 1))


def antialiased_matrix(x, m, s, reach=None):
    """The ``n × m`` matrix of the Keys kernel stretched by ``s`` at nodes
    ``x``, edge-clamped, rows normalised to sum 1.

    ``x`` and ``s`` are numpy (returns numpy, float64) or MindSpore tensors
    (returns a tensor; ``s`` may then be a run-time tensor, as in the elastic
    network). ``reach`` (taps past each edge, static) must cover ``2·s``;
    by default ``ceil(2·s) + 1`` for a numpy ``s``.
    """
    m = int(m)
    if m == 1:
        return x.reshape(-1, 1) * 0 + 1
    if B.is_numpy(x):
        x = np.asarray(x, np.float64)
    return stretched_matrix(x * (m - 1), m, s, reach)


def sampling_matrix(x, m, rule="point"):
    """The ``n × m`` matrix sampling ``m`` control values at the nodes ``x``
    (numpy or a MindSpore tensor of static length ``n``) under ``rule``."""
    check_rule(rule)
    n = int(x.shape[0])
    s = stretch(n, int(m))
    if rule == "point" or s == 1.0:
        return kernel_matrix(x, m)
    return antialiased_matrix(x, m, s)


__all__ = ["RULES", "antialiased_matrix", "check_rule", "sampling_matrix", "stretch"]
