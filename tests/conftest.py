"""Shared test setup: quiet MindSpore, deterministic seeds, both execution modes,
one torch thread for the modules that run torch references.

The independent references themselves are in reference.py.
"""
import gc
import os

os.environ.setdefault("GLOG_v", "3")

import numpy as np
import pytest
import mindspore as ms


@pytest.fixture(autouse=True)
def _seed_and_mode():
    ms.set_seed(0)
    np.random.seed(0)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture(autouse=True, scope="session")
def _launch_blocking():
    """Run PyNative operators synchronously, in this process and in the
    scripts the tests start (they inherit the variable). Results are the
    same; the asynchronous launch queue's threads spend CPU waiting, and on
    this 2-core machine, shared, a zoo network's forward pass took 7-10 s of
    CPU queued against 0.6-1.9 s launched in order (a config test's process
    66 s against 12 s)."""
    os.environ["MS_DEV_LAUNCH_BLOCKING"] = "1"
    ms.runtime.launch_blocking()
    yield


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_module():
    """Free each module's networks and MindSpore's cached graph memory when
    the module ends: one process runs every test, and the cached memory of
    hundreds of compiled graphs otherwise only grows (the suite was killed
    for memory once with other jobs on the machine)."""
    yield
    gc.collect()
    ms.ms_memory_recycle()


@pytest.fixture(params=["pynative", "graph"])
def mode(request):
    """Run a test in PyNative and in graph mode."""
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def torch_single_thread():
    """One torch thread for a whole test module (use it with
    ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``): the tiny
    float64 reference convolutions run ~100x faster on one thread than on
    several competing with MindSpore's. The thread count is restored after
    the module."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
