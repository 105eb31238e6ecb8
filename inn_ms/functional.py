"""Convolution as unfold + matmul, and the choice of convolution backend.

Measured on the 2-core CPU machines of this project (MindSpore 2.10): the
CPU ``Conv2D`` kernel reaches about 0.5 GFLOP/s (a 64×32×28×28 3×3
convolution takes ~1 s forward, ~1.3 s for its gradient; PyTorch: 12 ms),
while ``MatMul`` runs at tens of GFLOP/s. The patches gathered (im2col) and one
2-D matmul compute the same convolution ~25× faster forward and ~6× faster
with gradients. On Ascend and GPU the native kernel is the right choice.

The process-wide default (:func:`set_conv_backend`) is read when a layer is
built and stored in its ``conv_backend`` attribute: set it before building
models (graph mode bakes the attribute into the compiled graph).
"""
import functools

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

_BACKENDS = ("auto", "native", "matmul")
_backend = "auto"


def set_conv_backend(name):
    """``"native"`` (``ops.conv2d``), ``"matmul"`` (unfold + matmul) or
    ``"auto"`` (matmul on CPU, native elsewhere)."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"unknown convolution backend {name!r}; choose one of {_BACKENDS}")
    _backend = name


def conv_backend():
    """The backend in effect: ``"native"`` or ``"matmul"``."""
    if _backend != "auto":
        return _backend
    target = ms.get_context("device_target")
    return "matmul" if target == "CPU" else "native"


def same_padding(size, kernel, stride, dilation):
    """``(before, after)`` padding of one spatial axis for ``pad_mode='same'``
    (MindSpore/TensorFlow convention: the extra pixel goes after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def explicit_padding(x, kernel, stride, pad_mode, padding, dilation):
    """``(top, bottom, left, right)`` that ``pad_mode``/``padding`` (as in
    ``nn.Conv2d``, ``padding`` a 4-tuple for ``'pad'``) mean for input ``x``."""
    if pad_mode == "same":
        t, b = same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
        lft, r = same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
        return (t, b, lft, r)
    if pad_mode == "valid":
        return (0, 0, 0, 0)
    return tuple(padding)


def unfold(x, kernel, stride, padding, dilation):
    """The patches a convolution reads: ``(n, c·kh·kw, L)`` for ``L`` output
    positions (``padding`` is ``(top, bottom, left, right)``), and the
    output size ``(oh, ow)``."""
    n, c, h, w = x.shape
    kh, kw = kernel
    top, bottom, left, right = padding
    if top != bottom or left != right:
        x = ops.pad(x, (left, right, top, bottom))
        h, w = x.shape[2], x.shape[3]
        top = bottom = left = right = 0
    oh, ow = output_size(h, w, kernel, stride, (top, top, left, left), dilation)
    return ops.unfold(x, (kh, kw), dilation, (top, left), stride), (oh, ow)


def output_size(h, w, kernel, stride, padding, dilation):
    """``(oh, ow)`` of a convolution over ``h × w`` (``padding`` is ``(top,
    bottom, left, right)``)."""
    kh, kw = kernel
    top, bottom, left, right = padding
    return ((h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
            (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


@functools.lru_cache(maxsize=512)
def _patch_rows(h, w, kernel, stride, padding, dilation):
    kh, kw = kernel
    top, _, left, _ = padding
    oh, ow = output_size(h, w, kernel, stride, padding, dilation)
    rows = (np.arange(oh) * stride[0] - top)[:, None, None, None] + (np.arange(kh) * dilation[0])[None, None, :, None]
    cols = (np.arange(ow) * stride[1] - left)[None, :, None, None] + (np.arange(kw) * dilation[1])[None, None, None, :]
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).reshape(-1)
    index = np.where(inside, (rows * w + cols).reshape(-1) + 1, 0).astype(np.int32)
    index.flags.writeable = False
    inside = inside.astype(np.int32)
    inside.flags.writeable = False
    return index, inside


@ms.constexpr(reuse_result=False)
def patch_rows(h, w, kernel, stride, padding, dilation):
    """Where one image's convolution patches are, the image laid out as
    rows ``(h·w, c)`` after one zero row: ``(index, inside)``, int32
    tensors of ``oh·ow·kh·kw`` entries, ``index`` the row of each tap (1 +
    its pixel; 0, the zero row, where it falls in the padding) and
    ``inside`` 1 where it does not. Image ``i`` of a batch adds
    ``i·h·w·inside``.

    Computed once per shape in numpy (cached) and a constant of the graph
    (``ms.constexpr``: evaluated while compiling, called directly in
    PyNative). Built from MindSpore ops at every call, the index cost ~20
    eager ops, 55 ms of CPU per convolution call in PyNative. Only the
    numpy arrays are cached and each call makes its own Tensors: a
    precaution (whether compiled graphs may share one constant Tensor was
    not established; the wrong gradients once seen here came from
    ``ops.pad``, see :func:`conv2d_matmul`)."""
    index, inside = _patch_rows(int(h), int(w), tuple(kernel), tuple(stride), tuple(padding), tuple(dilation))
    return Tensor(np.array(index)), Tensor(np.array(inside))


def conv2d_matmul(x, weight, bias, stride, padding, dilation, groups):
    """2-D convolution as one matmul over gathered patches.

    ``padding`` is ``(top, bottom, left, right)``; ``groups`` is 1 (dense
    matmul) or the channel count (depthwise: multiply-accumulate over taps).
    Dense: the batch as rows ``(n·h·w, c)`` after a zero row for the
    padding, its patches gathered by one index (:func:`patch_rows`, offset
    per image), then ``(n·oh·ow, kh·kw·c)`` times the weight: one matmul.
    Measured on this project's CPU (MindSpore 2.10, 250 digits, 32→32
    channels at 28×28): 3.4× faster forward than ``ops.unfold`` (Im2Col)
    and its transpose, the gradient as fast.
    """
    n, c, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    if groups == 1:
        oh, ow = output_size(h, w, (kh, kw), stride, padding, dilation)
        index, inside = patch_rows(h, w, (kh, kw), stride, padding, dilation)
        index = index.reshape(1, -1) + (ops.arange(n, dtype=ms.int32) * (h * w)).reshape(n, 1) * inside.reshape(1, -1)
        # One gather on axis 0 of the batch's rows after a zero row. Gathering on axis 1 of (n, h·w + 1, c)
        # held 45 % more memory per training graph; and a zero row made by ops.pad there gave wrong gradients
        # when a training graph ran again after another width's was compiled (MindSpore 2.10, graph mode).
        rows = ops.concat([ops.zeros((1, c), x.dtype), x.transpose(0, 2, 3, 1).reshape(n * h * w, c)], 0)
        patches = ops.gather(rows, index.reshape(-1), 0).reshape(n * oh * ow, kh * kw * c)
        out = ops.matmul(patches, weight.transpose(2, 3, 1, 0).reshape(kh * kw * c, out_c))
        out = out.reshape(n, oh, ow, out_c).transpose(0, 3, 1, 2)
    elif groups == c and out_c == c:
        cols, (oh, ow) = unfold(x, (kh, kw), stride, padding, dilation)  # (n, c·kh·kw, L)
        taps = cols.reshape(n, c, kh * kw, oh * ow)
        out = (taps * weight.reshape(1, c, kh * kw, 1)).sum(2).reshape(n, c, oh, ow)
    else:
        raise ValueError(f"conv2d_matmul: groups must be 1, or the channel count {c} with as many outputs; got "
                         f"groups={groups} and {out_c} outputs")
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def conv2d(x, weight, bias, stride, pad_mode, padding, dilation, groups, backend="native"):
    """Convolution with ``backend`` (``"native"`` or ``"matmul"``). ``pad_mode``
    and ``padding`` as in ``nn.Conv2d`` (``padding`` a 4-tuple when
    ``pad_mode='pad'``)."""
    if backend == "matmul" and (groups == 1 or groups == x.shape[1] == weight.shape[0]):  # else: native
        # (a depthwise convolution with a channel multiplier, PiT's pooling, runs natively)
        padding = explicit_padding(x, weight.shape[2:], stride, pad_mode, padding, dilation)
        return conv2d_matmul(x, weight, bias, stride, padding, dilation, groups)
    top, bottom, left, right = padding if pad_mode == "pad" else (0, 0, 0, 0)
    if top != bottom or left != right:
        x = ops.pad(x, (left, right, top, bottom))
        pad_mode, top, left = "valid", 0, 0
    return ops.conv2d(x, weight, bias, stride, pad_mode, (top, left) if pad_mode == "pad" else 0,
                      dilation, groups)
