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
def _eager_in_order():
    """Eager operators launched in order for the whole test process, from
    its first test (``inn_ms.runner.eager_in_order``: the config runs and
    the CLI switch it on too, so without this a test's CPU cost depended on
    whether such a test had run before it in the same worker). Same
    results; a config test's process took 66 s of CPU queued, 12 s in order."""
    from inn_ms.runner import eager_in_order
    eager_in_order("CPU")
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
