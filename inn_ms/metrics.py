"""Metrics: how good a network's outputs are (accuracy, PSNR, SSIM).

Plain numpy on outputs already computed, except :func:`predict` and
:func:`accuracy`, which run a Cell on numpy arrays in batches.
"""
import numpy as np
from mindspore import Tensor


def topk_correct(logits, labels, k):
    """How many rows of ``logits`` have their label among the ``k`` largest
    (all of them when there are fewer than ``k`` classes)."""
    best = np.argsort(-logits, axis=1)[:, :min(k, logits.shape[1])]
    return int((best == np.asarray(labels)[:, None]).any(axis=1).sum())


def predict(cell, x, batch_size=50):
    """Logits of ``cell`` on numpy ``x``, in batches (eval mode). Batches of
    50 by default: in graph mode the first call of a compiled network costs
    more the larger its batch (measured, MindSpore 2.10 CPU, the main job's
    CNN on 1,000 digits: 5 s in batches of 50 against 17 s in batches of
    250, most of it that first call) and holds less memory."""
    cell.set_train(False)
    out = [cell(Tensor(x[i:i + batch_size])).asnumpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out)


def accuracy(cell, x, y, batch_size=50):
    """Top-1 accuracy of ``cell`` on numpy arrays."""
    return float(np.mean(predict(cell, x, batch_size).argmax(1) == y))


def _crop(a, border):
    return a[border:a.shape[0] - border, border:a.shape[1] - border] if border else a


def psnr(pred, target, border=0, data_range=1.0):
    """Peak signal-to-noise ratio in dB of 2-D images, ignoring ``border``
    pixels on each side (the SR convention: border = scale)."""
    p, t = _crop(np.asarray(pred, np.float64), border), _crop(np.asarray(target, np.float64), border)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"psnr: need two 2-D images of one shape, got {p.shape} and {t.shape}")
    mse = np.mean((p - t) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def ssim(pred, target, border=0, data_range=1.0, sigma=1.5):
    """Structural similarity (Wang et al., 2004) of 2-D images: Gaussian
    window (σ = 1.5, 11×11), K1 = 0.01, K2 = 0.03, population statistics,
    averaged over the pixels whose window fits inside the (border-cropped)
    image."""
    from scipy.ndimage import gaussian_filter

    p, t = _crop(np.asarray(pred, np.float64), border), _crop(np.asarray(target, np.float64), border)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"ssim: need two 2-D images of one shape, got {p.shape} and {t.shape}")
    radius = int(3.5 * sigma + 0.5)
    if min(p.shape) < 2 * radius + 1:
        raise ValueError(f"ssim: images of {p.shape} are smaller than the {2 * radius + 1}-pixel window")
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mp, mt = blur(p), blur(t)
    vp, vt, cov = blur(p * p) - mp * mp, blur(t * t) - mt * mt, blur(p * t) - mp * mt
    s = ((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))
    return float(_crop(s, radius).mean())
