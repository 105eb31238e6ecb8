"""Writing files atomically: the one helper every writer of the library uses.

A file appears under its final name only when it is complete: the writer
fills a temporary file in the same folder (same file system, so the final
``os.replace`` is one atomic step), which is flushed to disk first. On any
error — the writer's, a full disk, a read-only folder — the temporary file
is removed and whatever was under the final name before is left as it was.
The file gets the mode a plain ``open(path, "w")`` would give (``0o666``
less the user's umask): MindSpore writes its checkpoints read-only, and
temporary files are private (``0o600``) until they are renamed.

An ``OSError`` raised while writing names the file the caller asked for
(not the temporary one): ``IsADirectoryError: [Errno 21] Is a directory:
'out.ckpt'``. :func:`check_output` and :func:`check_output_dir` refuse an
output that cannot be written before any long work starts.
"""
import contextlib
import errno
import json
import os
import tempfile


def _umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _renamed(error, path, temporaries):
    """``error`` naming ``path`` instead of one of our ``temporaries`` (a
    full disk names no file at all); other errors are returned as they are."""
    if not isinstance(error, OSError) or error.errno is None:
        return error
    if error.filename is not None and os.fspath(error.filename) not in temporaries:
        return error
    return type(error)(error.errno, error.strerror, path)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary file name beside ``path`` (same extension, for
    writers that insist on one, like ``ms.save_checkpoint`` or
    ``ms.export``); when the block ends without error, flush it to disk and
    rename it to ``path``. On error, remove it (and the ``.tmp`` file
    MindSpore's own savers write beside it) and re-raise; an ``OSError``
    then names ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if stem.endswith(".tar"):  # keep double extensions whole
        stem, ext = stem[:-4], ".tar" + ext
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=f".partial{ext}")
    except OSError as e:
        raise _renamed(e, path, {e.filename}) from None
    os.close(fd)
    sidecar = tmp[:-len(ext)] + ".tmp" if ext else tmp + ".tmp"  # ms.save_checkpoint's own temporary
    try:
        yield tmp
        os.chmod(tmp, _umask_mode())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        for leftover in (tmp, sidecar):
            with contextlib.suppress(OSError):
                os.remove(leftover)
        renamed = _renamed(e, path, {tmp, sidecar, os.path.abspath(tmp), os.path.abspath(sidecar)})
        if renamed is e:
            raise
        raise renamed from e
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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


def _check_folder(folder, target):
    """Refuse ``target`` unless files can be created in ``folder`` or, if it
    does not exist yet, in its nearest existing ancestor (where it would be
    made). Leaves nothing behind."""
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a folder", target)
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".inn_ms-write-test.")
    except OSError as e:
        raise type(e)(e.errno, f"cannot create files in {existing} ({e.strerror})", target) from None
    os.close(fd)
    os.remove(probe)


def check_output(path):
    """Raise an ``OSError`` naming ``path`` if it cannot be written as a file:
    it is a folder, its folder is a file or not writable (a read-only file
    system, ``/proc``, no permission). Called before long work, so that a
    bad output path costs nothing; a full disk still shows only when writing."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", path)
    _check_folder(os.path.dirname(os.path.abspath(path)), path)
    return path


def check_output_dir(folder):
    """Raise an ``OSError`` naming ``folder`` if outputs cannot be written in
    it: it is a file, or it (or the folder it would be made in) is not writable."""
    folder = os.fspath(folder)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", folder)
    _check_folder(folder, folder)
    return folder


def describe_os_error(error):
    """One line for an ``OSError``: the path(s) it names and the reason, as
    the command line prints it (no traceback)."""
    reason = error.strerror or str(error)
    if error.filename is not None and error.filename2 is not None:
        return f"{error.filename} -> {error.filename2}: {reason}"
    if error.filename is not None:
        return f"{error.filename}: {reason}"
    return reason
