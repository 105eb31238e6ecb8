"""Training checkpoints: model weights, optimiser state and position, written atomically.

A checkpoint is one MindSpore ``.ckpt`` holding the model's parameters under
their Cell paths (``network.conv1.weight``: loadable as plain weights), the
optimiser's own state under ``optimizer.`` (moments, step counter; not the
learning-rate table, which the config rebuilds), and the position reached:
``epoch`` (completed epochs), ``step`` (batches done in all),
``epoch_step`` (batches done in the current epoch) and ``global_batch``. Random widths and data
order are functions of the seed and the step (:mod:`inn_ms.runner`), so no
random-generator state needs saving.

Files are written through :func:`inn_ms.fileio.atomic_write`, so a run
killed while saving leaves the previous checkpoint intact and at most a
hidden ``.ckpt_e*.partial.ckpt`` temporary, which :func:`latest_checkpoint`
removes.
"""
import contextlib
import glob
import logging
import os
import re

import mindspore as ms

from inn_ms.convert.weights import checkpoint_misfit, network_parameters
from inn_ms.fileio import atomic_write

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt_e(\d+)_s(\d+)\.ckpt$")
_POSITION = ("epoch", "step", "epoch_step", "global_batch")
_SKIP = ("learning_rate",)
# Temporaries of interrupted saves: fileio's (and MindSpore's own beside it), and the names used before it.
_TEMPORARIES = (".ckpt_e*_s*.partial.ckpt", ".ckpt_e*_s*.partial.tmp", "ckpt_e*_s*.tmp.ckpt")


@contextlib.contextmanager
def _mindspore_log_off():
    """Silence MindSpore's own logger inside the block: a failed save logs a
    CRITICAL line naming the temporary file, then raises the error that the
    caller reports with the real path (:mod:`inn_ms.fileio`)."""
    try:
        from mindspore.log import _get_logger
        ms_logger = _get_logger()
    except Exception:  # another MindSpore layout: keep its messages
        yield
        return
    disabled, ms_logger.disabled = ms_logger.disabled, True
    try:
        yield
    finally:
        ms_logger.disabled = disabled


def write_mindspore_checkpoint(path, save_obj, append_dict=None):
    """``ms.save_checkpoint(save_obj, ...)`` to ``path``, atomically and with
    the user's umask mode (MindSpore's own files are read-only); an error
    names ``path`` and leaves no temporary behind."""
    with atomic_write(path) as tmp, _mindspore_log_off():
        ms.save_checkpoint(save_obj, tmp, append_dict=append_dict)
    return path


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
    write_mindspore_checkpoint(path, entries, {"epoch": int(epoch), "step": int(step),
                                               "epoch_step": int(epoch_step), "global_batch": int(global_batch)})
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
    for pattern in _TEMPORARIES if clean else ():
        for tmp in glob.glob(os.path.join(folder, pattern)):
            logger.warning("removing %s, left by an interrupted save", tmp)
            with contextlib.suppress(FileNotFoundError):
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
