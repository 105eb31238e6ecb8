"""Super resolution: the zoo's SRCNN and EDSR (integral and discrete from
one code, groups, pixel shuffle), the SR data (BT.601 luminance, bicubic
degradation, patches, paired folders) and the metrics, against numpy and
scikit-image / Pillow references."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from inn_ms.data import sr as data_sr
from inn_ms.data.sr import degrade, imresize, paired_dataset, random_patches, rgb_to_y
from inn_ms.metrics import psnr, ssim
from inn_ms.tasks import super_resolve
from model_zoo import create_model

skimage = pytest.importorskip("skimage")


def _x(rng, shape):
    return Tensor(rng.random(shape).astype(np.float32))


# -- zoo ------------------------------------------------------------------------

def test_srcnn_groups_shapes_and_width_resampling(rng):
    m = create_model("srcnn")
    assert dict(m.full_sizes) == {"c1": 64, "c2": 32}
    x = _x(rng, (2, 1, 19, 23))
    assert m(x).shape == (2, 1, 19, 23)
    m.resize(keep=0.6)
    assert dict(m.sizes) == {"c1": 38, "c2": 19}
    plain = m.discretize()
    convs = [c for _, c in plain.cells_and_names() if isinstance(c, ms.nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(38, 1, 9, 9), (19, 38, 1, 1), (1, 19, 5, 5)]
    np.testing.assert_allclose(plain(x).asnumpy(), m(x).asnumpy(), atol=1e-5)


def test_srcnn_955_discrete_and_residual_start():
    m = create_model("srcnn", integral=False, kernels=(9, 5, 5), widths=(16, 8))
    shapes = [tuple(p.shape) for p in m.get_parameters() if p.name.endswith("weight")]
    assert shapes == [(16, 1, 9, 9), (8, 16, 5, 5), (1, 8, 5, 5)]
    r = create_model("srcnn", residual=True, widths=(16, 8))
    x = _x(np.random.default_rng(1), (1, 1, 16, 16))
    # the last layer starts at 1 % scale: the untrained residual net is close to its input
    assert np.abs(r(x).asnumpy() - x.asnumpy()).max() < 0.05
    with pytest.raises(ValueError, match="odd"):
        create_model("srcnn", kernels=(9, 2, 5))


def test_srcnn_offset_start_and_discretize():
    """``offset`` subtracts a constant from the input and adds it back to the
    output (not the input: no residual); with the last layer at 1 % scale the
    untrained plain network outputs about ``offset`` everywhere. The offset
    survives discretize and resampling."""
    m = create_model("srcnn", offset=0.5, last_scale=0.01, widths=(16, 8))
    x = _x(np.random.default_rng(2), (1, 1, 16, 16))
    y = m(x).asnumpy()
    assert np.abs(y - 0.5).max() < 0.05
    assert np.abs(y - x.asnumpy()).max() > 0.2  # not the input
    m.resize(keep=0.6)
    np.testing.assert_allclose(m.discretize()(x).asnumpy(), m(x).asnumpy(), atol=1e-5)
    plain = create_model("srcnn", integral=False, offset=0.5, widths=(16, 8))
    assert plain(x).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("control_ratio", [0.25, 0.5, 1.0])
def test_srcnn_constant_weight_function_is_width_invariant(control_ratio):
    """The quadrature normalisation keeps the sum over input channels at every
    width: control values constant along the channel axes (a constant weight
    function) give the same output at every width, to float rounding. So a
    plain SRCNN's drop at narrow widths is the quadrature error of weight
    functions that vary between control points, not a scale or bias shift."""
    m = create_model("srcnn", control_ratio=control_ratio)
    net = m.network
    for name, axes in (("conv1", (0,)), ("conv2", (0, 1)), ("conv3", (1,))):
        conv = getattr(net, name)
        w = conv.weight.asnumpy()
        conv.weight.set_data(Tensor(np.ascontiguousarray(np.broadcast_to(w.mean(axis=axes, keepdims=True), w.shape))))
        b = conv.bias.asnumpy()
        conv.bias.set_data(Tensor(np.full_like(b, 0.1 if name != "conv3" else b[0])))
    x = _x(np.random.default_rng(3), (1, 1, 20, 20))
    full = m(x).asnumpy()
    assert np.abs(full).max() > 1e-2
    for keep in (0.8, 0.6, 0.4, 0.25):
        m.resize(keep=keep)
        np.testing.assert_allclose(m(x).asnumpy(), full, rtol=0, atol=1e-5 * np.abs(full).max())


def test_sr_models_refuse_num_classes_and_classifiers_keep_it():
    with pytest.raises(ValueError, match="has no classes"):
        create_model("srcnn", num_classes=10)
    with pytest.raises(ValueError, match="has no classes"):
        create_model("edsr", num_classes=3, n_feats=4, n_resblocks=1)
    assert "num_classes" not in create_model("srcnn").architecture["kwargs"]
    assert create_model("mnist_cnn", widths=(4, 4, 4, 4, 8)).architecture["kwargs"]["num_classes"] == 10


def pixel_shuffle_reference(x, r):
    """PyTorch's PixelShuffle in numpy: channel c·r² + i·r + j -> pixel (i, j) of channel c."""
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_equals_one_conv_plus_pixel_shuffle(scale, rng):
    """The r² sub-pixel convolutions are one C -> C·r² convolution followed
    by PyTorch's pixel shuffle; checked on the discrete EDSR against a numpy
    forward pass with the weights stacked in PixelShuffle's channel order."""
    net = create_model("edsr", integral=False, scale=scale, n_resblocks=1, n_feats=4, channels=1)
    x = rng.random((1, 1, 5, 6)).astype(np.float32)
    out = net(Tensor(x)).asnumpy()
    assert out.shape == (1, 1, 5 * scale, 6 * scale)

    def conv(a, c):  # numpy 'same' convolution (cross-correlation), float64
        w, b = c.weight.asnumpy().astype(np.float64), c.bias.asnumpy().astype(np.float64)
        k = w.shape[2] // 2
        ap = np.pad(a, ((0, 0), (0, 0), (k, k), (k, k)))
        res = np.zeros((a.shape[0], w.shape[0]) + a.shape[2:])
        for i in range(w.shape[2]):
            for j in range(w.shape[3]):
                res += np.einsum("oc,nchw->nohw", w[:, :, i, j], ap[:, :, i:i + a.shape[2], j:j + a.shape[3]])
        return res + b.reshape(1, -1, 1, 1)

    class Stacked:  # the r² parts as one conv, output channel c·r² + p
        def __init__(self, parts):
            ws = np.stack([p.weight.asnumpy() for p in parts], 1)
            bs = np.stack([p.bias.asnumpy() for p in parts], 1)
            self.weight = Tensor(ws.reshape((-1,) + ws.shape[2:]))
            self.bias = Tensor(bs.reshape(-1))

    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    h = conv(x - 0.5, net.head)
    blk = net.body[0]
    h = h + conv(h + conv(relu(conv(h, blk.conv1)), blk.conv2), net.body_end)
    for stage in net.upsample:
        h = pixel_shuffle_reference(conv(h, Stacked(list(stage.parts))), stage.r)
    ref = conv(h, net.tail) + 0.5
    np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max())


def test_edsr_integral_groups_and_pruning(rng):
    m = create_model("edsr", scale=4, n_resblocks=2, n_feats=8, channels=1)
    assert list(m.full_sizes) == ["feat", "b0", "b1", "up0", "up1"]
    x = _x(rng, (2, 1, 6, 7))
    m.resize(keep=0.5)
    y = m(x)
    assert y.shape == (2, 1, 24, 28)
    np.testing.assert_allclose(m.discretize()(x).asnumpy(), y.asnumpy(), atol=1e-4)
    with pytest.raises(ValueError, match="scale"):
        create_model("edsr", scale=5)


# -- data -----------------------------------------------------------------------

def test_luminance_is_bt601_as_skimage():
    from skimage.color import rgb2ycbcr
    im = skimage.data.astronaut()
    np.testing.assert_allclose(rgb_to_y(im) * 255, rgb2ycbcr(im)[..., 0], atol=1e-9)
    grey = skimage.data.camera().astype(np.float64)
    np.testing.assert_allclose(rgb_to_y(grey / 255), (16 + 219 * grey / 255) / 255, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_to_y(grey)


@pytest.mark.parametrize("shape", [(20, 25), (23, 31), (120, 150)])
def test_bicubic_resize_matches_pillow_inside_the_borders(shape, rng):
    """Pillow's BICUBIC (a = -0.5, kernel stretched when shrinking) on a float
    image is the same filter; it renormalises at the edges where we mirror,
    so the comparison skips the outer 6 output pixels."""
    from PIL import Image
    a = rng.random((60, 75))
    ours = imresize(a, shape)
    ref = np.asarray(Image.fromarray(a.astype(np.float32), "F").resize(shape[::-1], Image.BICUBIC), np.float64)
    np.testing.assert_allclose(ours[6:-6, 6:-6], ref[6:-6, 6:-6], atol=1e-6)
    m = data_sr.resize_matrix(60, shape[0])
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-12)


def test_bicubic_keeps_smooth_images_and_degrade_shapes():
    yy, xx = np.mgrid[0:48, 0:60] / 60.0
    smooth = 0.3 + 0.2 * xx + 0.1 * yy
    lr, up = degrade(smooth, 3)
    assert lr.shape == (16, 20) and up.shape == smooth.shape
    # Keys' kernel reproduces linear functions exactly at unit spacing
    # (upscaling); stretched 3x as the antialiasing filter it does so only
    # nearly (measured 4.6e-6 here), far below one grey level (1/255).
    np.testing.assert_allclose(up[6:-6, 6:-6], smooth[6:-6, 6:-6], atol=2e-5)
    rows, cols = (np.mgrid[0:96, 0:120] + 0.5) / 2 - 0.5  # output centres in input pixels
    np.testing.assert_allclose(imresize(smooth, (96, 120))[6:-6, 6:-6],
                               (0.3 + 0.2 * cols / 60 + 0.1 * rows / 60)[6:-6, 6:-6], atol=1e-12)
    with pytest.raises(ValueError, match="multiple"):
        degrade(smooth[:47], 3)


def test_photo_split_is_disjoint_and_patches_are_aligned(rng):
    assert not set(data_sr.TRAIN_PHOTOS) & set(data_sr.TEST_PHOTOS)
    with pytest.raises(ValueError, match="both"):
        data_sr.sr_photos(3, train=("camera", "coins"), test=("camera",))
    pairs = data_sr.photo_pairs(("coins",), 3, max_side=90)
    name, hr, lr, up = pairs[0]
    assert hr.shape == (90, 90) and lr.shape == (30, 30)
    x, y = random_patches(pairs, 5, 12, 3, rng, augment=False)
    assert x.shape == y.shape == (5, 1, 12, 12) and x.dtype == np.float32
    for k in range(5):  # each (x, y) is the same window of (up, hr)
        hits = [(i, j) for i in range(79) for j in range(79) if np.allclose(hr[i:i + 12, j:j + 12], y[k, 0], atol=1e-6)]
        assert hits and any(np.allclose(up[i:i + 12, j:j + 12], x[k, 0], atol=1e-6) for i, j in hits)
    x, y = random_patches(pairs, 3, 8, 3, rng, upscaled=False)
    assert x.shape == (3, 1, 8, 8) and y.shape == (3, 1, 24, 24)


def test_psnr_and_ssim_match_skimage(rng):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    _, hr, _, up = data_sr.photo_pairs(("camera",), 3, max_side=120)[0]
    noisy = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    for pred in (up, noisy):
        c = (slice(3, -3), slice(3, -3))
        assert psnr(pred, hr, border=3) == pytest.approx(
            peak_signal_noise_ratio(hr[c], pred[c], data_range=1.0), abs=1e-10)
        assert ssim(pred, hr, border=3) == pytest.approx(structural_similarity(
            hr[c], pred[c], data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False),
            abs=1e-10)
    assert psnr(hr, hr) == float("inf") and ssim(hr, hr) == pytest.approx(1.0)
    assert psnr(hr * 0 + 0.5, hr * 0 + 0.6) == pytest.approx(20.0)


def test_tiled_super_resolution_equals_one_pass(rng):
    # Plain (discretized) networks: an integral one samples its weights again on every tile, in PyNative.
    m = create_model("srcnn", widths=(8, 4)).discretize()
    img = rng.random((40, 50))
    whole = np.clip(m(Tensor(img[None, None].astype(np.float32))).asnumpy()[0, 0], 0, 1)
    np.testing.assert_allclose(super_resolve(m, img, tile=16, margin=6), whole, atol=1e-5)
    e = create_model("edsr", scale=2, n_resblocks=1, n_feats=4, channels=1).discretize()
    whole = np.clip(e(Tensor(img[None, None].astype(np.float32))).asnumpy()[0, 0], 0, 1)
    # receptive field radius: five 3x3 convolutions at LR size (5 px) + one at HR size (< 1 LR px)
    np.testing.assert_allclose(super_resolve(e, img, tile=16, margin=6, out_scale=2), whole, atol=1e-5)


def test_receptive_radius_is_the_tile_margin_that_changes_nothing(rng):
    from mindspore import nn
    from inn_ms.tasks import receptive_radius
    assert receptive_radius(create_model("srcnn", widths=(8, 4))) == 4 + 0 + 2  # 9-1-5
    assert receptive_radius(create_model("srcnn", kernels=(9, 5, 5), integral=False)) == 8
    dilated = nn.SequentialCell([nn.Conv2d(1, 2, 4, dilation=2), nn.Conv2d(2, 2, 3, stride=2)])
    assert receptive_radius(dilated) == (3 + 1) * 2  # reach 6 -> 3, plus 1, times the stride
    with pytest.raises(ValueError, match="no convolution"):
        receptive_radius(nn.Dense(2, 2))
    # EDSR x2 with 4 blocks: 11 LR pixels of convolutions (+ the HR ones); the
    # default margin (the radius) reproduces the whole image, a margin of 4 does not.
    model = create_model("edsr", scale=2, n_resblocks=4, n_feats=4, channels=1)
    assert receptive_radius(model) >= 11
    e = model.discretize()  # the same function; tiles run without sampling the weights again each time
    assert receptive_radius(e) == receptive_radius(model)
    img = rng.random((34, 34))  # four tiles of 17: each sees the others within the radius
    whole = np.clip(e(Tensor(img[None, None].astype(np.float32))).asnumpy()[0, 0], 0, 1)
    np.testing.assert_allclose(super_resolve(e, img, tile=17, out_scale=2), whole, atol=1e-5)
    assert np.abs(super_resolve(e, img, tile=17, margin=4, out_scale=2) - whole).max() > 1e-4


def _write_pairs(tmp_path, rng, names, scale, hr_side=(24, 30)):
    from PIL import Image
    (tmp_path / "lr").mkdir()
    (tmp_path / "hr").mkdir()
    out = {}
    for n in names:
        hr = (rng.random(hr_side + (3,)) * 255).astype(np.uint8)
        lr = (rng.random((hr_side[0] // scale, hr_side[1] // scale, 3)) * 255).astype(np.uint8)
        Image.fromarray(hr).save(tmp_path / "hr" / n)
        Image.fromarray(lr).save(tmp_path / "lr" / n)
        out[n] = (lr, hr)
    return out


def test_paired_folder_dataset(tmp_path, rng):
    images = _write_pairs(tmp_path, rng, ["a.png", "b.png", "c.png"], 3)
    ds = paired_dataset(str(tmp_path / "lr"), str(tmp_path / "hr"), 3, shuffle=False)
    got = [(d["x"], d["y"]) for d in ds.create_dict_iterator(output_numpy=True)]
    assert len(got) == 3
    for (x, y), n in zip(got, sorted(images)):
        lr, hr = images[n]
        np.testing.assert_allclose(y[0, 0], rgb_to_y(hr), atol=1e-6)
        np.testing.assert_allclose(x[0, 0], np.clip(imresize(rgb_to_y(lr), (24, 30)), 0, 1), atol=1e-6)
    ds = paired_dataset(str(tmp_path / "lr"), str(tmp_path / "hr"), 3, patch_size=4, upscaled=False,
                        batch_size=2)
    batch = next(ds.create_dict_iterator(output_numpy=True))
    assert batch["x"].shape == (2, 1, 4, 4) and batch["y"].shape == (2, 1, 12, 12)


def test_paired_folders_refuse_mismatches(tmp_path, rng):
    _write_pairs(tmp_path, rng, ["a.png", "b.png"], 3)
    (tmp_path / "hr" / "b.png").rename(tmp_path / "hr" / "z.png")
    with pytest.raises(ValueError, match="only in .*b.png.*z.png"):
        paired_dataset(str(tmp_path / "lr"), str(tmp_path / "hr"), 3)
    same = data_sr.PairedFolder(str(tmp_path / "lr"), str(tmp_path / "lr"), 2)  # "HR" not 2x larger
    with pytest.raises(ValueError, match="expected 2 x"):
        same[0]


@pytest.mark.parametrize("integral", [False, True])
def test_untrained_edsr_stays_near_the_image_scale(integral, rng):
    """The paper's 16-block baseline, untrained: residual branches start
    small, so outputs are within a few units of the [0, 1] image, not
    1e5 times it (He-initialised blocks without BatchNorm each double the
    variance)."""
    net = create_model("edsr", integral=integral)
    net.set_train(False)
    out = net(Tensor(rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32))).asnumpy()
    assert out.shape == (1, 3, 32, 32)
    assert np.isfinite(out).all() and np.abs(out - 0.5).mean() < 10
