"""Training checkpoints: model weights, optimiser state and position, written atomically.

A checkpoint is one MindSpore ``.ckpt`` holding the model's parameters under
their Cell paths (``network.conv1.weight``: loadable as plain weights), the
optimiser's own state under ``optimizer.`` (moments, step counter; not the
learning-rate table, which the config rebuilds), and the position reached:
``epoch`` (completed epochs), ``step`` (batches done in all),
``epoch_step`` (batches done in the current epoch) and ``global_batch``. Random widths and data
order are functions of the seed and the step (:mod:`inn_ms.runner`), so no
random-generator state needs saving.

Files are written to a temporary name and renamed, so a run killed while
saving leaves the previous checkpoint intact and at most a file
``*.tmp.ckpt``, which :func:`latest_checkpoint` ignores and removes.
"""
import glob
import logging
import os
import re

import mindspore as ms

from inn_ms.convert.weights import checkpoint_misfit, network_parameters

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt_e(\d+)_s(\d+)\.ckpt$")
_POSITION = ("epoch", "step", "epoch_step", "global_batch")
_SKIP = ("learning_rate",)


def checkpoint_name(epoch, step):
    return f"ckpt_e{epoch:04d}_s{step:08d}.ckpt"


def _entries(model, optimizer):
    model_params = network_parameters(model)
    out = dict(model_params)
    if optimizer is not None:
        ids = {id(p) for p in model_params.values()}
        for name, p in network_parameters(optimizer).items():
            if id(p) not in ids and name not in _SKIP:
                out["optimizer." + name] = p
    return out


def save_checkpoint(path, model, optimizer=None, epoch=0, step=0, epoch_step=0, global_batch=0, keep=None):
    """Write a checkpoint atomically; with ``keep``, remove all but the
    ``keep`` newest checkpoints of its folder afterwards. ``global_batch``:
    samples per step over all ranks (a resumed run must use the same)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    entries = [{"name": n, "data": p} for n, p in _entries(model, optimizer).items()]
    tmp = path[:-len(".ckpt")] + ".tmp.ckpt" if path.endswith(".ckpt") else path + ".tmp.ckpt"
    ms.save_checkpoint(entries, tmp, append_dict={"epoch": int(epoch), "step": int(step),
                                                  "epoch_step": int(epoch_step), "global_batch": int(global_batch)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if optimizer is None and not (epoch or step):
        logger.info("weights %s", path)
    else:
        logger.info("checkpoint %s (epoch %d, step %d)", path, epoch, step)
    if keep:
        for old in list_checkpoints(folder)[:-keep]:
            os.remove(old)
    return path


def list_checkpoints(folder):
    """Checkpoints in ``folder`` written by :func:`save_checkpoint`, oldest first."""
    found = []
    for path in glob.glob(os.path.join(folder, "ckpt_e*_s*.ckpt")):
        m = _NAME.match(os.path.basename(path))
        if m:
            found.append((int(m.group(2)), path))
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder, clean=True):
    """The newest checkpoint in ``folder`` or None; with ``clean``, removes
    temporaries left by a run killed while saving."""
    if not os.path.isdir(folder):
        return None
    for tmp in glob.glob(os.path.join(folder, "ckpt_e*_s*.tmp.ckpt")) if clean else ():
        logger.warning("removing %s, left by an interrupted save", tmp)
        os.remove(tmp)
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path, model, optimizer=None):
    """Load a checkpoint into ``model`` (and ``optimizer``'s state if given)
    after checking every entry fits; returns the position
    ``{"epoch", "step", "epoch_step", "global_batch"}`` (zeros for a weights-only file)."""
    try:
        values = ms.load_checkpoint(path)
    except Exception as e:  # MindSpore raises ValueError/RuntimeError for damaged files
        raise ValueError(f"checkpoint {path} cannot be read: {e}") from None
    params = _entries(model, optimizer)
    missing, mismatched = checkpoint_misfit(params, values)
    if missing or mismatched:
        raise ValueError(f"checkpoint {path} does not fit, nothing loaded; missing: {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}; shape mismatch (checkpoint vs model): {mismatched}")
    for name, p in params.items():
        v = values[name]
        p.set_data(ms.Tensor(v.asnumpy(), p.dtype))
    return {k: int(values[k].asnumpy()) if k in values else 0 for k in _POSITION}
