"""The elastic MindIR is light: its sampled weights are run-time state,
stored without data (the file holds the control weights once, as a fixed
export holds its weights), and filled by the first call, so a freshly
loaded MindIR still gives the pruned network's outputs at every width."""
import numpy as np
import pytest
from mindspore import Tensor
from mindspore.train.mind_ir_pb2 import ModelProto

from inn_ms.elastic import elastic_sizes, export_elastic, is_runtime_state
from inn_ms.export import export_mindir, load_mindir
from inn_ms.prune import prune
from model_zoo import create_model

WIDTHS = (8, 16, 16, 16, 32)


def _parameters(path):
    model = ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    return {p.name[p.name.find(":") + 1:]: len(p.raw_data) for p in model.graph.parameter}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("light")
    model = create_model("mnist_cnn", widths=WIDTHS)
    elastic = folder / "e.mindir"
    export_elastic(model, str(elastic), (1, 1, 28, 28), backend="matmul", buckets=(0.5, 1.0))
    full = folder / "full.mindir"
    plain, _ = prune(model, keep=1.0)
    export_mindir(plain, str(full), (1, 1, 28, 28), backend="matmul")
    return model, str(elastic), str(full)


def test_sampled_weights_are_stored_without_data(exported):
    model, elastic, full = exported
    params = _parameters(elastic)
    state = {k: v for k, v in params.items() if is_runtime_state(k)}
    assert len(state) == 2 * 6 * 2  # two buckets, six layers, a weight and a bias each
    assert all(v == 0 for v in state.values())
    # What is stored is the control weights (here of full-width shape) and
    # small vectors: no more than the fixed full-width export's weights.
    stored = sum(params.values())
    assert stored <= 1.01 * sum(_parameters(full).values()), (stored, sum(_parameters(full).values()))


def test_a_freshly_loaded_mindir_fills_its_samples_on_the_first_call(exported, rng):
    """Every width, in the order a device might choose them, equals the
    network pruned to it; each first call in a bucket writes its buffers."""
    model, elastic, _ = exported
    x = rng.normal(size=(3, 1, 28, 28)).astype(np.float32)
    refs = {}
    for keep in (0.5, 1.0, 0.4):
        plain, _ = prune(model, keep=keep)
        plain.set_train(False)
        refs[keep] = plain(Tensor(x)).asnumpy()
    graph = load_mindir(elastic)
    for keep in (0.4, 1.0, 1.0, 0.5, 0.4, 1.0):
        out = graph(Tensor(x), elastic_sizes(model, keep=keep)).asnumpy()
        np.testing.assert_allclose(out, refs[keep], rtol=1e-4, atol=1e-4 * np.abs(refs[keep]).max())


def test_only_sampled_weights_are_runtime_state():
    assert is_runtime_state("buckets.0.network.conv1.sampled_weight")
    assert is_runtime_state("buckets.1.network.fc.sampled_bias")
    assert not is_runtime_state("network.conv1.weight")
    assert not is_runtime_state("buckets.0.state.sizes")
