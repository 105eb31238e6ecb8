"""Keys cubic kernel, kernel matrices and the two evaluators (inn_ms.cubic).

References are independent of the library: a hand-written Keys kernel, a
1-D loop that does what PyTorch's bicubic ``align_corners=True`` does (taps
floor(t)-1 … floor(t)+2 clamped to the grid), real
``torch.nn.functional.interpolate`` and central finite differences.
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from inn_ms.cubic import KEYS_A, four_taps, kernel_matrix, node_taps, keys_kernel, resize_bicubic, sample

torch = pytest.importorskip("torch")

from reference import corner_nodes, fd_grad, ref_kernel, ref_keys, torch_bicubic  # noqa: E402


class _KM(nn.Cell):
    """kernel_matrix on a tensor inside a Cell (compiled in graph mode)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def construct(self, x):
        return kernel_matrix(x, self.m)


# --- the kernel ---------------------------------------------------------------------------------

def test_keys_a():
    assert KEYS_A == -0.75


@pytest.mark.parametrize("a", [-0.75, -0.5])
def test_keys_kernel_matches_reference(a):
    s = np.concatenate([np.linspace(-3, 3, 601), [-2, -1, 0, 1, 2, 1 - 1e-9, 1 + 1e-9]])
    got = keys_kernel(s, a) if a != -0.75 else keys_kernel(s)
    ref = np.array([ref_keys(v, a) for v in s])
    np.testing.assert_allclose(got, ref, atol=1e-14)


def test_keys_kernel_properties():
    # Interpolating: 1 at 0, 0 at the other integers; even; zero outside (-2, 2).
    assert keys_kernel(np.array([0.0]))[0] == 1.0
    np.testing.assert_allclose(keys_kernel(np.array([-3., -2., -1., 1., 2., 3.])), 0.0, atol=1e-15)
    s = np.linspace(0, 2.5, 251)
    np.testing.assert_allclose(keys_kernel(s), keys_kernel(-s), atol=0)
    assert np.all(keys_kernel(np.array([2.0, 2.1, 5.0, -7.0])) == 0)
    # Partition of unity for any shift. Linear functions are reproduced only
    # by Keys' a = -0.5 kernel, not by PyTorch's a = -0.75.
    t = np.linspace(0, 1, 37)[:, None]
    k = np.arange(-3, 5)[None, :]
    for a in (-0.75, -0.5):
        w = keys_kernel(t - k, a)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-14)
    np.testing.assert_allclose((keys_kernel(t - k, -0.5) * k).sum(1), t[:, 0], atol=1e-14)
    assert np.abs((keys_kernel(t - k) * k).sum(1) - t[:, 0]).max() > 1e-3
    # Continuous with continuous derivative at |s| = 1 and 2.
    for c in (1.0, 2.0):
        e = 1e-7
        lo, hi = keys_kernel(np.array([c - e, c + e]))
        assert abs(lo - hi) < 1e-6
        d_lo = (keys_kernel(np.array([c - e]))[0] - keys_kernel(np.array([c - 2 * e]))[0]) / e
        d_hi = (keys_kernel(np.array([c + 2 * e]))[0] - keys_kernel(np.array([c + e]))[0]) / e
        assert abs(d_lo - d_hi) < 1e-5


def test_keys_kernel_tensor_matches_numpy():
    s = np.linspace(-2.7, 2.7, 91)
    got = keys_kernel(Tensor(s.astype(np.float32)))
    assert isinstance(got, ms.Tensor)
    np.testing.assert_allclose(got.asnumpy(), [ref_keys(v) for v in s], atol=1e-6)


# --- kernel matrices ------------------------------------------------------------------------------

@pytest.mark.parametrize("m", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("n", [1, 2, 5, 13, 40])
def test_kernel_matrix_matches_reference_loop(m, n, rng):
    x = np.sort(rng.uniform(0, 1, n))
    if n >= 5:  # include both end points (and random interior nodes)
        x[0], x[-1] = 0.0, 1.0
    k = kernel_matrix(x, m)
    assert k.shape == (n, m)
    np.testing.assert_allclose(k, ref_kernel(x, m), atol=1e-12)
    # Applied to control values, as the brief states it.
    v = rng.normal(size=m)
    np.testing.assert_allclose(k @ v, ref_kernel(x, m) @ v, atol=1e-6)
    # Rows sum to one (partition of unity survives clamping).
    np.testing.assert_allclose(k.sum(1), 1.0, atol=1e-12)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 9, 16, 33])
def test_kernel_matrix_identity_at_control_size(m):
    k = kernel_matrix(corner_nodes(m), m)
    np.testing.assert_allclose(k, np.eye(m), atol=1e-12)


@pytest.mark.parametrize("m", [1, 2, 5, 16])
def test_kernel_matrix_identity_tensor(m, mode):
    k = _KM(m)(Tensor(corner_nodes(m).astype(np.float32))).asnumpy()
    np.testing.assert_allclose(k, np.eye(m), atol=1e-6)


class _Taps(nn.Cell):
    """four_taps inside a Cell (compiled in graph mode)."""

    def construct(self, pos, last):
        return four_taps(pos, last)


def _band_to_dense(idx, wts, m):
    dense = np.zeros((len(idx), m))
    np.add.at(dense, (np.repeat(np.arange(len(idx)), 4), idx.reshape(-1)), wts.reshape(-1))
    return dense


@pytest.mark.parametrize("m", [1, 2, 4, 11])
def test_four_taps_are_the_kernel_matrix_band(m, mode, rng):
    """The elastic network samples by four gathers a row: summed at their
    indices, the taps are the rows of the reference kernel matrix."""
    x = np.sort(rng.uniform(0, 1, 17)).astype(np.float32)
    x[0], x[-1] = 0, 1
    idx, wts = _Taps()(Tensor(x * (m - 1)), float(m - 1))
    assert idx.dtype == ms.int32 and idx.shape == wts.shape == (17, 4)
    assert idx.asnumpy().min() >= 0 and idx.asnumpy().max() <= m - 1
    np.testing.assert_allclose(_band_to_dense(idx.asnumpy(), wts.asnumpy(), m),
                               ref_kernel(x.astype(np.float64), m), atol=2e-6)


def test_four_taps_with_a_grid_per_row(mode, rng):
    """``last`` per row (the elastic bucket's table of blocks of different
    control sizes): each row is its own grid's kernel-matrix row."""
    ms_ = rng.choice([1, 2, 3, 6, 9], 12)
    x = rng.uniform(0, 1, 12).astype(np.float32)
    x[:2] = 0, 1
    last = (ms_ - 1).astype(np.float32)
    idx, wts = _Taps()(Tensor(x * last), Tensor(last.reshape(-1, 1)))
    dense = _band_to_dense(idx.asnumpy(), wts.asnumpy(), int(ms_.max()))
    for row, (xi, m) in enumerate(zip(x, ms_)):
        np.testing.assert_allclose(dense[row, :m], ref_kernel(np.array([xi], np.float64), int(m))[0], atol=2e-6)
        assert not dense[row, m:].any()


class _NodeTaps(nn.Cell):
    def construct(self, i, n, last):
        return node_taps(i, n, last)


@pytest.mark.parametrize("m, n", [(2, 2), (32, 29), (128, 96), (2048, 1023), (2048, 2048)])
def test_node_taps_are_float64_exact(m, n, mode):
    """Taps at the nodes ``i/(n-1)`` of a run-time size are the float64
    kernel matrix's rows to float32 rounding of the kernel itself (< 2e-6),
    at any grid: the positions are not rounded (``(i/(n-1))·(m-1)`` in
    float32 was 9e-6 off at 128 control values and 1.4e-4 at 2048); rows past
    ``n-1`` are the grid's end."""
    rows = n + 3
    i = np.arange(rows, dtype=np.float32)
    idx, wts = _NodeTaps()(Tensor(i), Tensor(np.float32(n)), float(m - 1))
    x = np.minimum(np.arange(rows) / (n - 1), 1.0)
    np.testing.assert_allclose(_band_to_dense(idx.asnumpy(), wts.asnumpy(), m), ref_kernel(x, m), atol=2e-6)
    old = _band_to_dense(*[t.asnumpy() for t in _Taps()(Tensor(np.minimum(i / np.float32(n - 1), 1) * (m - 1)),
                                                         float(m - 1))], m)
    if m >= 128 and n < m:
        assert np.abs(old - ref_kernel(x, m)).max() > 5e-6  # what the exact positions fixed


@pytest.mark.parametrize("m", [1, 2, 4, 11])
def test_kernel_matrix_tensor_matches_reference(m, mode, rng):
    x = np.sort(rng.uniform(0, 1, 17)).astype(np.float32)
    x[0], x[-1] = 0, 1
    k = _KM(m)(Tensor(x))
    assert isinstance(k, ms.Tensor) and k.shape == (17, m) and k.dtype == ms.float32
    np.testing.assert_allclose(k.asnumpy(), ref_kernel(x.astype(np.float64), m), atol=2e-6)


def test_kernel_matrix_bad_m():
    with pytest.raises(ValueError, match="at least one control value"):
        kernel_matrix(corner_nodes(4), 0)


@pytest.mark.parametrize("m0,m1", [(1, 1), (1, 4), (2, 2), (2, 7), (5, 3), (8, 8), (16, 9)])
@pytest.mark.parametrize("n0,n1", [(1, 1), (2, 3), (5, 5), (13, 4), (32, 17)])
@pytest.mark.parametrize("tdtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_matches_torch_bicubic_align_corners(m0, m1, n0, n1, tdtype, tol, rng):
    c = rng.normal(size=(m0, m1))
    ours = kernel_matrix(corner_nodes(n0), m0) @ c @ kernel_matrix(corner_nodes(n1), m1).T
    ref = torch_bicubic(c, n0, n1, tdtype)
    np.testing.assert_allclose(ours, ref, atol=tol * max(1.0, np.abs(c).max()))


def test_torch_reference_is_not_bilinear(rng):
    # Guard for the test above: bilinear would differ from our cubic sampling.
    c = rng.normal(size=(6, 6))
    ours = kernel_matrix(corner_nodes(11), 6) @ c @ kernel_matrix(corner_nodes(11), 6).T
    inp = torch.tensor(c)[None, None]
    lin = torch.nn.functional.interpolate(inp, size=(11, 11), mode="bilinear", align_corners=True)
    assert np.abs(ours - lin[0, 0].numpy()).max() > 1e-2


def test_kernel_matrix_reproduces_constants_and_a_parameter():
    # Clamped cubic convolution keeps constants everywhere; with a = -0.5 it
    # also reproduces linear control values away from the edge intervals.
    m = 9
    j = np.arange(m) / (m - 1)
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(kernel_matrix(x, m) @ np.full(m, 3.5), 3.5, atol=1e-12)
    inner = (x >= 1 / (m - 1)) & (x <= 1 - 1 / (m - 1))
    k_half = kernel_matrix(x, m, a=-0.5)
    np.testing.assert_allclose(k_half, ref_kernel(x, m, a=-0.5), atol=1e-12)
    np.testing.assert_allclose((k_half @ (2 * j - 1))[inner], (2 * x - 1)[inner], atol=1e-12)


# --- sample -----------------------------------------------------------------------------------------

class _Sample(nn.Cell):
    def __init__(self, k0, k1):
        super().__init__()
        self.k0 = None if k0 is None else Tensor(k0.astype(np.float32))
        self.k1 = None if k1 is None else Tensor(k1.astype(np.float32))

    def construct(self, c):
        return sample(c, [self.k0, self.k1])


@pytest.mark.parametrize("n0,n1", [(3, 8), (10, 2), (7, 5)])
def test_sample_numpy_matches_einsum(n0, n1, rng):
    c = rng.normal(size=(7, 5, 3, 3))
    k0 = kernel_matrix(np.sort(rng.uniform(0, 1, n0)), 7)
    k1 = kernel_matrix(np.sort(rng.uniform(0, 1, n1)), 5)
    out = sample(c, [k0, k1])
    assert out.shape == (n0, n1, 3, 3)
    np.testing.assert_allclose(out, np.einsum("ai,bj,ijkl->abkl", k0, k1, c), atol=1e-12)
    # One axis only; None keeps the other axis as it is.
    np.testing.assert_allclose(sample(c, [k0]), np.einsum("ai,ijkl->ajkl", k0, c), atol=1e-12)
    np.testing.assert_allclose(sample(c, [None, k1]), np.einsum("bj,ijkl->ibkl", k1, c), atol=1e-12)


@pytest.mark.parametrize("which", ["both", "first", "second"])
def test_sample_tensor_matches_numpy(which, mode, rng):
    c = rng.normal(size=(7, 5, 3, 3))
    k0 = kernel_matrix(np.sort(rng.uniform(0, 1, 9)), 7) if which != "second" else None
    k1 = kernel_matrix(np.sort(rng.uniform(0, 1, 4)), 5) if which != "first" else None
    expected = sample(c, [k0, k1])
    got = _Sample(k0, k1)(Tensor(c.astype(np.float32)))
    assert isinstance(got, ms.Tensor) and got.shape == expected.shape
    np.testing.assert_allclose(got.asnumpy(), expected, atol=1e-5)


def test_sample_at_control_size_is_identity(rng):
    c = rng.normal(size=(6, 4, 3))
    out = sample(c, [kernel_matrix(corner_nodes(6), 6), kernel_matrix(corner_nodes(4), 4)])
    np.testing.assert_allclose(out, c, atol=1e-12)


# --- ResizeBicubic evaluator -------------------------------------------------------------------------

class _Resize(nn.Cell):
    def __init__(self, sizes):
        super().__init__()
        self.sizes = sizes

    def construct(self, c):
        return resize_bicubic(c, self.sizes)


CASES_2 = [((7, 5, 3, 3), (3, 11)), ((7, 5, 3, 3), (14, 10)), ((7, 5, 3, 3), (4, 2)),
           ((16, 9), (32, 32)), ((16, 9), (5, 3)), ((2, 3, 4), (9, 9)), ((7, 5, 3, 3), (7, 5))]
CASES_1 = [((7, 3, 3), (12,)), ((7, 3, 3), (4,)), ((16,), (33,)), ((16, 4), (6,)),
           ((7, 5, 3, 3), (19,)), ((2, 5), (8,))]


@pytest.mark.parametrize("shape,sizes", CASES_2 + CASES_1)
def test_resize_bicubic_matches_matmul(shape, sizes, mode, rng):
    c = rng.normal(size=shape)
    mats = [kernel_matrix(corner_nodes(n), shape[a]) for a, n in enumerate(sizes)]
    exact = sample(c, mats)
    got = _Resize(sizes)(Tensor(c.astype(np.float32)))
    assert got.shape == exact.shape
    # The op rounds interpolation fractions to 1/1024.
    np.testing.assert_allclose(got.asnumpy(), exact, atol=2e-3 * np.abs(c).max())


def test_resize_bicubic_bad_sizes():
    c = Tensor(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="one or two continuous axes"):
        resize_bicubic(c, (2, 2, 2))


# --- gradient w.r.t. the nodes ---------------------------------------------------------------------

class _SumKv(nn.Cell):
    def __init__(self, m, v):
        super().__init__()
        self.m = m
        self.v = Tensor(v.astype(np.float32))

    def construct(self, x):
        return ops.matmul(kernel_matrix(x, self.m), self.v).sum()


@pytest.mark.parametrize("m", [2, 4, 9])
def test_kernel_matrix_gradient_wrt_nodes(m, mode, rng):
    # Interior nodes kept away from the kernel's knots (x (m-1) integer),
    # plus the end points 0 and 1.
    n = 11
    while True:
        x = np.sort(rng.uniform(0, 1, n))
        frac = (x * (m - 1)) % 1
        if np.all(np.minimum(frac, 1 - frac) > 0.02):
            break
    x[0], x[-1] = 0.0, 1.0
    v = rng.normal(size=m)

    def f(xx):
        return float(np.sum(ref_kernel(xx, m) @ v))

    fd = fd_grad(f, x)
    g = ms.grad(_SumKv(m, v))(Tensor(x.astype(np.float32))).asnumpy()
    scale = max(1.0, np.abs(fd).max())
    np.testing.assert_allclose(g, fd, atol=2e-4 * scale)
    assert np.abs(fd).max() > 1e-3  # a non-trivial gradient


def test_kernel_matrix_gradient_pynative_function(rng):
    # Plain (uncompiled) function through ms.grad, also w.r.t. the nodes.
    m = 6
    x = np.array([0.0, 0.13, 0.41, 0.58, 0.77, 1.0])
    v = rng.normal(size=m)
    vt = Tensor(v.astype(np.float32))

    def loss(xt):
        return ops.matmul(kernel_matrix(xt, m), vt).sum()

    g = ms.grad(loss)(Tensor(x.astype(np.float32))).asnumpy()
    fd = fd_grad(lambda xx: np.sum(ref_kernel(xx, m) @ v), x)
    np.testing.assert_allclose(g, fd, atol=2e-4 * max(1.0, np.abs(fd).max()))


def test_one_cubic_matrix_builder_for_weights_and_images():
    """kernel_matrix is the stretched matrix at stretch 1 (its rows already
    sum to 1); edges clamp for weights and mirror for images."""
    from inn_ms.cubic import edge_fold, stretched_matrix
    x = np.linspace(0, 1, 7)
    np.testing.assert_allclose(stretched_matrix(x * 11, 12, 1.0, reach=1), kernel_matrix(x, 12), rtol=0, atol=1e-15)
    assert edge_fold(3, 2, "clamp").argmax(axis=1).tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert edge_fold(3, 2, "mirror").argmax(axis=1).tolist() == [1, 0, 0, 1, 2, 2, 1]
    with pytest.raises(ValueError, match="edges"):
        edge_fold(3, 1, "wrap")
