"""Super-resolution data: offline photos, bicubic degradation, patches and a
paired LR/HR folder dataset (metrics: :mod:`inn_ms.metrics`; running a
network on whole images: :mod:`inn_ms.tasks`).

Conventions of the SR literature (SRCNN, EDSR and their benchmarks):

* images are compared on luminance, ITU-R BT.601 ``Y = 16 + 65.481 R +
  128.553 G + 24.966 B`` (R, G, B in [0, 1]; Y in [16, 235]), here divided by
  255 so that Y is in [16/255, 235/255];
* the high-resolution (HR) image is cropped to a multiple of the scale, the
  low-resolution (LR) one is its bicubic downscaling (Keys a = −0.5 with the
  kernel stretched by the scale as an antialiasing filter, mirror-reflected
  borders: the behaviour of MATLAB's ``imresize``, which the benchmarks use);
* metrics ignore a border of ``scale`` pixels.

The photo set is ``skimage.data``'s bundled photos (no downloads), split
into *different* images for training and testing.
"""
import logging
import os

import numpy as np

from inn_ms.cubic import stretched_matrix

logger = logging.getLogger(__name__)

IMRESIZE_A = -0.5  # MATLAB's imresize bicubic (Keys a = -0.5)

# skimage.data photos shipped inside the scikit-image wheel. "cat" is the
# same photo as "chelsea", so it is in neither list.
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "brick", "grass", "gravel", "moon",
                "immunohistochemistry", "stereo_motorcycle", "page", "text", "clock")
TEST_PHOTOS = ("camera", "chelsea", "coins")


# -- colour -----------------------------------------------------------------

def rgb_to_y(image):
    """BT.601 luminance of an ``(H, W, 3)`` RGB image (uint8, or float in
    [0, 1]) as float64 in [16/255, 235/255]. A 2-D (grey) image counts as
    R = G = B; an alpha channel is dropped."""
    x = np.asarray(image)
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif x.dtype == bool:
        x = x.astype(np.float64)
    else:
        x = x.astype(np.float64)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"rgb_to_y: a float image must be in [0, 1], got values in "
                             f"[{x.min():.3g}, {x.max():.3g}] (pass uint8 for 0..255)")
    if x.ndim == 2:
        x = np.stack([x, x, x], axis=-1)
    if x.ndim != 3 or x.shape[-1] not in (3, 4):
        raise ValueError(f"rgb_to_y: expected an (H, W) or (H, W, 3|4) image, got shape {x.shape}")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


# -- bicubic resizing -------------------------------------------------------

def resize_matrix(n_in, n_out, a=IMRESIZE_A, antialias=True):
    """The ``n_out × n_in`` matrix resizing one axis with the cubic kernel.

    Output pixel ``i`` is centred at input coordinate ``(i + 0.5)·n_in/n_out
    − 0.5``. When shrinking (and ``antialias``), the kernel is stretched by
    ``n_in/n_out`` so that it low-pass filters. Taps past the edges are
    mirrored (symmetric reflection), and each row is normalised to sum 1.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"resize_matrix: sizes must be >= 1, got {n_in} -> {n_out}")
    ratio = n_in / n_out
    stretch = ratio if (antialias and ratio > 1) else 1.0
    centre = (np.arange(n_out) + 0.5) * ratio - 0.5
    return stretched_matrix(centre, n_in, stretch, a=a, edges="mirror")


def imresize(image, shape, a=IMRESIZE_A, antialias=True):
    """Bicubic resize of a 2-D image to ``shape = (H, W)`` (float64)."""
    x = np.asarray(image, np.float64)
    if x.ndim != 2:
        raise ValueError(f"imresize: expected a 2-D image, got shape {x.shape}")
    rows = resize_matrix(x.shape[0], int(shape[0]), a, antialias)
    cols = resize_matrix(x.shape[1], int(shape[1]), a, antialias)
    return rows @ x @ cols.T


def modcrop(image, scale):
    """Crop a 2-D image so that both sides are multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[:h - h % scale, :w - w % scale]


def degrade(hr, scale):
    """``(lr, lr_up)`` of a 2-D HR image whose sides are multiples of
    ``scale``: the bicubic downscaling and its bicubic upscaling back to the
    HR size (SRCNN's input), both clipped to [0, 1]."""
    _check_scale(scale)
    h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"degrade: HR size {hr.shape} is not a multiple of scale {scale}; use modcrop")
    lr = np.clip(imresize(hr, (h // scale, w // scale)), 0.0, 1.0)
    up = np.clip(imresize(lr, (h, w)), 0.0, 1.0)
    return lr, up


def _check_scale(scale):
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise ValueError(f"scale must be an int >= 2, got {scale!r}")


# -- the offline photo set --------------------------------------------------

def load_photo(name):
    """The Y channel (float64, [16/255, 235/255]) of ``skimage.data.<name>()``."""
    import skimage.data
    fn = getattr(skimage.data, name, None)
    if fn is None or not callable(fn):
        raise ValueError(f"skimage.data has no image {name!r}")
    image = fn()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    return rgb_to_y(image)


def photo_pairs(names, scale, max_side=None):
    """``[(name, hr, lr, lr_up)]`` for the named photos: Y channel, HR
    optionally centre-cropped to at most ``max_side`` pixels a side, then
    cropped to a multiple of ``scale``; LR by bicubic degradation."""
    out = []
    for name in names:
        hr = load_photo(name)
        if max_side is not None:
            h, w = hr.shape
            top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
            hr = hr[top:top + max_side, left:left + max_side]
        hr = modcrop(hr, scale)
        lr, up = degrade(hr, scale)
        out.append((name, hr, lr, up))
    return out


def sr_photos(scale=3, train=TRAIN_PHOTOS, test=TEST_PHOTOS, max_side=None):
    """Training and test photo pairs (see :func:`photo_pairs`); refuses a
    photo in both lists."""
    both = sorted(set(train) & set(test))
    if both:
        raise ValueError(f"sr_photos: photos {both} are in both the training and the test set")
    return photo_pairs(train, scale, max_side), photo_pairs(test, scale, max_side)


def random_patches(pairs, n, size, scale, rng, upscaled=True, augment=True):
    """``n`` random aligned patches from ``pairs`` (as made by
    :func:`photo_pairs`), as float32 ``(n, 1, ·, ·)`` arrays ``(x, y)``.

    ``upscaled=True`` (SRCNN): ``x`` is the bicubic-upscaled LR patch and
    ``y`` the HR patch, both ``size × size``. ``False`` (EDSR): ``x`` is the
    LR patch ``size × size`` and ``y`` the HR patch ``size·scale`` a side.
    Photos are drawn in proportion to their area; ``augment`` applies a
    random flip and rotation by a multiple of 90° to each pair.
    """
    if n < 1 or size < 1:
        raise ValueError(f"random_patches: n and size must be >= 1, got {n}, {size}")
    lr_size = size if not upscaled else -(-size // scale)
    usable = [p for p in pairs if min(p[2].shape) >= lr_size]
    if not usable:
        raise ValueError(f"random_patches: no photo is large enough for {size}-pixel patches")
    areas = np.array([p[1].size for p in usable], np.float64)
    which = rng.choice(len(usable), size=n, p=areas / areas.sum())
    xs, ys = [], []
    for k in which:
        _, hr, lr, up = usable[k]
        x, y = random_patch(hr, lr, up, size, scale, rng, upscaled, augment)
        xs.append(x)
        ys.append(y)
    return (np.stack(xs)[:, None].astype(np.float32), np.stack(ys)[:, None].astype(np.float32))


def random_patch(hr, lr, up, size, scale, rng, upscaled=True, augment=True):
    """One random aligned patch ``(x, y)`` (2-D) of one image pair: see
    :func:`random_patches` (``up`` may be None when ``upscaled=False``)."""
    if upscaled:
        i, j = rng.integers(0, hr.shape[0] - size + 1), rng.integers(0, hr.shape[1] - size + 1)
        x, y = up[i:i + size, j:j + size], hr[i:i + size, j:j + size]
    else:
        i, j = rng.integers(0, lr.shape[0] - size + 1), rng.integers(0, lr.shape[1] - size + 1)
        x = lr[i:i + size, j:j + size]
        y = hr[i * scale:(i + size) * scale, j * scale:(j + size) * scale]
    if augment:
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        x, y = np.rot90(x, turns), np.rot90(y, turns)
        if flip:
            x, y = x[:, ::-1], y[:, ::-1]
    return x, y


# -- users' own data: paired folders ----------------------------------------

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def paired_files(lr_dir, hr_dir):
    """Sorted ``[(lr_path, hr_path)]`` of the images with the same file name
    in both folders; refuses folders whose names do not match one to one."""
    def images(d):
        if not os.path.isdir(d):
            raise ValueError(f"paired folders: {d!r} is not a directory")
        return {f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTENSIONS)}

    lr, hr = images(lr_dir), images(hr_dir)
    if lr != hr:
        raise ValueError(f"paired folders: file names differ; only in {lr_dir}: {sorted(lr - hr)[:10]}, "
                         f"only in {hr_dir}: {sorted(hr - lr)[:10]}")
    if not lr:
        raise ValueError(f"paired folders: no images ({', '.join(IMAGE_EXTENSIONS)}) in {lr_dir}")
    return [(os.path.join(lr_dir, f), os.path.join(hr_dir, f)) for f in sorted(lr)]


def read_y(path):
    """The Y channel of an image file (see :func:`rgb_to_y`)."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
        return rgb_to_y(np.asarray(im))


def read_pair(lr_path, hr_path, scale, upscaled=True):
    """``(hr, lr, up)`` Y images of one LR/HR file pair; ``up`` is the LR
    image's bicubic upscaling clipped to [0, 1] (None if not ``upscaled``).
    Refuses an HR image that is not exactly ``scale`` times the LR one."""
    lr, hr = read_y(lr_path), read_y(hr_path)
    if hr.shape != (lr.shape[0] * scale, lr.shape[1] * scale):
        raise ValueError(f"paired folders: {hr_path} is {hr.shape[1]}x{hr.shape[0]}, expected {scale} x "
                         f"the LR image {lr_path} ({lr.shape[1]}x{lr.shape[0]})")
    up = np.clip(imresize(lr, hr.shape), 0.0, 1.0) if upscaled else None
    return hr, lr, up


def _check_patch(lr, patch_size, upscaled, scale, what):
    side = patch_size if not upscaled else -(-patch_size // scale)  # in LR pixels
    if min(lr.shape) < side:
        raise ValueError(f"{what} is smaller than the {patch_size}-pixel patch")


def folder_pairs(lr_dir, hr_dir, scale, upscaled=True, limit=None):
    """``[(name, hr, lr, up)]`` of two folders of matching file names (the
    form :func:`photo_pairs` gives, for :func:`evaluate`); the first
    ``limit`` names only if given."""
    _check_scale(scale)
    files = paired_files(lr_dir, hr_dir)[:limit]
    return [(os.path.basename(h), *read_pair(lp, h, scale, upscaled)) for lp, h in files]


class PairedFolder:
    """Random-access source of ``(x, y)`` float32 Y pairs ``(1, ·, ·)`` from
    two folders of matching file names (see :func:`paired_dataset`)."""

    def __init__(self, lr_dir, hr_dir, scale, patch_size=None, upscaled=True, seed=0):
        _check_scale(scale)
        self.files = paired_files(lr_dir, hr_dir)
        self.scale, self.patch_size, self.upscaled = scale, patch_size, upscaled
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        lr_path, hr_path = self.files[index]
        hr, lr, up = read_pair(lr_path, hr_path, self.scale, self.upscaled)
        if self.patch_size is not None:
            _check_patch(lr, self.patch_size, self.upscaled, self.scale, lr_path)
            x, hr = random_patch(hr, lr, up, self.patch_size, self.scale, self.rng, self.upscaled, augment=False)
        else:
            x = up if self.upscaled else lr
        return np.clip(x, 0, 1)[None].astype(np.float32), hr[None].astype(np.float32)


class PatchSource:
    """Training patches in an order the caller chooses, for the config
    runner (:mod:`inn_ms.runner`): sample ``i`` of epoch ``e`` is a random
    aligned patch drawn with a generator seeded by ``(seed, e, i)`` alone, so
    a resumed run or another data-parallel rank gets the same patch.

    ``load(k)`` returns image ``k``'s ``(hr, lr, up)``; sample ``i`` uses
    image ``i mod n_images``, or with ``weights`` an image drawn with those
    probabilities. ``patch_size``: network-input pixels a side (HR pixels
    for ``upscaled`` inputs, LR pixels otherwise). ``size``: samples per
    epoch."""

    def __init__(self, name, size, n_images, load, patch_size, scale, upscaled=True, weights=None):
        if size < 1 or n_images < 1 or patch_size < 1:
            raise ValueError(f"{name}: size, n_images and patch_size must be >= 1, got {size}, {n_images}, "
                             f"{patch_size}")
        self.name, self.size, self.n_images, self.load = name, int(size), int(n_images), load
        self.patch_size, self.scale, self.upscaled = int(patch_size), int(scale), bool(upscaled)
        self.weights = None if weights is None else np.asarray(weights, np.float64) / np.sum(weights)

    def sample(self, index, epoch=0, seed=0, augment=True):
        """Sample ``index`` of ``epoch``: float32 ``(x, y)``, each ``(1, ·, ·)``."""
        rng = np.random.default_rng([int(seed), 2, int(epoch), int(index)])
        k = int(rng.choice(self.n_images, p=self.weights)) if self.weights is not None else index % self.n_images
        hr, lr, up = self.load(k)
        _check_patch(lr, self.patch_size, self.upscaled, self.scale, f"{self.name} image {k}")
        x, y = random_patch(hr, lr, up, self.patch_size, self.scale, rng, self.upscaled, augment)
        return np.clip(x, 0, 1)[None].astype(np.float32), np.ascontiguousarray(y)[None].astype(np.float32)

    def batches(self, indices, batch_size, *, epoch=0, seed=0, start=0, augment=False, workers=1,
                drop_remainder=True):
        """Float32 ``(x, y)`` batches ``(B, 1, ·, ·)`` of the samples
        ``indices`` in that order (the data protocol of :mod:`inn_ms.data`;
        an incomplete last batch is dropped unless ``drop_remainder`` is
        False). Sample ``i``'s patch comes from ``(seed, epoch, i)`` alone, so
        ``start`` changes nothing; ``workers`` threads read and crop the
        samples of a batch (image decoding releases the GIL). Samples do not
        depend on ``workers``."""
        indices = [int(i) for i in indices]
        if indices and not 0 <= min(indices) <= max(indices) < self.size:
            raise ValueError(f"{self.name}: sample indices must be in [0, {self.size})")
        pool = None
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            pool = ThreadPoolExecutor(workers)
        try:
            stop = len(indices) if not drop_remainder else len(indices) // batch_size * batch_size
            for b in range(0, stop, batch_size):
                chunk = indices[b:b + batch_size]
                fn = lambda i: self.sample(i, epoch, seed, augment)  # noqa: E731
                pairs = list(pool.map(fn, chunk)) if pool is not None else [fn(i) for i in chunk]
                yield np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        finally:
            if pool is not None:
                pool.shutdown(wait=True)


def photo_patch_source(pairs, size, patch_size, scale, upscaled=True):
    """A :class:`PatchSource` over in-memory photo ``pairs`` (as made by
    :func:`photo_pairs`), photos drawn in proportion to their area; photos
    too small for the patch are left out."""
    side = patch_size if not upscaled else -(-patch_size // scale)
    usable = [p for p in pairs if min(p[2].shape) >= side]
    if not usable:
        raise ValueError(f"skimage_photos: no photo is large enough for {patch_size}-pixel patches")
    return PatchSource("skimage_photos", size, len(usable), lambda k: usable[k][1:], patch_size, scale, upscaled,
                       weights=[p[1].size for p in usable])


def folder_patch_source(lr_dir, hr_dir, scale, patch_size, size=None, upscaled=True):
    """A :class:`PatchSource` over two folders of matching file names, read
    when a sample needs them; ``size`` defaults to one patch per image."""
    _check_scale(scale)
    files = paired_files(lr_dir, hr_dir)
    return PatchSource("paired", size or len(files), len(files),
                       lambda k: read_pair(*files[k], scale, upscaled), patch_size, scale, upscaled)


def paired_dataset(lr_dir, hr_dir, scale, patch_size=None, upscaled=True, batch_size=1, shuffle=True, seed=0,
                   num_parallel_workers=1):
    """A ``mindspore.dataset`` of ``(x, y)`` Y-channel pairs from two folders
    with matching file names: ``lr_dir`` holds the low-resolution images,
    ``hr_dir`` the high-resolution ones, exactly ``scale`` times larger.

    ``upscaled=True`` (SRCNN): ``x`` is the bicubic upscaling of the LR
    image to the HR size; ``False`` (EDSR): ``x`` is the LR image itself.
    ``patch_size``: random aligned crops of that many ``x`` pixels a side
    (needed to batch images of different sizes). Columns ``"x"``, ``"y"``,
    float32 ``(1, H, W)`` per sample."""
    import mindspore.dataset as ds

    source = PairedFolder(lr_dir, hr_dir, scale, patch_size, upscaled, seed)
    if batch_size > 1 and patch_size is None:
        raise ValueError("paired_dataset: batching images of different sizes needs patch_size")
    data = ds.GeneratorDataset(source, column_names=["x", "y"], shuffle=shuffle,
                               num_parallel_workers=num_parallel_workers)
    return data.batch(batch_size, drop_remainder=batch_size > 1)


def sr_source(data, train, upscaled=True):
    """The training :class:`PatchSource` (``train=True``) or the evaluation
    pairs ``[(name, hr, lr, up)]`` of a config's super-resolution ``data``
    section (``skimage_photos`` or ``paired``; :func:`inn_ms.data.build_source`
    takes either task's).
    ``upscaled``: the network takes the bicubic-upscaled image (SRCNN)
    rather than the LR image (EDSR). Training samples per epoch:
    ``n_train`` (default 1,000 patches for the photos, one per image for
    folders); evaluation: the first ``n_test`` images if given."""
    scale, patch = data["scale"], data["patch_size"]
    if data["name"] == "skimage_photos":
        if train:
            pairs = photo_pairs(TRAIN_PHOTOS, scale, data["max_side"])
            return photo_patch_source(pairs, data["n_train"] or 1000, patch, scale, upscaled)
        return photo_pairs(TEST_PHOTOS[:data["n_test"]], scale, data["max_side"])
    if data["name"] == "paired":
        if train:
            return folder_patch_source(data["lr_dir"], data["hr_dir"], scale, patch, data["n_train"], upscaled)
        return folder_pairs(data["val_lr_dir"], data["val_hr_dir"], scale, upscaled, data["n_test"])
    raise ValueError(f"unknown super-resolution data set {data['name']!r}")
