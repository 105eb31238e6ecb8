"""Writing files atomically: the one helper every writer of the library uses.

A file appears under its final name only when it is complete: the writer
fills a temporary file in the same folder (same file system, so the final
``os.replace`` is one atomic step), which is flushed to disk first. On any
error — the writer's, a full disk, a read-only folder — the temporary file
is removed and whatever was under the final name before is left as it was.
The file gets the mode a plain ``open(path, "w")`` would give (``0o666``
less the user's umask): MindSpore writes its checkpoints read-only, and
temporary files are private (``0o600``) until they are renamed.
"""
import contextlib
import json
import os
import tempfile


def _umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary file name beside ``path`` (same extension, for
    writers that insist on one, like ``ms.save_checkpoint`` or
    ``ms.export``); when the block ends without error, flush it to disk and
    rename it to ``path``. On error, remove it and re-raise."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if stem.endswith(".tar"):  # keep double extensions whole
        stem, ext = stem[:-4], ".tar" + ext
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=f".partial{ext}")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _umask_mode())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, **kwargs):
    """Write ``obj`` as JSON (``indent=2`` unless given) to ``path`` atomically."""
    kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **kwargs) + "\n")
