"""Output paths the command line cannot write: one line ``inn-ms: error:
<path>: <reason>`` (exit code 1, no traceback), found before any long work,
and nothing left behind — no temporary file, whatever the writer. A full
disk is simulated (see :func:`full_disk`); outputs get the user's umask mode."""
import builtins
import errno
import os
import stat

import pytest

from inn_ms.cli import main
from helpers import ROOT

CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")
# A run of a few seconds: 32 digits, two batches, narrow layers, PyNative.
TINY = ["data.n_train=32", "data.n_test=16", "train.batch_size=16", "train.epochs=1",
        "model.kwargs.widths=[4,4,4,4,8]", "device.mode=pynative"]
CONVERT = ["convert", "mnist_cnn", "--no-permute", "--input-shape", "1,1,28,28"]


def _sets(*extra):
    out = []
    for s in TINY + list(extra):
        out += ["--set", s]
    return out


def _files(folder):
    """Every file and folder under ``folder``, hidden ones included, relative."""
    out = []
    for root, dirs, names in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, n), folder) for n in dirs + names]
    return sorted(out)


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("inn-ms: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def scene(tmp_path, monkeypatch):
    """A folder holding a directory named like an output file, a plain file
    where a folder is expected, and a dummy checkpoint; the working directory."""
    for name in ("isdir.ckpt", "isdir.inn", "isdir.mindir", "evdir.json"):
        (tmp_path / name).mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "c.ckpt").write_bytes(b"not read")
    monkeypatch.chdir(tmp_path)
    return tmp_path


CASES = {
    "convert to a folder (.ckpt)": (CONVERT + ["--out", "{d}/isdir.ckpt"], "{d}/isdir.ckpt: is a folder, not a file"),
    "convert to a folder (.inn)": (CONVERT + ["--out", "{d}/isdir.inn"], "{d}/isdir.inn: is a folder, not a file"),
    "convert into a file": (CONVERT + ["--out", "{d}/afile/x.inn"], "{d}/afile/x.inn: {d}/afile is a file"),
    "convert into /proc (.inn)": (CONVERT + ["--out", "/proc/x.inn"], "/proc/x.inn: cannot create files in /proc"),
    "convert into /proc (.ckpt)": (CONVERT + ["--out", "/proc/x.ckpt"], "/proc/x.ckpt: cannot create files in /proc"),
    "convert into /sys": (CONVERT + ["--out", "/sys/x.ckpt"], "/sys/x.ckpt: cannot create files in /sys"),
    "prune to a folder": (["prune", "m.inn", "--keep", "0.5", "--out", "{d}/isdir.mindir"],
                          "{d}/isdir.mindir: is a folder, not a file"),
    "prune into /proc": (["prune", "m.inn", "--keep", "0.5", "--out", "/proc/x.mindir"],
                         "/proc/x.mindir: cannot create files in /proc"),
    "elastic into /proc": (["elastic", "m.inn", "--out", "/proc/x.mindir"], "/proc/x.mindir: cannot create files"),
    "train: output_dir a file": (["train", "--config", CONFIG, "--no-resume", "--quiet"]
                                 + _sets("output_dir={d}/afile"), "{d}/afile: is a file, not a folder"),
    "train: output_dir in /proc": (["train", "--config", CONFIG, "--no-resume", "--quiet"]
                                   + _sets("output_dir=/proc/x/run"), "/proc/x/run: cannot create files in /proc"),
    "eval: table a folder": (["eval", "--config", CONFIG, "--checkpoint", "{d}/c.ckpt", "--out", "{d}/evdir"]
                             + _sets(), "{d}/evdir.json: is a folder, not a file"),
    "export: out-dir a file": (["export", "--config", CONFIG, "--out-dir", "{d}/afile"] + _sets(),
                               "{d}/afile: is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unwritable_output_is_one_line_and_leaves_nothing(scene, capsys, case):
    argv, message = CASES[case]
    for top in ("/proc", "/sys"):
        if message.startswith(top) and not os.path.isdir(top):
            pytest.skip(f"no {top} here")
    before = _files(scene)
    argv = [a.replace("{d}", str(scene)) for a in argv]
    assert main(argv) == 1
    line = _one_error_line(capsys)
    assert message.replace("{d}", str(scene)) in line, line
    assert _files(scene) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(CONVERT + ["--out", str(ro / "x.ckpt")]) == 1
        assert f"{ro / 'x.ckpt'}: cannot create files in {ro} (Permission denied)" in _one_error_line(capsys)
        assert not list(ro.iterdir())
    finally:
        ro.chmod(0o755)


class _FullDisk:
    """Files opened for writing under ``folder`` share ``budget`` bytes; the
    write that goes past it writes what fits, then raises ENOSPC as a full
    disk does. Installed at the lowest level Python and MindSpore write
    through: ``open`` and MindSpore's checkpoint file system (its
    ``_ckpt_fs.create``, bound to ``open`` when MindSpore starts)."""

    def __init__(self, folder, budget):
        self.folder, self.left, self.real_open = os.path.abspath(folder), budget, builtins.open

    def open(self, file, mode="r", *args, **kwargs):
        f = self.real_open(file, mode, *args, **kwargs)
        writing = any(c in mode for c in "wax+")
        if writing and isinstance(file, (str, os.PathLike)) and \
                os.path.abspath(file).startswith(self.folder + os.sep):
            return _Capped(f, self)
        return f


class _Capped:
    def __init__(self, f, disk):
        self._f, self._disk = f, disk

    def write(self, data):
        room = self._disk.left
        if len(data) > room:
            self._f.write(data[:room])
            self._f.flush()
            self._disk.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.left -= len(data)
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(folder, budget)``: the disk holding ``folder`` fills up
    after ``budget`` more bytes (simulated: no tmpfs needs mounting)."""
    from mindspore.train import serialization

    def install(folder, budget):
        disk = _FullDisk(folder, budget)
        serialization._ensure_ckpt_fs_initialized()
        monkeypatch.setattr(builtins, "open", disk.open)
        monkeypatch.setattr(serialization._ckpt_fs, "create", disk.open)
        return disk
    return install


def test_convert_on_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, capsys, full_disk):
    out = tmp_path / "full" / "x.ckpt"
    out.parent.mkdir()
    full_disk(out.parent, 20_000)
    assert main(CONVERT + ["--out", str(out)]) == 1
    assert f"{out}: No space left on device" in _one_error_line(capsys)
    assert _files(out.parent) == []  # neither our temporary nor MindSpore's own .tmp beside it


def test_training_on_a_full_disk_keeps_what_was_complete(tmp_path, capsys, full_disk):
    """config.yaml fits, the first checkpoint does not: one line naming the
    checkpoint, no temporary, nothing half-written under a final name."""
    out = tmp_path / "run"
    full_disk(tmp_path, 3_000)
    argv = ["train", "--config", CONFIG, "--no-resume", "--quiet"] + _sets(f"output_dir={out}")
    assert main(argv) == 1
    assert f"{out / 'ckpt_e0001_s00000002.ckpt'}: No space left on device" in _one_error_line(capsys)
    assert _files(out) == ["config.yaml"]


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_outputs_have_the_umask_mode(tmp_path, capsys, umask_027):
    """Not MindSpore's read-only 0400, not a temporary file's private 0600."""
    out = tmp_path / "m.ckpt"
    assert main(CONVERT + ["--out", str(out)]) == 0
    run = tmp_path / "run"
    assert main(["train", "--config", CONFIG, "--no-resume", "--quiet"] + _sets(f"output_dir={run}")) == 0
    assert main(["eval", "--config", CONFIG, "--checkpoint", str(run / "final.ckpt"), "--out", str(tmp_path / "ev"),
                 "--widths", "1.0", "--quiet"] + _sets(f"output_dir={run}")) == 0
    capsys.readouterr()
    ours = [out, run / "config.yaml", run / "history.json", run / "final.ckpt", run / "ckpt_e0001_s00000002.ckpt",
            tmp_path / "ev.json", tmp_path / "ev.png"]
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in ours}
    assert set(modes.values()) == {oct(umask_027)}, modes
    assert not [p for p in _files(tmp_path) if "partial" in p or p.endswith(".tmp")]


def test_atomic_write_names_the_target_and_removes_mindspores_temporary(tmp_path):
    """The helper itself: MindSpore's checkpoint writer keeps its own
    ``<name>.tmp`` beside the file it was given; both go on error, and the
    error names the file the caller asked for."""
    import mindspore as ms
    from mindspore import nn
    from inn_ms.fileio import atomic_write
    target = tmp_path / "w.ckpt"
    with pytest.raises(OSError) as info:
        with atomic_write(target) as tmp:
            ms.save_checkpoint(nn.Dense(2, 2), tmp)
            with open(tmp[:-len(".ckpt")] + ".tmp", "wb") as f:  # as MindSpore leaves it when a write fails
                f.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    (tmp_path / "d.json").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        with atomic_write(tmp_path / "d.json") as tmp, open(tmp, "w") as f:
            f.write("{}")
    assert info.value.filename == str(tmp_path / "d.json")
    assert _files(tmp_path) == ["d.json"]
