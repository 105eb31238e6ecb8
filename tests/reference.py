"""Independent references the tests compare the library against.

Nothing here imports ``inn_ms``: this module is the yardstick, written from
the definitions (Keys' kernel, PyTorch's bicubic sampling, the trapezoid
rule, softmax node spacing) and from real PyTorch, never from the library's
own code. numpy only; the few references that run PyTorch import it when
called, so modules that do not need torch can use the rest without it.

The tests import it as ``from reference import ...``: pytest's default
``prepend`` import mode puts ``tests/`` (no ``__init__.py``) on ``sys.path``.
"""
import math

import numpy as np

KEYS_A = -0.75   # PyTorch's bicubic kernel parameter


# --------------------------------------------------------------------------
# Nodes and quadrature
# --------------------------------------------------------------------------

def uniform_nodes(n):
    """Uniform partition of [0, 1] with n points (one point: the midpoint)."""
    return np.array([0.5]) if n == 1 else np.linspace(0.0, 1.0, n)


def corner_nodes(n):
    """Where ``interpolate(..., align_corners=True)`` samples n outputs on
    [0, 1]: equally spaced ends included, a single output at 0 (PyTorch's
    scale is 0 for one output), unlike :func:`uniform_nodes`."""
    return np.linspace(0.0, 1.0, n)


def softmax_nodes(theta):
    """Nodes of a trainable partition: 0, then the cumulative softmax(θ)
    spacing, in float64."""
    theta = np.asarray(theta, np.float64)
    e = np.exp(theta - theta.max())
    return np.concatenate([[0.0], np.cumsum(e) / e.sum()])


def ref_trapezoid(x):
    """Trapezoid weights at sorted nodes x (one node: weight 1)."""
    x = np.asarray(x, np.float64)
    if len(x) == 1:
        return np.ones(1)
    h = np.diff(x)
    q = np.zeros(len(x))
    q[:-1] += h / 2
    q[1:] += h / 2
    return q


# --------------------------------------------------------------------------
# Keys cubic kernel, sampled the way PyTorch's upsample_bicubic2d does
# --------------------------------------------------------------------------

def ref_keys(s, a=KEYS_A):
    """Keys' kernel, written in PyTorch's nested (Horner) form, one scalar at a time."""
    x = abs(float(s))
    if x <= 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return 0.0


def ref_kernel(x, m, a=KEYS_A):
    """n × m matrix sampling m control values (at j/(m-1)) at nodes x, by a
    loop: PyTorch's bicubic align_corners=True, taps floor(t)-1 … floor(t)+2
    clamped to the grid."""
    x = np.asarray(x, np.float64)
    k = np.zeros((len(x), m))
    for i, xi in enumerate(x):
        t = xi * (m - 1)
        f = math.floor(t)
        frac = t - f
        for d in (-1, 0, 1, 2):
            k[i, min(max(f + d, 0), m - 1)] += ref_keys(frac - d, a)
    return k


def torch_bicubic(control2d, n0, n1, dtype="float64"):
    """Real ``torch.nn.functional.interpolate`` (bicubic, align_corners) of a
    2-D array to (n0, n1), computed in torch ``dtype``, returned in float64."""
    import torch
    inp = torch.tensor(control2d, dtype=getattr(torch, dtype))[None, None]
    out = torch.nn.functional.interpolate(inp, size=(n0, n1), mode="bicubic", align_corners=True)
    return out[0, 0].double().numpy()


# --------------------------------------------------------------------------
# Integral layer weights
# --------------------------------------------------------------------------
#
# The library scales the quadrature weights by the partition's full size N
# (they sum to N, so control values have the scale of ordinary weights; see
# inn_ms.sampler). A common factor: invisible in sampled weights and outputs,
# visible in the control values.

def ref_weight(lam, nodes_out, nodes_in):
    """Sampled weight A_out · λ · B_inᵀ of control values λ (axes 0 = out,
    1 = in): B_in is the kernel at ``nodes_in`` with the trapezoid weights × N
    (= m_in) folded in; ``None`` keeps an axis discrete."""
    w = np.asarray(lam, np.float64)
    if nodes_in is not None:
        b = ref_kernel(nodes_in, w.shape[1]) * (ref_trapezoid(nodes_in) * w.shape[1])[:, None]
        w = np.einsum("ji,oi...->oj...", b, w)
    if nodes_out is not None:
        w = np.einsum("ko,o...->k...", ref_kernel(nodes_out, w.shape[0]), w)
    return w


def ref_bias(beta, nodes_out):
    """Sampled bias: the kernel at ``nodes_out`` applied to the control values."""
    beta = np.asarray(beta, np.float64)
    return beta if nodes_out is None else ref_kernel(nodes_out, len(beta)) @ beta


def ref_control(w, integrate_in=True):
    """Control values of a discrete weight: divide by the full-size trapezoid
    weights (× N) along the input axis."""
    w = np.asarray(w, np.float64)
    if not integrate_in:
        return w
    n_full = w.shape[1]
    q = ref_trapezoid(uniform_nodes(n_full)) * n_full
    return w / q.reshape((1, -1) + (1,) * (w.ndim - 2))


def ref_sample(w, n_out, n_in):
    """Weight at uniform sizes (n_out, n_in) of the integral layer built from
    the discrete full-size weight ``w``; ``None`` keeps an axis discrete."""
    return ref_weight(ref_control(w, integrate_in=n_in is not None),
                      None if n_out is None else uniform_nodes(n_out),
                      None if n_in is None else uniform_nodes(n_in))


def ref_sample_bias(b, n_out):
    """Bias at uniform size n_out of the layer built from the discrete bias ``b``."""
    return ref_bias(b, None if n_out is None else uniform_nodes(n_out))


# --------------------------------------------------------------------------
# float64 torch convolution
# --------------------------------------------------------------------------

def same_padding(size, k, s, d):
    """TensorFlow/MindSpore 'same': (before, after), the extra pixel after."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def ref_conv(x, w, b, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, same=False):
    """float64 torch convolution; ``padding`` is MindSpore's (top, bottom,
    left, right), or one int for all four sides."""
    import torch
    F = torch.nn.functional
    x = torch.from_numpy(np.asarray(x, np.float64))
    w = torch.from_numpy(np.asarray(w, np.float64))
    if same:
        top, bottom = same_padding(x.shape[2], w.shape[2], stride[0], dilation[0])
        left, right = same_padding(x.shape[3], w.shape[3], stride[1], dilation[1])
    elif isinstance(padding, int):
        top = bottom = left = right = padding
    else:
        top, bottom, left, right = padding
    x = F.pad(x, (left, right, top, bottom))
    bt = None if b is None else torch.from_numpy(np.asarray(b, np.float64))
    return F.conv2d(x, w, bt, tuple(stride), 0, tuple(dilation), groups).numpy()


# --------------------------------------------------------------------------
# Finite differences and comparison
# --------------------------------------------------------------------------

def fd_grad(f, p, eps=1e-6):
    """Central finite differences of scalar f at numpy array p (float64)."""
    p = np.asarray(p, np.float64)
    g = np.zeros_like(p)
    for i in range(p.size):
        hi, lo = p.copy(), p.copy()
        hi.flat[i] += eps
        lo.flat[i] -= eps
        g.flat[i] = (f(hi) - f(lo)) / (2 * eps)
    return g


def assert_close(actual, expected, rel=1e-5, what="output", min_scale=0.0):
    """max |actual - expected| <= rel × max |expected|, same shapes, and the
    reference larger than ``min_scale`` (else the check would prove nothing)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = np.abs(expected).max()
    err = np.abs(actual - expected).max()
    assert scale > min_scale, f"{what}: reference is ~0 (max |ref| {scale:.3g}), the test would prove nothing"
    assert err <= rel * scale, f"{what}: max |diff| {err:.3g} > {rel:g} × max |ref| {scale:.3g}"


def ref_antialiased(x, m, s, a=KEYS_A):
    """Antialiased sampling matrix, written with loops: each node averages the
    control values under the Keys kernel stretched by ``s`` (taps past the
    grid count for its edge values), weights normalised to sum 1."""
    x = np.asarray(x, np.float64)
    k = np.zeros((len(x), m))
    for i, xi in enumerate(x):
        centre = xi * (m - 1)
        for j in range(int(np.floor(centre - 2 * s)) - 1, int(np.ceil(centre + 2 * s)) + 2):
            k[i, min(max(j, 0), m - 1)] += ref_keys((centre - j) / s, a) / s
        k[i] /= k[i].sum()
    return k
