"""The shell scripts and packaging: scripts/run_distribute_train.sh picks its
Python as scripts/setup_env.sh does (INN_MS_PYTHON, an active environment,
./.venv) — a checkout without ./.venv works — and says in one line when
there is none; requirements.txt is the one list of runtime packages, which
pyproject.toml reads."""
import os
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT

CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")
# A PATH with the usual system folders only: whatever python3 is there has no MindSpore.
BARE_PATH = "/usr/bin:/bin"


@pytest.fixture
def checkout(tmp_path):
    """A copy of the repository's scripts beside links to its code, with no
    ./.venv: what a user who pip-installed the package has."""
    (tmp_path / "scripts").mkdir()
    for name in os.listdir(os.path.join(ROOT, "scripts")):
        if name.endswith((".sh", ".py")):
            shutil.copy(os.path.join(ROOT, "scripts", name), tmp_path / "scripts" / name)
    for name in ("inn_ms", "model_zoo", "ascend_configs"):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    # A stand-in launcher: prints the python that workers would get from PATH and its arguments.
    msrun = tmp_path / "fake_msrun"
    msrun.write_text('#!/bin/sh\necho "workers run $(command -v python3)"\necho "msrun $*"\n')
    msrun.chmod(0o755)
    return tmp_path


def _run(checkout, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "INN_MS_PYTHON",
                                                            "PYTHON", "MSRUN")}
    env.update({"PATH": BARE_PATH, "MSRUN": str(checkout / "fake_msrun"), "GLOG_v": "3", **env_extra})
    return subprocess.run(["bash", str(checkout / "scripts" / "run_distribute_train.sh"), "2", CONFIG, "--set",
                           f"output_dir={checkout / 'out'}"], cwd=str(checkout), env=env, capture_output=True,
                          text=True, timeout=300)


def test_distributed_launcher_uses_inn_ms_python_without_a_venv(checkout):
    r = _run(checkout, INN_MS_PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"workers run {os.path.dirname(sys.executable)}/python3" in r.stdout, r.stdout
    assert "--worker_num=2 --local_worker_num=2" in r.stdout
    assert f"--log_dir={checkout / 'out'}/msrun_logs" in r.stdout
    assert f"{checkout}/scripts/train.py --config {CONFIG} --set distributed=true" in r.stdout


def test_distributed_launcher_uses_the_active_environment(checkout):
    venv = os.path.dirname(os.path.dirname(sys.executable))
    r = _run(checkout, VIRTUAL_ENV=venv, PATH=os.path.dirname(sys.executable) + ":" + BARE_PATH)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"workers run {os.path.dirname(sys.executable)}/python3" in r.stdout


def test_distributed_launcher_without_a_usable_python_says_so_in_one_line(checkout):
    """Before: a Python traceback (ModuleNotFoundError) from the python on PATH."""
    base = os.path.join(sys.base_prefix, "bin", "python3")  # the interpreter the test venv was made from
    if sys.base_prefix == sys.prefix or not os.path.exists(base):
        pytest.skip("the tests do not run in a virtual environment: no Python without MindSpore at hand")
    r = _run(checkout, INN_MS_PYTHON=base)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "INN_MS_PYTHON" in lines[0] and "setup_env.sh" in lines[0]


def _requirement_names(lines):
    from packaging.requirements import Requirement
    return [Requirement(line).name for line in lines]


def test_requirements_txt_is_the_one_list_pyproject_reads():
    """Before: pyproject.toml listed its own dependencies, and requirements.txt
    lacked scikit-image."""
    from setuptools.config.pyprojecttoml import read_configuration
    project = read_configuration(os.path.join(ROOT, "pyproject.toml"), expand=False)["project"]
    assert "dependencies" in project.get("dynamic", []) and "dependencies" not in project
    expanded = read_configuration(os.path.join(ROOT, "pyproject.toml"), expand=True)
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        listed = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
    assert expanded["project"]["dependencies"] == listed
    names = _requirement_names(listed)
    for needed in ("mindspore", "numpy", "scikit-image", "mlxtend", "safetensors", "pyyaml", "matplotlib"):
        assert needed in names, needed
