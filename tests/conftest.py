"""Shared test setup: quiet MindSpore, deterministic seeds, both execution modes."""
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


@pytest.fixture(params=["pynative", "graph"])
def mode(request):
    """Run a test in PyNative and in graph mode."""
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)
