"""Integral layers: exactness at full size, resampling at other sizes, and
the graph-mode guard against stale compiled graphs.

Every expectation comes from an independent reference, never from the
library's own output:

* at full size, the discrete MindSpore layer itself, and real PyTorch
  convolutions carrying the same weights;
* at other sizes, a numpy re-implementation of the sampling written the way
  PyTorch's ``upsample_bicubic2d`` does it (floor + four clamped taps, Keys
  a = -0.75, align_corners), itself checked against
  ``torch.nn.functional.interpolate``, with trapezoid weights, followed by a
  float64 torch convolution.
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

torch = pytest.importorskip("torch")
F = torch.nn.functional

from inn_ms.layers import IntegralConv2d, IntegralDense, SeparableIntegralConv2d, SizeKeyed  # noqa: E402
from inn_ms.partition import CompositePartition, UniformPartition  # noqa: E402

from reference import (assert_close, ref_conv, ref_control, ref_kernel, ref_sample,  # noqa: E402
                       ref_sample_bias, ref_trapezoid, torch_bicubic, uniform_nodes)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def f32(a):
    return Tensor(np.asarray(a, np.float32))


def with_modes(cases, graph):
    """``(mode, case)`` parameters: every case in PyNative, the cases in
    ``graph`` in graph mode too (graph compilation costs ~1 s a case; the
    sampling code is the same in both modes, what graph mode adds is
    compilation and its caching, exercised by the listed cases and by the
    stale-graph tests at the end)."""
    assert set(graph) <= set(cases)
    return ([pytest.param("pynative", c, id=f"pynative-{c}") for c in cases]
            + [pytest.param("graph", c, id=f"graph-{c}") for c in graph])


# --------------------------------------------------------------------------
# The reference itself
# --------------------------------------------------------------------------

@pytest.mark.parametrize("m", [2, 3, 5, 8])
@pytest.mark.parametrize("n", [2, 3, 4, 7, 11])
def test_reference_kernel_matches_torch_bicubic(m, n, rng):
    lam = rng.standard_normal(m)
    expected = torch_bicubic(lam[None], 1, n)[0]
    np.testing.assert_allclose(ref_kernel(uniform_nodes(n), m) @ lam, expected, rtol=1e-12, atol=1e-12)


def test_reference_kernel_is_identity_at_control_nodes():
    for m in (1, 2, 3, 6):
        np.testing.assert_allclose(ref_kernel(uniform_nodes(m), m), np.eye(m), atol=1e-15)


# --------------------------------------------------------------------------
# Exactness at full size
# --------------------------------------------------------------------------

# name: (nn.Conv2d kwargs, partitions, input spatial size)
CONV_CASES = {
    "k3_pad1_bias": (dict(cin=5, cout=6, k=3, pad_mode="pad", padding=1, has_bias=True), {}, 8),
    "k3_stride2_pad0_nobias": (dict(cin=5, cout=6, k=3, stride=2, pad_mode="pad", padding=0,
                                    has_bias=False), {}, 9),
    "k3_pad_1x2": (dict(cin=4, cout=7, k=3, pad_mode="pad", padding=(1, 1, 2, 2), has_bias=True), {}, 8),
    "k3_pad_asymmetric": (dict(cin=4, cout=5, k=3, pad_mode="pad", padding=(0, 1, 2, 0),
                               has_bias=True), {}, 8),
    "k3_dilation2": (dict(cin=5, cout=4, k=3, dilation=2, pad_mode="pad", padding=2, has_bias=True), {}, 9),
    "k3_stride2_dilation2_pad1": (dict(cin=3, cout=4, k=3, stride=2, dilation=2, pad_mode="pad",
                                       padding=1, has_bias=False), {}, 10),
    "k1_bias": (dict(cin=6, cout=3, k=1, pad_mode="pad", padding=0, has_bias=True), {}, 7),
    "k3x1_rect": (dict(cin=4, cout=5, k=(3, 1), pad_mode="pad", padding=(1, 1, 0, 0), has_bias=True), {}, 7),
    "same_stride1": (dict(cin=5, cout=6, k=3, pad_mode="same", has_bias=True), {}, 8),
    "same_stride2": (dict(cin=5, cout=6, k=3, stride=2, pad_mode="same", has_bias=True), {}, 8),
    "valid": (dict(cin=5, cout=6, k=3, pad_mode="valid", has_bias=True), {}, 8),
    "depthwise_k3_pad1": (dict(cin=6, cout=6, k=3, group=6, pad_mode="pad", padding=1, has_bias=True), {}, 8),
    "depthwise_same_stride2": (dict(cin=6, cout=6, k=3, stride=2, group=6, pad_mode="same",
                                    has_bias=False), {}, 9),
    "depthwise_discrete": (dict(cin=4, cout=4, k=3, group=4, pad_mode="pad", padding=1, has_bias=True),
                           dict(in_partition=None, out_partition=None), 6),
    "grouped_discrete": (dict(cin=6, cout=4, k=3, group=2, pad_mode="pad", padding=1, has_bias=True),
                         dict(in_partition=None, out_partition=None), 6),
    "in_discrete": (dict(cin=3, cout=6, k=3, pad_mode="pad", padding=1, has_bias=True),
                    dict(in_partition=None), 6),
    "out_discrete": (dict(cin=6, cout=3, k=3, pad_mode="pad", padding=1, has_bias=True),
                     dict(out_partition=None), 6),
    "one_in_channel": (dict(cin=1, cout=4, k=3, pad_mode="pad", padding=1, has_bias=True), {}, 6),
}


def make_conv(spec, rng):
    """A random nn.Conv2d and its weight/bias as numpy."""
    spec = dict(spec)
    cin, cout, k = spec.pop("cin"), spec.pop("cout"), spec.pop("k")
    kh, kw = (k, k) if isinstance(k, int) else k
    group = spec.get("group", 1)
    w = rng.standard_normal((cout, cin // group, kh, kw)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if spec.get("has_bias") else None
    conv = nn.Conv2d(cin, cout, (kh, kw), weight_init=Tensor(w),
                     bias_init=Tensor(b) if b is not None else "zeros", **spec)
    return conv, w, b


def conv_ref_kwargs(conv):
    """The geometry of a MindSpore conv as keyword arguments of ref_conv."""
    pad = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 4
    return dict(stride=tuple(conv.stride), padding=pad, dilation=tuple(conv.dilation),
                same=conv.pad_mode == "same")


@pytest.mark.parametrize("mode,case", with_modes(list(CONV_CASES), graph=[
    "k3_pad1_bias", "k3_pad_asymmetric", "k3_stride2_dilation2_pad1", "same_stride2", "depthwise_same_stride2",
    "grouped_discrete"]), indirect=["mode"])
def test_conv_from_discrete_is_exact(mode, case, rng):
    spec, parts, hw = CONV_CASES[case]
    conv, w, b = make_conv(spec, rng)
    x = f32(rng.standard_normal((2, conv.in_channels, hw, hw)))
    expected = conv(x).asnumpy()
    layer = IntegralConv2d.from_discrete(conv, **parts)
    assert_close(layer(x).asnumpy(), expected)
    # The sampled weight is the discrete weight, and the control values are
    # that weight divided by the full-size trapezoid weights (if integrated).
    assert_close(layer.numpy_weight(), w, rel=1e-6, what="sampled weight")
    integrated = layer.in_axis is not None
    assert_close(layer.weight.asnumpy(), ref_control(w, integrated), rel=1e-6, what="control weight")
    # The same through the float64 torch reference.
    assert_close(layer(x).asnumpy(), ref_conv(x.asnumpy(), w, b, groups=conv.group, **conv_ref_kwargs(conv)),
                 what="vs torch float64")
    # discretize() at full size gives back the discrete layer.
    assert_close(layer.discretize()(x).asnumpy(), expected, what="discretize()")


DENSE_CASES = {
    "7to5_bias": (7, 5, True, {}),
    "7to5_nobias": (7, 5, False, {}),
    "one_input": (1, 4, True, {}),
    "one_output": (6, 1, True, {}),
    "in_discrete": (6, 4, True, dict(in_partition=None)),
    "out_discrete": (6, 4, True, dict(out_partition=None)),
}


@pytest.mark.parametrize("mode,case", with_modes(list(DENSE_CASES), graph=["7to5_bias"]), indirect=["mode"])
def test_dense_from_discrete_is_exact(mode, case, rng):
    cin, cout, has_bias, parts = DENSE_CASES[case]
    w = rng.standard_normal((cout, cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    dense = nn.Dense(cin, cout, weight_init=Tensor(w), bias_init=Tensor(b), has_bias=has_bias)
    x = f32(rng.standard_normal((3, cin)))
    expected = dense(x).asnumpy()
    layer = IntegralDense.from_discrete(dense, **parts)
    assert_close(layer(x).asnumpy(), expected)
    assert_close(layer.weight.asnumpy(), ref_control(w, "in_partition" not in parts), rel=1e-6,
                 what="control weight")
    torch_out = x.asnumpy().astype(np.float64) @ w.T.astype(np.float64) + (b if has_bias else 0)
    assert_close(layer(x).asnumpy(), torch_out, what="vs float64")
    assert_close(layer.discretize()(x).asnumpy(), expected, what="discretize()")


SEPARABLE_CASES = {
    "pad1_bias": (1, "pad", 1, True),
    "same_stride2_nobias": (2, "same", 0, False),
    "asymmetric_pad": (1, "pad", (0, 2, 1, 1), True),
}


@pytest.mark.parametrize("mode,case", with_modes(list(SEPARABLE_CASES), graph=["pad1_bias"]), indirect=["mode"])
def test_separable_from_discrete_is_exact(mode, case, rng):
    stride, pad_mode, padding, has_bias = SEPARABLE_CASES[case]
    c, o = 6, 5
    dw = nn.Conv2d(c, c, 3, stride=stride, pad_mode=pad_mode, padding=padding, group=c, has_bias=has_bias,
                   weight_init=f32(rng.standard_normal((c, 1, 3, 3))),
                   bias_init=f32(rng.standard_normal(c)) if has_bias else "zeros")
    pw = nn.Conv2d(c, o, 1, has_bias=has_bias, weight_init=f32(rng.standard_normal((o, c, 1, 1))),
                   bias_init=f32(rng.standard_normal(o)) if has_bias else "zeros")
    x = f32(rng.standard_normal((2, c, 9, 9)))
    expected = pw(dw(x)).asnumpy()
    layer = SeparableIntegralConv2d.from_discrete(dw, pw)
    assert_close(layer(x).asnumpy(), expected)
    # One channel group: the depthwise conv and the pointwise input share it.
    assert layer.depthwise.partitions["out"] is layer.pointwise.partitions["in"]
    assert_close(layer.discretize()(x).asnumpy(), expected, what="discretize()")


def test_from_discrete_is_exact_with_simpson(rng):
    """Any rule with positive weights at uniform nodes converts exactly."""
    conv, w, b = make_conv(CONV_CASES["k3_pad1_bias"][0], rng)
    dense = nn.Dense(6, 3, weight_init=f32(rng.standard_normal((3, 6))), bias_init=f32(rng.standard_normal(3)))
    x = f32(rng.standard_normal((2, 5, 6, 6)))
    assert_close(IntegralConv2d.from_discrete(conv, quadrature="simpson")(x).asnumpy(), conv(x).asnumpy())
    x = f32(rng.standard_normal((2, 6)))
    assert_close(IntegralDense.from_discrete(dense, quadrature="simpson")(x).asnumpy(), dense(x).asnumpy())


@pytest.fixture
def conv_backend_restored():
    from inn_ms import functional
    saved = getattr(functional, "_backend", "auto")
    yield functional.set_conv_backend
    functional.set_conv_backend(saved)


@pytest.mark.parametrize("backend", ["native", "matmul"])
@pytest.mark.parametrize("case", ["k3_pad_asymmetric", "same_stride2", "k3_stride2_dilation2_pad1",
                                  "depthwise_same_stride2", "grouped_discrete"])
def test_conv_backends_exact_and_resampled(conv_backend_restored, backend, case, rng):
    """Both convolution backends (MindSpore's kernel, unfold + matmul) at full
    size and after a resize, against the float64 torch reference."""
    conv_backend_restored(backend)
    spec, parts, hw = CONV_CASES[case]
    conv, w, b = make_conv(spec, rng)
    layer = IntegralConv2d.from_discrete(conv, **parts)
    assert layer.conv_backend == backend
    x = f32(rng.standard_normal((2, conv.in_channels, hw, hw)))
    kw = conv_ref_kwargs(conv)
    assert_close(layer(x).asnumpy(), ref_conv(x.asnumpy(), w, b, groups=conv.group, **kw), what="full size")
    if not layer.partitions:
        return
    n = 3
    for p in layer.partitions.values():
        p.resize(n)
    depthwise = layer.in_axis is None
    wref = ref_sample(w, n, None if depthwise else n)
    bref = None if b is None else ref_sample_bias(b, n)
    x = f32(rng.standard_normal((2, n, hw, hw)))
    assert_close(layer(x).asnumpy(), ref_conv(x.asnumpy(), wref, bref, groups=n if depthwise else 1, **kw),
                 what="resized")


# --------------------------------------------------------------------------
# Parity with real PyTorch convolutions
# --------------------------------------------------------------------------

TORCH_CASES = {
    "k3_pad1": dict(cin=4, cout=6, k=3, stride=1, padding=(1, 1), dilation=(1, 1), groups=1, bias=True),
    "k3_stride2_pad0": dict(cin=4, cout=6, k=3, stride=2, padding=(0, 0), dilation=(1, 1), groups=1, bias=False),
    "k3_pad_1x2": dict(cin=5, cout=3, k=3, stride=1, padding=(1, 2), dilation=(1, 1), groups=1, bias=True),
    "k3_dil2": dict(cin=3, cout=4, k=3, stride=1, padding=(2, 2), dilation=(2, 2), groups=1, bias=True),
    "k3_stride2_dil_1x2": dict(cin=3, cout=4, k=3, stride=2, padding=(2, 1), dilation=(1, 2), groups=1,
                               bias=True),
    "k1": dict(cin=6, cout=4, k=1, stride=1, padding=(0, 0), dilation=(1, 1), groups=1, bias=True),
    "depthwise": dict(cin=5, cout=5, k=3, stride=1, padding=(1, 1), dilation=(1, 1), groups=5, bias=True),
}


def _torch_conv(spec, rng):
    tconv = torch.nn.Conv2d(spec["cin"], spec["cout"], spec["k"], stride=spec["stride"],
                            padding=spec["padding"], dilation=spec["dilation"], groups=spec["groups"],
                            bias=spec["bias"])
    with torch.no_grad():
        tconv.weight.copy_(torch.from_numpy(rng.standard_normal(tuple(tconv.weight.shape)).astype(np.float32)))
        if spec["bias"]:
            tconv.bias.copy_(torch.from_numpy(rng.standard_normal(spec["cout"]).astype(np.float32)))
    w = tconv.weight.detach().numpy().copy()
    b = tconv.bias.detach().numpy().copy() if spec["bias"] else None
    return tconv, w, b


@pytest.mark.parametrize("mode,case", with_modes(list(TORCH_CASES), graph=["k3_stride2_dil_1x2", "depthwise"]),
                         indirect=["mode"])
def test_conv_matches_pytorch(mode, case, rng):
    spec = TORCH_CASES[case]
    tconv, w, b = _torch_conv(spec, rng)
    x = rng.standard_normal((2, spec["cin"], 9, 9)).astype(np.float32)
    with torch.no_grad():
        expected = tconv(torch.from_numpy(x)).numpy()
    ph, pw = spec["padding"]
    ms_conv = nn.Conv2d(spec["cin"], spec["cout"], spec["k"], stride=spec["stride"], pad_mode="pad",
                        padding=(ph, ph, pw, pw), dilation=spec["dilation"], group=spec["groups"],
                        has_bias=spec["bias"], weight_init=Tensor(w),
                        bias_init=Tensor(b) if b is not None else "zeros")
    layer = IntegralConv2d.from_discrete(ms_conv)
    assert_close(layer(f32(x)).asnumpy(), expected, what="from_discrete vs torch")
    # Built directly with PyTorch-style (ph, pw) padding and the control values.
    depthwise = spec["groups"] > 1
    direct = IntegralConv2d(spec["cin"], spec["cout"], spec["k"], stride=spec["stride"], padding=spec["padding"],
                            dilation=spec["dilation"], groups=spec["groups"], has_bias=spec["bias"],
                            weight=ref_control(w, not depthwise).astype(np.float32), bias=b)
    assert_close(direct(f32(x)).asnumpy(), expected, what="constructor vs torch")


def test_dense_matches_pytorch(rng):
    lin = torch.nn.Linear(7, 4)
    x = rng.standard_normal((3, 7)).astype(np.float32)
    with torch.no_grad():
        expected = lin(torch.from_numpy(x)).numpy()
    w, b = lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()
    layer = IntegralDense.from_discrete(nn.Dense(7, 4, weight_init=Tensor(w), bias_init=Tensor(b)))
    assert_close(layer(f32(x)).asnumpy(), expected)


def test_resampled_conv_matches_pytorch_interpolate(rng):
    """At other sizes the weight is PyTorch's bicubic (align_corners) resize of
    the control tensor, times the trapezoid weights; run with torch's conv."""
    spec = TORCH_CASES["k3_pad1"]
    tconv, w, b = _torch_conv(spec, rng)
    ms_conv = nn.Conv2d(4, 6, 3, pad_mode="pad", padding=1, has_bias=True, weight_init=Tensor(w),
                        bias_init=Tensor(b))
    layer = IntegralConv2d.from_discrete(ms_conv)
    for n_out, n_in in [(3, 2), (5, 3), (2, 4)]:
        layer.partitions["out"].resize(n_out)
        layer.partitions["in"].resize(n_in)
        lam = torch.from_numpy(ref_control(w)).permute(2, 3, 0, 1).reshape(1, 9, 6, 4)
        sampled = F.interpolate(lam, size=(n_out, n_in), mode="bicubic", align_corners=True)
        sampled = sampled.reshape(3, 3, n_out, n_in).permute(2, 3, 0, 1)
        q = torch.from_numpy(ref_trapezoid(uniform_nodes(n_in)) * 4).view(1, -1, 1, 1)  # × full size
        bias = F.interpolate(torch.from_numpy(b.astype(np.float64)).view(1, 1, 1, 6), size=(1, n_out),
                             mode="bicubic", align_corners=True).view(-1)
        x = rng.standard_normal((2, n_in, 7, 7))
        expected = F.conv2d(torch.from_numpy(x), sampled * q, bias, padding=1).numpy()
        assert_close(layer(f32(x)).asnumpy(), expected, what=f"sizes ({n_out}, {n_in})")


# --------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------

RESAMPLE_CONV = {
    "k3_pad1": ("k3_pad1_bias", [(4, 3), (1, 1), (2, 5), (6, 2), (3, 4)]),
    "stride2_nobias": ("k3_stride2_pad0_nobias", [(3, 3), (6, 4)]),
    "pad_1x2": ("k3_pad_1x2", [(5, 2)]),
    "asym_pad": ("k3_pad_asymmetric", [(3, 3)]),
    "dilation2": ("k3_dilation2", [(2, 3)]),
    "k1": ("k1_bias", [(2, 4)]),
    "same_stride2": ("same_stride2", [(4, 3)]),
    "in_discrete": ("in_discrete", [(4, None)]),
    "out_discrete": ("out_discrete", [(None, 4)]),
}


@pytest.mark.parametrize("mode,case", with_modes(list(RESAMPLE_CONV), graph=["asym_pad", "same_stride2"]),
                         indirect=["mode"])
def test_conv_resampled_matches_discretize_and_reference(mode, case, rng):
    base, sizes = RESAMPLE_CONV[case]
    spec, parts, hw = CONV_CASES[base]
    conv, w, b = make_conv(spec, rng)
    layer = IntegralConv2d.from_discrete(conv, **parts)
    for n_out, n_in in sizes:
        if n_out is not None:
            layer.partitions["out"].resize(n_out)
        if n_in is not None:
            layer.partitions["in"].resize(n_in)
        cin = conv.in_channels if n_in is None else n_in
        x = f32(rng.standard_normal((2, cin, hw, hw)))
        out = layer(x).asnumpy()
        assert out.shape[1] == (conv.out_channels if n_out is None else n_out)
        wref = ref_sample(w, n_out, n_in)
        bref = None if b is None else ref_sample_bias(b, n_out)
        assert_close(layer.numpy_weight(), wref, rel=1e-6, what=f"weight at {n_out, n_in}")
        assert_close(out, ref_conv(x.asnumpy(), wref, bref, **conv_ref_kwargs(conv)), what=f"sizes {n_out, n_in}")
        disc = layer.discretize()
        assert isinstance(disc, nn.Conv2d)
        assert (disc.in_channels, disc.out_channels) == (cin, out.shape[1])
        assert_close(disc(x).asnumpy(), out, what=f"discretize() at {n_out, n_in}")


@pytest.mark.parametrize("mode,base", with_modes(["depthwise_k3_pad1", "depthwise_same_stride2"],
                                                 graph=["depthwise_same_stride2"]), indirect=["mode"])
def test_depthwise_resampled(mode, base, rng):
    spec, parts, hw = CONV_CASES[base]
    conv, w, b = make_conv(spec, rng)
    layer = IntegralConv2d.from_discrete(conv)
    assert set(layer.partitions) == {"out"}  # one group: in = out
    for n in (4, 1, 2, 5):
        layer.partitions["out"].resize(n)
        x = f32(rng.standard_normal((2, n, hw, hw)))
        out = layer(x).asnumpy()
        # Nothing is integrated: each channel sees its own input channel.
        wref = ref_sample(w, n, None)
        bref = None if b is None else ref_sample_bias(b, n)
        expected = ref_conv(x.asnumpy(), wref, bref, groups=n, **conv_ref_kwargs(conv))
        assert_close(out, expected, what=f"size {n}")
        assert_close(layer.discretize()(x).asnumpy(), out, what=f"discretize() at {n}")


@pytest.mark.parametrize("has_bias", [True, False])
def test_dense_resampled(has_bias, rng):
    w = rng.standard_normal((6, 9)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    layer = IntegralDense.from_discrete(nn.Dense(9, 6, weight_init=Tensor(w), bias_init=Tensor(b),
                                                 has_bias=has_bias))
    for n_out, n_in in [(3, 5), (1, 1), (6, 2), (2, 9), (4, 4)]:
        layer.partitions["out"].resize(n_out)
        layer.partitions["in"].resize(n_in)
        x = rng.standard_normal((3, n_in))
        expected = x @ ref_sample(w, n_out, n_in).T + (ref_sample_bias(b, n_out) if has_bias else 0)
        out = layer(f32(x)).asnumpy()
        assert_close(out, expected, what=f"sizes {n_out, n_in}")
        disc = layer.discretize()
        assert isinstance(disc, nn.Dense) and (disc.in_channels, disc.out_channels) == (n_in, n_out)
        assert_close(disc(f32(x)).asnumpy(), out, what=f"discretize() at {n_out, n_in}")


def test_dense_composite_partition_resampled(rng):
    """Concatenated groups: the input axis is block-diagonal, each block its own [0, 1]."""
    w = rng.standard_normal((3, 9)).astype(np.float32)
    a, c = UniformPartition(4, name="a"), UniformPartition(5, name="c")
    layer = IntegralDense.from_discrete(nn.Dense(9, 3, weight_init=Tensor(w), has_bias=False),
                                        in_partition=CompositePartition([a, c]), out_partition=None)
    x9 = f32(rng.standard_normal((2, 9)))
    assert_close(layer(x9).asnumpy(), x9.asnumpy() @ w.T, what="full size")
    for na, nc in [(2, 5), (4, 3), (1, 2)]:
        a.resize(na)
        c.resize(nc)
        wa = ref_sample(w[:, :4], None, na)
        wc = ref_sample(w[:, 4:], None, nc)
        x = rng.standard_normal((2, na + nc))
        out = layer(f32(x)).asnumpy()
        assert_close(out, x @ np.concatenate([wa, wc], axis=1).T, what=f"blocks {na, nc}")
        assert_close(layer.discretize()(f32(x)).asnumpy(), out, what="discretize()")


def test_separable_resampled(rng):
    c, o = 6, 5
    wd = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    bd = rng.standard_normal(c).astype(np.float32)
    wp = rng.standard_normal((o, c, 1, 1)).astype(np.float32)
    bp = rng.standard_normal(o).astype(np.float32)
    dw = nn.Conv2d(c, c, 3, pad_mode="pad", padding=1, group=c, has_bias=True, weight_init=Tensor(wd),
                   bias_init=Tensor(bd))
    pw = nn.Conv2d(c, o, 1, has_bias=True, weight_init=Tensor(wp), bias_init=Tensor(bp))
    layer = SeparableIntegralConv2d.from_discrete(dw, pw)
    p_in, p_out = layer.depthwise.partitions["out"], layer.pointwise.partitions["out"]
    for n_in, n_out in [(3, 2), (6, 1), (2, 5), (4, 4)]:
        p_in.resize(n_in)
        p_out.resize(n_out)
        x = rng.standard_normal((2, n_in, 7, 7))
        h = ref_conv(x, ref_sample(wd, n_in, None), ref_sample_bias(bd, n_in), padding=(1, 1, 1, 1), groups=n_in)
        expected = ref_conv(h, ref_sample(wp, n_out, n_in), ref_sample_bias(bp, n_out))
        out = layer(f32(x)).asnumpy()
        assert_close(out, expected, what=f"sizes {n_in, n_out}")
        assert_close(layer.discretize()(f32(x)).asnumpy(), out, what="discretize()")


def test_shared_partition_between_layers_pynative(rng):
    """Two layers in a plain user Cell share the group between them (PyNative:
    every nested call re-reads the sizes)."""
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32)
    c1 = nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1, has_bias=True, weight_init=Tensor(w1),
                   bias_init=Tensor(b1))
    c2 = nn.Conv2d(8, 4, 3, pad_mode="pad", padding=1, weight_init=Tensor(w2))
    group = UniformPartition(8, name="group")

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = IntegralConv2d.from_discrete(c1, in_partition=None, out_partition=group)
            self.b = IntegralConv2d.from_discrete(c2, in_partition=group, out_partition=None)

        def construct(self, x):
            return self.b(ops.relu(self.a(x)))

    net = Net()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    pad = (1, 1, 1, 1)
    assert_close(net(f32(x)).asnumpy(), c2(ops.relu(c1(f32(x)))).asnumpy(), what="full size")
    for n in (5, 2, 8, 3):
        group.resize(n)
        h = np.maximum(ref_conv(x, ref_sample(w1, n, None), ref_sample_bias(b1, n), padding=pad), 0)
        expected = ref_conv(h, ref_sample(w2, None, n), None, padding=pad)
        out = net(f32(x)).asnumpy()
        assert_close(out, expected, what=f"group size {n}")
        disc = net.b.discretize()(ops.relu(net.a.discretize()(f32(x)))).asnumpy()
        assert_close(disc, out, what=f"discretize() at {n}")


# --------------------------------------------------------------------------
# The integral approximation: a smaller partition keeps the output's magnitude
# --------------------------------------------------------------------------
#
# Discrete weights w_i = g(x_i) / (N - 1) and input features f(x_i), with g
# and f smooth in the channel coordinate x. The full-size output
# Σ_i w_i f_i = h Σ_i g_i f_i is a Riemann sum of ∫ g f (h = 1/(N-1)).
#
# Exactness at full size divides the discrete weights by the trapezoid
# weights, so the two edge control values are doubled; at n points the layer
# then computes, to interpolation accuracy, (N-1)/(n-1) · Σ_j w(x'_j) f(x'_j)
# (DESIGN §2: "weights grow by about (n-1)/(n'-1)"): an equal-weight sum, a
# first-order approximation of the same integral. So the deviation from the
# full output is O(1/(n-1)) (the edge terms), not the trapezoid's O(1/n²);
# dropping channels without rescaling would instead shrink the output by n/N.

def _smooth_weight(x_out, x_in):
    return np.cos(0.5 * np.pi * x_in[None, :] * (1 + x_out[:, None])) + 0.5 * x_out[:, None] + 0.3


def _smooth_features(x_in):
    return 1.0 + 0.5 * np.sin(np.pi * x_in) + 0.3 * x_in


def test_dense_magnitude_preserved_at_smaller_sizes():
    n_full, o_full = 65, 9
    x_in, x_out = uniform_nodes(n_full), uniform_nodes(o_full)
    w = (_smooth_weight(x_out, x_in) / (n_full - 1)).astype(np.float32)
    layer = IntegralDense.from_discrete(nn.Dense(n_full, o_full, weight_init=Tensor(w), has_bias=False))
    full = layer(f32(_smooth_features(x_in)[None])).asnumpy()[0]
    scale = np.abs(full).max()
    errors = []
    for n in (33, 24, 17, 12, 9, 5):
        layer.partitions["in"].resize(n)
        x = uniform_nodes(n)
        out = layer(f32(_smooth_features(x)[None])).asnumpy()[0]
        # The magnitude rule, evaluated on the smooth weight function itself.
        predicted = (n_full - 1) / (n - 1) * (_smooth_weight(x_out, x) / (n_full - 1)) @ _smooth_features(x)
        assert_close(out, predicted, rel=1e-3, what=f"(N-1)/(n-1) rule at n={n}")
        err = np.abs(out - full).max() / scale
        assert err < 0.6 / (n - 1), f"n_in={n}: relative deviation {err:.3g} from the full output"
        errors.append(err)
        # For scale: channel dropping without the quadrature.
        naive = w[:, np.round(x * (n_full - 1)).astype(int)] @ _smooth_features(x)
        assert np.abs(naive - full).max() / scale > 0.4
    assert errors == sorted(errors), f"deviation should shrink as n grows: {errors}"
    # Output axis: the 5 output nodes coincide with every other full node.
    layer.partitions["in"].resize(n_full)
    layer.partitions["out"].resize(5)
    out = layer(f32(_smooth_features(x_in)[None])).asnumpy()[0]
    assert_close(out, full[::2], rel=1e-5, what="out axis at coinciding nodes")


def test_conv_magnitude_preserved_at_smaller_sizes(rng):
    n_full = 33
    x_in, x_out = uniform_nodes(n_full), uniform_nodes(4)
    spatial = rng.standard_normal((3, 3))
    w = (_smooth_weight(x_out, x_in)[:, :, None, None] * spatial / (n_full - 1)).astype(np.float32)
    conv = nn.Conv2d(n_full, 4, 3, pad_mode="pad", padding=1, weight_init=Tensor(w))
    layer = IntegralConv2d.from_discrete(conv, out_partition=None)
    pattern = rng.standard_normal((2, 1, 6, 6))

    def features(n):
        return (_smooth_features(uniform_nodes(n))[None, :, None, None] * pattern).astype(np.float32)

    full = layer(Tensor(features(n_full))).asnumpy()
    for n in (17, 9, 5):
        layer.partitions["in"].resize(n)
        out = layer(Tensor(features(n))).asnumpy()
        err = np.abs(out - full).max() / np.abs(full).max()
        assert err < 0.6 / (n - 1), f"n_in={n}: relative deviation {err:.3g}"


# --------------------------------------------------------------------------
# Graph mode: a resize must never run a stale compiled graph
# --------------------------------------------------------------------------

def test_graph_mode_resize_recompiles_and_reuses_cache(rng):
    ms.set_context(mode=ms.GRAPH_MODE)
    conv, w, b = make_conv(CONV_CASES["k3_pad1_bias"][0], rng)   # 5 -> 6 channels
    layer = IntegralConv2d.from_discrete(conv)
    x5 = f32(rng.standard_normal((2, 5, 7, 7)))
    x3 = f32(rng.standard_normal((2, 3, 7, 7)))
    first = layer(x5).asnumpy()
    assert_close(first, conv(x5).asnumpy(), what="full size")

    p_out, p_in = layer.partitions["out"], layer.partitions["in"]
    p_out.resize(4)
    y = layer(x5).asnumpy()
    assert y.shape == (2, 4, 7, 7)
    assert_close(y, layer.discretize()(x5).asnumpy(), what="out resized")
    assert_close(y, ref_conv(x5.asnumpy(), ref_sample(w, 4, 5), ref_sample_bias(b, 4),
                             padding=(1, 1, 1, 1)), what="out resized vs reference")
    out4 = y

    p_in.resize(3)
    y = layer(x3).asnumpy()
    assert y.shape == (2, 4, 7, 7)
    assert_close(y, ref_conv(x3.asnumpy(), ref_sample(w, 4, 3), ref_sample_bias(b, 4), padding=(1, 1, 1, 1)),
                 what="both resized")

    # Same output shape as the previous call, different input partition:
    p_in.resize(5)
    p_out.resize(4)
    np.testing.assert_allclose(layer(x5).asnumpy(), out4, rtol=1e-6, atol=1e-6)
    # Back to full size: the first compiled graph, same values.
    p_out.resize(6)
    np.testing.assert_allclose(layer(x5).asnumpy(), first, rtol=1e-6, atol=1e-6)
    # Parameters are not baked into the cached graphs.
    layer.weight.set_data(Tensor(layer.weight.asnumpy() * 2))
    layer.bias.set_data(Tensor(layer.bias.asnumpy() * 2))
    np.testing.assert_allclose(layer(x5).asnumpy(), 2 * first, rtol=1e-5, atol=1e-5)


def test_graph_mode_composite_blocks_with_same_total(rng):
    """Blocks (4, 3) and (3, 4) have the same total size but different
    sampling matrices: the second must not reuse the first one's graph."""
    ms.set_context(mode=ms.GRAPH_MODE)
    w = rng.standard_normal((3, 8)).astype(np.float32)
    a, c = UniformPartition(4, name="a"), UniformPartition(4, name="c")
    layer = IntegralDense.from_discrete(nn.Dense(8, 3, weight_init=Tensor(w), has_bias=False),
                                        in_partition=CompositePartition([a, c]), out_partition=None)
    x = rng.standard_normal((2, 7))
    for na, nc in [(4, 3), (3, 4), (4, 3)]:
        a.resize(na)
        c.resize(nc)
        wref = np.concatenate([ref_sample(w[:, :4], None, na), ref_sample(w[:, 4:], None, nc)], axis=1)
        assert_close(layer(f32(x)).asnumpy(), x @ wref.T, what=f"blocks {na, nc}")


def test_graph_mode_dense_and_separable_resize(rng):
    ms.set_context(mode=ms.GRAPH_MODE)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    dense = IntegralDense.from_discrete(nn.Dense(6, 4, weight_init=Tensor(w), has_bias=False))
    x6 = rng.standard_normal((2, 6))
    first = dense(f32(x6)).asnumpy()
    dense.partitions["in"].resize(3)
    x3 = rng.standard_normal((2, 3))
    assert_close(dense(f32(x3)).asnumpy(), x3 @ ref_sample(w, 4, 3).T)
    dense.partitions["in"].resize(6)
    np.testing.assert_allclose(dense(f32(x6)).asnumpy(), first, rtol=1e-6, atol=1e-6)

    c = 5
    dw = nn.Conv2d(c, c, 3, pad_mode="pad", padding=1, group=c, weight_init=f32(rng.standard_normal((c, 1, 3, 3))))
    pw = nn.Conv2d(c, 4, 1, weight_init=f32(rng.standard_normal((4, c, 1, 1))))
    sep = SeparableIntegralConv2d.from_discrete(dw, pw)
    x = f32(rng.standard_normal((2, c, 6, 6)))
    first = sep(x).asnumpy()
    p = sep.depthwise.partitions["out"]
    for n in (3, 2):
        p.resize(n)
        xn = f32(rng.standard_normal((2, n, 6, 6)))
        assert_close(sep(xn).asnumpy(), sep.discretize()(xn).asnumpy(), what=f"separable at {n}")
    p.resize(c)
    np.testing.assert_allclose(sep(x).asnumpy(), first, rtol=1e-6, atol=1e-6)


def test_graph_mode_shared_partition_in_keyed_user_cell(rng):
    """A user Cell holding two layers that share a group recompiles in graph
    mode when it is itself size-keyed (the documented way: the top-level Cell
    passes the key; nested layers inside its graph cannot)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 6, 1, 1)).astype(np.float32)
    c1 = nn.Conv2d(3, 6, 3, pad_mode="pad", padding=1, weight_init=Tensor(w1))
    c2 = nn.Conv2d(6, 4, 1, weight_init=Tensor(w2))
    group = UniformPartition(6, name="group")

    class Net(SizeKeyed, nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = IntegralConv2d.from_discrete(c1, in_partition=None, out_partition=group)
            self.b = IntegralConv2d.from_discrete(c2, in_partition=group, out_partition=None)

        def size_key(self):
            return self.a.size_key() + self.b.size_key()

        def construct(self, x, size_key=None):
            return self.b(ops.relu(self.a(x)))

    net = Net()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    first = net(f32(x)).asnumpy()
    assert_close(first, c2(ops.relu(c1(f32(x)))).asnumpy(), what="full size")
    for n in (4, 2):
        group.resize(n)
        h = np.maximum(ref_conv(x, ref_sample(w1, n, None), None, padding=(1, 1, 1, 1)), 0)
        expected = ref_conv(h, ref_sample(w2, None, n), None)
        out = net(f32(x)).asnumpy()
        assert out.shape == first.shape  # same shape: only the values tell a stale graph
        assert_close(out, expected, what=f"group size {n}")
    group.resize(6)
    np.testing.assert_allclose(net(f32(x)).asnumpy(), first, rtol=1e-6, atol=1e-6)
