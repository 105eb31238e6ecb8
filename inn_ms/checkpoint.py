"""Training checkpoints: model weights, optimiser state and position, written atomically.

A checkpoint is one MindSpore ``.ckpt`` holding the model's parameters under
their Cell paths (``network.conv1.weight``: loadable as plain weights), the
optimiser's own state under ``optimizer.`` (moments, step counter; not the
learning-rate table, which the config rebuilds: a run resumed with more
epochs or another schedule continues from the saved step on the new table),
and the position reached: ``epoch`` (completed epochs), ``step`` (batches
done in all), ``epoch_step`` (batches done in the current epoch),
``global_batch`` and ``epoch_loss`` (the sum of the current epoch's batch
losses so far, so that a resumed epoch's mean loss covers the whole epoch).
The first entry, ``entries``, counts the entries: a file cut short (a full
disk, a copy that stopped) is recognised as damaged even when the cut falls
between two entries, which MindSpore's reader accepts. Random widths and
data order are functions of the seed and the step (:mod:`inn_ms.runner`),
so no random-generator state needs saving.

Files are written through :func:`inn_ms.fileio.atomic_write`, so a run
killed while saving leaves the previous checkpoint intact and at most a
hidden ``.ckpt_e*.partial.ckpt`` temporary, which :func:`latest_checkpoint`
removes. :func:`resume_latest` loads the newest checkpoint that reads
whole, with a warning for each damaged newer one.
"""
import contextlib
import glob
import logging
import os
import re

import mindspore as ms
import numpy as np

from inn_ms.convert.weights import checkpoint_misfit, network_parameters
from inn_ms.fileio import atomic_write

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt_e(\d+)_s(\d+)\.ckpt$")
_POSITION = ("epoch", "step", "epoch_step", "global_batch")
_COUNT = "entries"
# Entries of a checkpoint that are not parameters (position, epoch loss, entry count).
META_KEYS = _POSITION + ("epoch_loss", _COUNT)
# Temporaries of interrupted saves: fileio's (and MindSpore's own beside it), and the names used before it.
_TEMPORARIES = (".ckpt_e*_s*.partial.ckpt", ".ckpt_e*_s*.partial.tmp", "ckpt_e*_s*.tmp.ckpt")


class DamagedCheckpoint(ValueError):
    """A checkpoint file that cannot be read whole (truncated, overwritten, missing)."""


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


def _learning_rate_ids(optimizer):
    """Ids of the optimiser's learning-rate parameters (a scalar, or the
    per-step table that a dynamic schedule becomes): the config rebuilds them."""
    lr = getattr(optimizer, "learning_rate", None)
    if isinstance(lr, ms.Parameter):
        return {id(lr)}
    if isinstance(lr, ms.nn.Cell):
        return {id(p) for p in lr.get_parameters()}
    return set()


def _entries(model, optimizer):
    model_params = network_parameters(model)
    out = dict(model_params)
    if optimizer is not None:
        skip = {id(p) for p in model_params.values()} | _learning_rate_ids(optimizer)
        for name, p in network_parameters(optimizer).items():
            if id(p) not in skip and name.split(".")[0] != "learning_rate":
                out["optimizer." + name] = p
    return out


def save_checkpoint(path, model, optimizer=None, epoch=0, step=0, epoch_step=0, global_batch=0, keep=None,
                    epoch_loss=0.0):
    """Write a checkpoint atomically; with ``keep``, remove all but the
    ``keep`` newest checkpoints of its folder afterwards. ``global_batch``:
    samples per step over all ranks (a resumed run must use the same);
    ``epoch_loss``: the sum of this epoch's batch losses so far."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    entries = [{"name": n, "data": p} for n, p in _entries(model, optimizer).items()]
    position = {"epoch": int(epoch), "step": int(step), "epoch_step": int(epoch_step),
                "global_batch": int(global_batch), "epoch_loss": ms.Tensor(np.float64(epoch_loss))}
    count = {"name": _COUNT, "data": ms.Tensor(np.int64(len(entries) + len(position) + 1))}
    write_mindspore_checkpoint(path, [count] + entries, position)
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


def read_checkpoint(path):
    """The entries of checkpoint ``path`` (name → tensor); raises
    :class:`DamagedCheckpoint` if the file cannot be read whole."""
    try:
        values = ms.load_checkpoint(path)
    except Exception as e:  # MindSpore raises ValueError/RuntimeError for damaged files
        raise DamagedCheckpoint(f"checkpoint {path} cannot be read: {e}") from None
    if _COUNT in values and int(values[_COUNT].asnumpy()) != len(values):
        raise DamagedCheckpoint(f"checkpoint {path} is incomplete: {len(values)} of "
                                f"{int(values[_COUNT].asnumpy())} entries")
    return values


def load_checkpoint(path, model, optimizer=None):
    """Load a checkpoint into ``model`` (and ``optimizer``'s state if given)
    after checking every entry fits; returns the position
    ``{"epoch", "step", "epoch_step", "global_batch", "epoch_loss"}`` (zeros
    for a weights-only file). With an optimiser (resuming), a file without
    the position is refused as cut short: the position entries come last."""
    values = read_checkpoint(path)
    if optimizer is not None and any(k not in values for k in _POSITION):
        raise DamagedCheckpoint(f"checkpoint {path} is incomplete: it has no training position "
                                f"({', '.join(k for k in _POSITION if k not in values)} missing)")
    params = _entries(model, optimizer)
    missing, mismatched = checkpoint_misfit(params, values)
    if missing or mismatched:
        raise ValueError(f"checkpoint {path} does not fit, nothing loaded; missing: {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}; shape mismatch (checkpoint vs model): {mismatched}")
    for name, p in params.items():
        v = values[name]
        p.set_data(ms.Tensor(v.asnumpy(), p.dtype))
    position = {k: int(values[k].asnumpy()) if k in values else 0 for k in _POSITION}
    position["epoch_loss"] = float(values["epoch_loss"].asnumpy()) if "epoch_loss" in values else None
    return position


def resume_latest(folder, model, optimizer=None, clean=True):
    """Load the newest checkpoint of ``folder`` that reads whole into
    ``model`` (and ``optimizer``); returns ``(path, position)``, or
    ``(None, None)`` without one. A newer checkpoint that is damaged (cut
    short by a full disk, say) is skipped with a warning naming it; one that
    reads but does not fit the model is an error, as are all damaged. With
    ``clean`` (the process that writes checkpoints), a damaged file is
    renamed ``*.ckpt.damaged``: kept for inspection, but no longer counted
    among the checkpoints that ``keep`` retains."""
    latest_checkpoint(folder, clean=clean)  # removes temporaries
    candidates = list_checkpoints(folder) if os.path.isdir(folder) else []
    damaged = []
    for path in reversed(candidates):
        try:
            position = load_checkpoint(path, model, optimizer)
        except DamagedCheckpoint as e:
            damaged.append(str(e))
            if clean:
                with contextlib.suppress(OSError):
                    os.replace(path, path + ".damaged")
                    e = f"{e}; renamed {os.path.basename(path)}.damaged"
            logger.warning("%s; trying the previous checkpoint", e)
            continue
        if damaged:
            logger.warning("resuming from %s: the %d newer checkpoint(s) are damaged", path, len(damaged))
        return path, position
    if damaged:
        raise DamagedCheckpoint(f"no checkpoint in {folder} can be read ({'; '.join(damaged)}): "
                                f"start afresh (--no-resume) or resume from a copy (--resume FILE)")
    return None, None
