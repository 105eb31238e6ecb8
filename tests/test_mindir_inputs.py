"""A pruned (plain) MindIR run by inn_ms's runner: every call is checked
against the inputs the MindIR declares, and a bad one is named (a wrong
channel count used to run silently with a wrong batch of results)."""
import numpy as np
import pytest
from mindspore import Tensor

from inn_ms.export import export_mindir, load_mindir
from inn_ms.prune import prune
from model_zoo import create_model


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    model = create_model("mnist_cnn", widths=(4, 8, 8, 8, 16))
    plain, _ = prune(model, keep=0.5)
    path = tmp_path_factory.mktemp("mindir") / "p.mindir"
    export_mindir(plain, str(path), (1, 1, 28, 28), backend="matmul")
    return load_mindir(str(path)), plain


def _zeros(shape, dtype=np.float32):
    return Tensor(np.zeros(shape, dtype))


@pytest.mark.parametrize("inputs, message", [
    ((_zeros((2, 3, 28, 28)),), r"input 'x' must have shape \(N, 1, 28, 28\), got \(2, 3, 28, 28\) \(axis 1: 3 "),
    ((_zeros((2, 1, 14, 14)),), r"input 'x' must have shape \(N, 1, 28, 28\), got \(2, 1, 14, 14\) \(axis 2: 14"),
    ((_zeros((0, 1, 28, 28)),), r"input 'x' has 0 entries on its free axis 0 .* needs at least 1"),
    ((_zeros((2, 1, 28, 28), np.float64),), "input 'x' must be float32, got float64"),
    ((_zeros((1, 28, 28)),), r"input 'x' must have rank 4 \(N, 1, 28, 28\), got shape \(1, 28, 28\)"),
    ((np.zeros((2, 1, 28, 28), np.float32),), r"input 'x' must be a mindspore.Tensor .* got numpy.ndarray"),
])
def test_a_call_that_does_not_fit_the_declared_inputs_is_named(pruned, inputs, message):
    graph, _ = pruned
    with pytest.raises(ValueError, match=message):
        graph(*inputs)


def test_a_call_that_fits_runs_at_any_batch(pruned, rng):
    """The checks refuse nothing valid (a guard, not a defect of the old code)."""
    graph, plain = pruned
    plain.set_train(False)
    for batch in (1, 3):
        x = Tensor(rng.normal(size=(batch, 1, 28, 28)).astype(np.float32))
        np.testing.assert_allclose(graph(x).asnumpy(), plain(x).asnumpy(), rtol=1e-5, atol=1e-5)
