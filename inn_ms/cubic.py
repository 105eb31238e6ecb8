"""Cubic (Keys) parametrization of continuous weights.

A continuous dimension with ``m`` control values ``λ_0 … λ_{m-1}`` placed at
``j / (m - 1)`` defines ``F(x) = Σ_j λ_j u(x (m - 1) - j)`` with Keys' cubic
convolution kernel ``u`` (a = -0.75) and edge clamping: exactly what PyTorch's
``interpolate(mode='bicubic', align_corners=True)`` computes. Sampling ``F``
at nodes ``x_0 … x_{n-1}`` is a product with the ``n × m`` *kernel matrix*
``K[i, j]``; a weight with several continuous dimensions is sampled with one
such matrix per dimension (the kernel is separable).

:func:`stretched_matrix` is the general form every other cubic use goes
through: the kernel stretched to low-pass filter (antialiased resampling of
weights, :mod:`inn_ms.resampling`; downscaling images,
:mod:`inn_ms.data.sr`), centred anywhere, taps past the ends clamped or
mirrored, rows summing to one. :func:`four_taps` (and :func:`node_taps`) is the kernel matrix's
non-zero band (four taps a row) for sampling by gathers at run-time sizes
(the elastic network).

Two evaluators:

* :func:`kernel_matrix` + matmul (the default). Exact, works for any nodes,
  differentiable with respect to the nodes (trainable partitions), and a
  plain matmul is what Ascend's cube unit runs best.
* :func:`resize_bicubic` through ``ops.ResizeBicubic``. Only for uniform
  partitions, and the op rounds interpolation fractions to 1/1024, so it is
  about 1e-3 away from the exact kernel; kept for comparison and because it
  takes its output size as a tensor (in-graph resizing for elastic export).
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

from inn_ms import _backend as B

KEYS_A = -0.75


def keys_kernel(s, a=KEYS_A):
    """Keys' cubic convolution kernel ``u(s)``, support ``|s| < 2``.

    Works on numpy arrays and on MindSpore tensors (differentiable).
    """
    t = B.abs_(s)
    t2 = t * t
    t3 = t2 * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return B.where(t <= 1, near, B.where(t < 2, far, t * 0))


def kernel_matrix(x, m, a=KEYS_A):
    """The ``n × m`` matrix sampling ``m`` control values at nodes ``x`` ⊂ [0, 1].

    Taps that fall outside the control grid are clamped to its edge nodes,
    which is what makes sampling at ``x = linspace(0, 1, m)`` the identity.
    ``x`` may be a numpy array (returns numpy) or a MindSpore tensor (returns
    a tensor, differentiable with respect to ``x``).
    """
    m = int(m)
    if m < 1:
        raise ValueError(f"kernel_matrix: need at least one control value, got m={m}")
    if m == 1:
        return x[:, None] * 0 + 1
    if B.is_numpy(x):
        return _banded_kernel_matrix(np.asarray(x, dtype=np.float64), m, a)
    # Control nodes -1 and m are the only out-of-range taps with non-zero
    # weight for x in [0, 1]; they carry the clamped edge values.
    j = np.arange(-1, m + 1, dtype=np.float32)
    t = x.reshape(-1, 1) * (m - 1) - Tensor(j).reshape(1, -1)
    k = keys_kernel(t, a)
    return B.concat_columns(
        [k[:, 1:2] + k[:, 0:1], k[:, 2:m], k[:, m:m + 1] + k[:, m + 1:m + 2]], like=k)


def _banded_kernel_matrix(x, m, a):
    """:func:`kernel_matrix` for numpy nodes, from each row's four non-zero
    taps: O(n) kernel evaluations instead of O(n·m) (the dense form spent
    ~10 s of a ResNet-50 conversion on its 2048-wide groups). Same values:
    a tap's offset is computed as ``x·(m−1) − j`` in both."""
    pos = x * (m - 1)
    taps = np.floor(pos)[:, None] + np.array([-1.0, 0.0, 1.0, 2.0])
    wts = keys_kernel(pos[:, None] - taps, a)
    out = np.zeros((len(x), m))
    rows = np.broadcast_to(np.arange(len(x))[:, None], taps.shape)
    np.add.at(out, (rows, np.clip(taps, 0, m - 1).astype(np.int64)), wts)
    return out


def four_taps(pos, last, a=KEYS_A, base=None):
    """The Keys kernel's four taps around positions ``pos`` (grid units, a
    float32 tensor of shape ``(n,)``) on the grid ``0 … last`` (a number,
    or a tensor broadcasting against ``(n, 1)``): ``(idx, wts)``, int32
    grid indices ``(n, 4)`` clamped to the grid, and their weights. Adding
    each row's weights at its indices gives that row of
    :func:`kernel_matrix` at nodes ``pos / last``. With ``base`` (the
    positions' floor), ``pos`` is only their fractional part."""
    offsets = Tensor(np.array([[-1.0, 0.0, 1.0, 2.0]], np.float32))
    if base is None:
        base = ops.floor(pos)
        pos = pos - base
    wts = keys_kernel(pos.reshape(-1, 1) - offsets, a)
    taps = base.reshape(-1, 1) + offsets
    return ops.cast(ops.minimum(ops.maximum(taps, 0.0), last), ms.int32), wts


def node_taps(i, n, last, a=KEYS_A):
    """:func:`four_taps` at node ``i`` of ``n`` equally spaced nodes on the
    grid ``0 … last`` (float32 tensors of integers, broadcasting; nodes past
    ``n − 1`` at the grid's end), computed so that only the fraction is
    rounded: ``i·last`` and its floor division by ``n − 1`` are exact in
    float32 (integers below 2^24), where ``(i / (n − 1))·last`` was off by
    ~an ulp of ``last``: 9e-6 of a kernel weight at 128 control values,
    1.4e-4 at 2048 (now < 2e-6), and a BatchNorm of 8 images made the first
    0.4–2 % of a gradient (measured)."""
    span = n - 1.0
    num = ops.minimum(i, span) * last
    base = ops.floor(num / span)
    rest = num - base * span  # an exact integer; the quotient's rounding can leave it one span off
    fix = ops.floor(rest / span)
    bound = last if isinstance(last, (int, float)) else last.reshape(-1, 1)
    return four_taps((rest - fix * span) / span, bound, a, base=base + fix)


EDGES = ("clamp", "mirror")


def edge_fold(n, reach, edges="clamp"):
    """The ``(n + 2·reach) × n`` matrix folding taps ``-reach … n-1+reach``
    onto a grid of ``n`` points: ``"clamp"`` adds a tap past an end to the
    end point, ``"mirror"`` to its symmetric reflection (-1 → 0, -2 → 1,
    n → n-1)."""
    if edges not in EDGES:
        raise ValueError(f"edges must be one of {EDGES}, got {edges!r}")
    taps = np.arange(-reach, n + reach)
    if edges == "clamp":
        idx = np.clip(taps, 0, n - 1)
    else:
        idx = np.mod(taps, 2 * n)
        idx = np.where(idx >= n, 2 * n - 1 - idx, idx)
    fold = np.zeros((len(taps), n))
    np.add.at(fold, (np.arange(len(taps)), idx), 1.0)
    return fold


def stretched_matrix(centres, n, stretch, reach=None, a=KEYS_A, edges="clamp"):
    """The ``len(centres) × n`` matrix of the Keys kernel stretched by
    ``stretch``: row ``i`` weighs grid point ``j`` by
    ``u((c_i − j) / stretch) / stretch`` (``centres`` in grid units), taps
    past the ends folded back (:func:`edge_fold`), every row normalised to
    sum 1 (so a constant stays that constant).

    ``centres`` and ``stretch`` are numpy (returns float64 numpy) or
    MindSpore tensors (returns a tensor; ``stretch`` may then be a run-time
    tensor). ``reach`` (taps past each end, static) must cover
    ``2·stretch``; by default ``ceil(2·stretch) + 1`` for a numpy stretch."""
    n = int(n)
    if reach is None:
        if not B.is_numpy(stretch):
            raise ValueError("stretched_matrix: a tensor stretch needs a static reach")
        reach = int(np.ceil(2 * float(stretch))) + 1
    fold = edge_fold(n, reach, edges)
    taps = np.arange(-reach, n + reach, dtype=np.float64)
    if B.is_numpy(centres):
        k = keys_kernel((np.asarray(centres, np.float64)[:, None] - taps[None, :]) / stretch, a) / stretch
        k = k @ fold
        return k / k.sum(axis=1, keepdims=True)
    t = (centres.reshape(-1, 1) - Tensor(taps.astype(np.float32)).reshape(1, -1)) / stretch
    k = ops.matmul(keys_kernel(t, a) / stretch, Tensor(fold.astype(np.float32)))
    return k / k.sum(axis=1, keepdims=True)


def sample(control, matrices, matmul=None):
    """Sample a continuous tensor along some of its leading axes.

    ``control`` has shape ``(m_0, m_1, …, rest…)``; ``matrices`` lists one
    kernel matrix ``(n_k, m_k)`` per leading axis (``None`` keeps an axis as
    is). Returns the tensor of shape ``(n_0, n_1, …, rest…)``. Works on
    numpy arrays and MindSpore tensors.
    """
    out = control
    for axis, k in enumerate(matrices):
        if k is None:
            continue
        out = _apply_along(out, k, axis)
    return out


def _apply_along(t, k, axis):
    """``k`` (n × m) applied to axis ``axis`` of ``t`` (size m)."""
    shape = tuple(t.shape)
    rest = shape[axis + 1:]
    lead = shape[:axis]
    if B.is_numpy(t):
        moved = np.moveaxis(t, axis, 0).reshape(shape[axis], -1)
        out = (k @ moved).reshape((k.shape[0],) + lead + rest)
        return np.moveaxis(out, 0, axis)
    if axis == 0:
        out = ops.matmul(k, t.reshape(shape[0], -1))
        return out.reshape((k.shape[0],) + rest)
    # Put the axis last, multiply by kᵀ, put it back.
    perm = tuple(i for i in range(len(shape)) if i != axis) + (axis,)
    inv = tuple(np.argsort(perm).tolist())
    moved = ops.transpose(t, perm)
    mshape = tuple(moved.shape)
    out = ops.matmul(moved.reshape(-1, shape[axis]), k.T).reshape(mshape[:-1] + (k.shape[0],))
    return ops.transpose(out, inv)


def resize_bicubic(control, sizes):
    """Sample ``control`` (shape ``(m_0, m_1, rest…)`` or ``(m_0, rest…)``) on
    uniform partitions of ``sizes`` with MindSpore's ``ResizeBicubic`` op.

    ``sizes`` has one entry per leading continuous axis (1 or 2 of them).
    The op rounds interpolation fractions to 1/1024 (see the module doc).
    """
    shape = tuple(control.shape)
    resize = ops.ResizeBicubic(align_corners=True, half_pixel_centers=False)
    if len(sizes) == 2:
        m0, m1, rest = shape[0], shape[1], shape[2:]
        c = int(np.prod(rest)) if rest else 1
        img = ops.transpose(control.reshape(m0, m1, c), (2, 0, 1)).reshape(1, c, m0, m1)
        out = resize(img, tuple(int(s) for s in sizes))
        out = ops.transpose(out.reshape(c, sizes[0], sizes[1]), (1, 2, 0))
        return out.reshape((sizes[0], sizes[1]) + rest)
    if len(sizes) == 1:
        m0, rest = shape[0], shape[1:]
        c = int(np.prod(rest)) if rest else 1
        img = ops.transpose(control.reshape(m0, c), (1, 0)).reshape(1, c, 1, m0)
        out = resize(img, (1, int(sizes[0])))
        out = ops.transpose(out.reshape(c, sizes[0]), (1, 0))
        return out.reshape((sizes[0],) + rest)
    raise ValueError(f"resize_bicubic: one or two continuous axes, got sizes={sizes!r}")
