"""Array helpers that work on numpy arrays and MindSpore tensors alike.

The quadrature and cubic-kernel formulas are written once and evaluated either
in numpy (constants for fixed partitions, references in tests) or with
MindSpore ops (inside a graph, differentiable with respect to trainable
partition positions). Only slicing and arithmetic are shared by both; the few
constructors that differ live here.
"""
import numpy as np
from mindspore import ops


def is_numpy(x):
    """True for numpy arrays and Python scalars, False for MindSpore tensors."""
    return isinstance(x, (np.ndarray, np.generic, float, int))


def concat(parts, like):
    """Concatenate 1-D pieces of the same kind as ``like``."""
    if is_numpy(like):
        return np.concatenate(parts)
    return ops.concat(parts)


def zeros(n, like):
    """A 1-D array of ``n`` zeros of the same kind and dtype as ``like``."""
    if is_numpy(like):
        return np.zeros(n, dtype=like.dtype)
    return ops.zeros(n, like.dtype)


def interleave(even, odd, like):
    """``[e0, o0, e1, o1, ...]`` for pieces of equal length."""
    if is_numpy(like):
        return np.stack([even, odd], axis=1).reshape(-1)
    return ops.stack([even, odd], axis=1).reshape(-1)


def abs_(x):
    if is_numpy(x):
        return np.abs(x)
    return ops.abs(x)


def where(cond, a, b):
    if is_numpy(cond):
        return np.where(cond, a, b)
    return ops.where(cond, a, b)


def concat_columns(parts, like):
    """Concatenate 2-D pieces along columns; empty pieces are skipped."""
    parts = [p for p in parts if p.shape[1] > 0]
    if is_numpy(like):
        return np.concatenate(parts, axis=1)
    return ops.concat(parts, axis=1)
