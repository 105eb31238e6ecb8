"""An integral model holds a bounded number of compiled graphs in graph mode
(``max_graphs``, :mod:`inn_ms.keyed`): evaluating many widths in one process
keeps its memory bounded, the outputs stay those of each width, and a width
called again while its graph is held does not compile again."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from inn_ms.cells import compiled_phases, last_compiled_phase
from model_zoo import create_model
from tests.helpers import ROOT, script_env


def test_at_most_max_graphs_and_the_same_outputs_as_pynative(rng):
    ms.set_seed(0)
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    model.set_train(False)
    model.max_graphs = 2
    x = Tensor(rng.normal(size=(4, 1, 28, 28)).astype(np.float32))
    try:
        for keep in (1.0, 0.75, 0.5, 1.0):
            model.resize(keep=keep)
            ms.set_context(mode=ms.PYNATIVE_MODE)
            ref = model(x).asnumpy()
            ms.set_context(mode=ms.GRAPH_MODE)
            out = model(x).asnumpy()
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
            held, phase = compiled_phases(model), last_compiled_phase(model)
            assert 1 <= len(held) <= 2
            model(x).asnumpy()  # the same width and shape: the held graph, nothing compiled
            assert compiled_phases(model) == held and last_compiled_phase(model) == phase
            model(x[:2]).asnumpy()  # another input shape is another graph, within the bound
            assert len(compiled_phases(model)) <= 2
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_the_bound_holds_across_a_renewed_identity_and_pynative_calls(rng):
    from inn_ms.cells import renew_graph_identity
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    model.set_train(False)
    model.max_graphs = 2
    x = Tensor(rng.normal(size=(2, 1, 28, 28)).astype(np.float32))
    try:
        for keep in (1.0, 0.75):
            model.resize(keep=keep)
            ms.set_context(mode=ms.PYNATIVE_MODE)
            model(x).asnumpy()
            ms.set_context(mode=ms.GRAPH_MODE)
            model(x).asnumpy()
            renew_graph_identity(model)  # every held graph is stale now: the next call compiles
            model(x).asnumpy()
            assert len(compiled_phases(model)) <= 2
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_max_graphs_none_holds_every_graph(rng):
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    model.set_train(False)
    model.max_graphs = None
    x = Tensor(rng.normal(size=(2, 1, 28, 28)).astype(np.float32))
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        for keep in (1.0, 0.75, 0.5):
            model.resize(keep=keep)
            model(x).asnumpy()
        assert len(compiled_phases(model)) == 3
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


_CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, "scripts/bench")
from procmem import status_mb
import mindspore as ms
from mindspore import Tensor
from model_zoo import create_model

ms.set_context(mode=ms.GRAPH_MODE)
ms.set_seed(0)
model = create_model("mnist_cnn")
model.set_train(False)
model.max_graphs = None if sys.argv[1] == "none" else int(sys.argv[1])
x = Tensor(np.random.default_rng(0).normal(size=(100, 1, 28, 28)).astype(np.float32))
rss = []
for keep in np.linspace(1.0, 0.85, 6):  # widths near full: graphs of about one size
    model.resize(keep=float(keep))
    model(x).asnumpy()
    rss.append(status_mb("VmRSS"))
print(json.dumps({"rss": rss, "peak": status_mb("VmHWM")}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status (Linux)")
def test_six_widths_hold_about_two_graphs_of_memory():
    """6 widths with ``max_graphs=2``: the peak stays within 3 graphs' memory
    above the first width's (one graph's memory: what the second width
    added). Holding every graph it would be about 5."""
    r = subprocess.run([sys.executable, "-c", _CHILD, "2"], cwd=ROOT, env=script_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    one = m["rss"][1] - m["rss"][0]
    assert one > 20, m  # a graph at batch 100 holds tens of MB
    assert m["peak"] - m["rss"][0] <= 3 * one, m
