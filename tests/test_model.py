"""IntegralModel: groups found from the layers, resize, size-keyed graphs,
discretize, channel selection and compression."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from inn_ms.layers import IntegralConv2d, IntegralDense
from inn_ms.model import IntegralModel, count_parameters, find_groups
from model_zoo import create_model


@pytest.fixture
def resnet():
    return create_model("resnet_small", widths=(8, 16, 16), blocks=1)


def _x(rng, shape=(2, 3, 16, 16)):
    return Tensor(rng.normal(size=shape).astype(np.float32))


def test_groups_follow_residual_structure(resnet):
    groups = resnet.groups
    net = resnet.network
    # Every conv writing into a residual stage shares that stage's partition.
    block = net.blocks[1]
    assert block.conv2.partitions["out"] is groups["s1"]
    assert block.shortcut.partitions["out"] is groups["s1"]
    assert block.conv1.partitions["out"] is block.conv2.partitions["in"] is groups["s1b0"]
    # Network input and class scores stay discrete.
    assert "in" not in net.stem.partitions
    assert "out" not in net.fc.partitions
    assert list(find_groups(net)) == list(groups)


def test_resize_by_keep_and_by_name(resnet):
    sizes = resnet.resize(keep=0.5)
    assert sizes == {n: max(1, round(p.full_size / 2)) for n, p in resnet.groups.items()}
    resnet.resize(sizes={"s2": 3})
    assert resnet.sizes["s2"] == 3 and resnet.sizes["s1"] == 8


@pytest.mark.parametrize("bad", [{"nope": 3}, {"s0": 0}, {"s0": 9}, {"s0": 2.5}])
def test_resize_rejects_bad_sizes_without_changing_anything(resnet, bad):
    before = dict(resnet.sizes)
    with pytest.raises(ValueError) as err:
        resnet.resize(sizes=bad)
    assert list(bad)[0] in str(err.value)
    assert dict(resnet.sizes) == before


@pytest.mark.parametrize("keep", [0, -0.1, 1.5, True])
def test_resize_rejects_bad_keep(resnet, keep):
    with pytest.raises(ValueError, match="keep"):
        resnet.resize(keep=keep)


def _pynative(net, x):
    """``net``'s output in PyNative, the mode put back: a reference computed
    without compiling a graph for it (a few seconds of CPU each)."""
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        return net(x).asnumpy()
    finally:
        ms.set_context(mode=mode)


def test_graph_mode_recompiles_when_width_changes(resnet, rng):
    """The stale-graph guard: after compiling at one width, a new width must
    change the output (shape of inner activations, values) and going back
    must reuse the first graph's results exactly."""
    ms.set_context(mode=ms.GRAPH_MODE)
    x = _x(rng)
    full = resnet(x).asnumpy()
    resnet.resize(keep=0.5)
    half = resnet(x).asnumpy()
    ref_half = resnet.discretize()(x).asnumpy()  # compiled too: the plain network in graph mode
    np.testing.assert_allclose(half, ref_half, rtol=1e-4, atol=1e-5)
    assert np.abs(half - full).max() > 1e-3
    resnet.resize(keep=1.0)
    np.testing.assert_array_equal(resnet(x).asnumpy(), full)


def test_single_layer_graph_output_shape_follows_resize(rng):
    ms.set_context(mode=ms.GRAPH_MODE)
    layer = IntegralConv2d(4, 12, 3, padding=1, in_partition=None)
    x = _x(rng, (1, 4, 6, 6))
    assert layer(x).shape == (1, 12, 6, 6)
    layer.partitions["out"].resize(5)
    y = layer(x)
    assert y.shape == (1, 5, 6, 6)
    np.testing.assert_allclose(y.asnumpy(), _pynative(layer.discretize(), x), rtol=1e-4, atol=1e-5)


def test_discretize_matches_model_at_every_width(resnet, rng, mode):
    """The model (compiled at each width in graph mode) against its plain
    network run in PyNative: compiling the plain networks as well doubled the
    graph-mode case's cost (a compiled plain network is checked in
    test_graph_mode_recompiles_when_width_changes)."""
    x = _x(rng)
    for keep in (1.0, 0.75, 0.5):
        resnet.resize(keep=keep)
        plain = resnet.discretize()
        assert not any(isinstance(c, (IntegralConv2d, IntegralDense)) for _, c in plain.cells_and_names())
        np.testing.assert_allclose(_pynative(plain, x), resnet(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_discretized_network_has_real_thinner_layers(resnet):
    resnet.resize(keep=0.5)
    plain = resnet.discretize()
    assert plain.stem.weight.shape == (4, 3, 3, 3)
    assert plain.blocks[1].conv1.weight.shape == (8, 4, 3, 3)
    assert plain.fc.weight.shape == (10, 8)
    assert count_parameters(plain) < count_parameters(resnet.network) / 3


def test_discretized_copy_is_independent_of_the_model(rng):
    """Non-integral cells are copied with their own parameters: changing the
    plain network leaves the integral model untouched."""
    model = create_model("mnist_cnn", widths=(4, 4, 4, 4, 8))
    x = _x(rng, (2, 1, 28, 28))
    before = model(x).asnumpy()
    plain = model.discretize()
    for p in plain.get_parameters():
        p.set_data(Tensor(np.zeros(p.shape, np.float32)))
    np.testing.assert_array_equal(model(x).asnumpy(), before)
    assert model.network.conv1 is not plain.conv1


def test_compression_counts_discretized_parameters(resnet):
    full = count_parameters(create_model("resnet_small", integral=False, widths=(8, 16, 16), blocks=1))
    resnet.resize(keep=0.5)
    c = resnet.compression()
    half = count_parameters(create_model("resnet_small", integral=False, widths=(4, 8, 8), blocks=1))
    assert c["full_params"] == full
    assert c["params"] == half
    assert resnet.sizes["s0"] == 4  # compression() leaves the sizes as they were


def test_select_channels_all_is_identity_and_subset_matches_manual_slicing(resnet, rng):
    x = _x(rng)
    y = resnet(x).asnumpy()
    every = resnet.select_channels({n: np.arange(p.full_size) for n, p in resnet.groups.items()})
    np.testing.assert_allclose(every(x).asnumpy(), y, rtol=1e-5, atol=1e-6)
    idx = np.array([0, 2, 5])
    sub = resnet.select_channels({"s0": idx})
    full_stem = resnet.network.stem.discretize()
    np.testing.assert_allclose(sub.stem.weight.asnumpy(), full_stem.weight.asnumpy()[idx], rtol=1e-6)
    np.testing.assert_allclose(sub.blocks[0].conv1.weight.asnumpy(),
                               resnet.network.blocks[0].conv1.discretize().weight.asnumpy()[:, idx], rtol=1e-6)


@pytest.mark.parametrize("bad", [{"zz": [0]}, {"s0": [0, 0]}, {"s0": [8]}, {"s0": []}])
def test_select_channels_rejects_bad_indices(resnet, bad):
    with pytest.raises(ValueError):
        resnet.select_channels(bad)


def test_model_without_integral_layers_is_refused():
    with pytest.raises(ValueError, match="no integral layer"):
        IntegralModel(nn.SequentialCell([nn.Dense(3, 4)]))


def test_compression_is_stable_across_calls(resnet):
    resnet.resize(keep=0.5)
    first = resnet.compression()
    resnet.resize(keep=0.75)
    second = resnet.compression()
    assert first["full_params"] == second["full_params"]
    assert first["params"] < second["params"] < second["full_params"]


def test_create_model_loads_a_mindspore_checkpoint(tmp_path, rng):
    """create_model(checkpoint=...) restores every parameter; a checkpoint of
    another architecture is refused."""
    src = create_model("mnist_cnn", widths=(4, 4, 8, 8, 8))
    x = _x(rng, (2, 1, 28, 28))
    path = str(tmp_path / "m.ckpt")
    ms.save_checkpoint(src, path)
    ms.set_seed(123)  # a different initialisation
    loaded = create_model("mnist_cnn", widths=(4, 4, 8, 8, 8), checkpoint=path)
    np.testing.assert_array_equal(loaded(x).asnumpy(), src(x).asnumpy())
    with pytest.raises(ValueError, match="shape mismatch.*conv1.weight"):
        create_model("mnist_cnn", widths=(16, 16, 16, 16, 16), checkpoint=path)


def test_compression_after_pipeline_b_counts_the_full_network(resnet):
    """Pipeline B makes a group's partition trainable at the target size; the
    network's full size stays what it was (compression used to report nothing removed)."""
    from inn_ms.partition_tuning import make_partitions_trainable
    full = count_parameters(create_model("resnet_small", integral=False, widths=(8, 16, 16), blocks=1))
    half = count_parameters(create_model("resnet_small", integral=False, widths=(4, 8, 8), blocks=1))
    make_partitions_trainable(resnet, dict(resnet.sizes_for_keep(0.5)))
    c = resnet.compression()
    assert c["full_params"] == full
    assert c["params"] == half
    assert c["compression"] == 1 - half / full


def test_at_sizes_runs_a_block_at_other_sizes_and_puts_the_old_ones_back(resnet):
    resnet.resize(sizes={"s2": 5})
    before = dict(resnet.sizes)
    with resnet.at_sizes(keep=0.5) as model:
        assert model is resnet and dict(resnet.sizes) == dict(resnet.sizes_for_keep(0.5))
        resnet.resize(sizes={"s1": 3})  # a resize inside the block is undone as well
    assert dict(resnet.sizes) == before
    with pytest.raises(RuntimeError, match="inside"):
        with resnet.at_sizes(resnet.full_sizes):
            assert dict(resnet.sizes) == dict(resnet.full_sizes)
            raise RuntimeError("inside")
    assert dict(resnet.sizes) == before
    with pytest.raises(ValueError, match="s0"):
        with resnet.at_sizes({"s0": 0}):
            pass
    assert dict(resnet.sizes) == before


def test_at_sizes_with_a_resampling_rule_samples_with_it_and_puts_the_rules_back(resnet, rng):
    """The block's rule is the one sampled with (its discretized network is
    the one set_resampling gives), and the rules come back, also on an error
    or a refused rule."""
    resnet.set_resampling({"s1": "antialiased"})
    before = dict(resnet.resampling)  # groups differ: a {group: rule} mapping
    x = Tensor(_x(rng))
    resnet.resize(keep=0.5)
    resnet.set_resampling("antialiased")
    expected = resnet.discretize()(x).asnumpy()
    resnet.set_resampling(before)
    resnet.resize(sizes=dict(resnet.full_sizes))
    with resnet.at_sizes(keep=0.5, resampling="antialiased"):
        assert resnet.resampling == "antialiased"
        got = resnet.discretize()(x).asnumpy()
    np.testing.assert_array_equal(got, expected)
    assert dict(resnet.resampling) == before and dict(resnet.sizes) == dict(resnet.full_sizes)
    with pytest.raises(RuntimeError, match="inside"):
        with resnet.at_sizes(resampling="point"):
            raise RuntimeError("inside")
    assert dict(resnet.resampling) == before
    with pytest.raises(ValueError, match="rule"):
        with resnet.at_sizes(keep=0.5, resampling="nearest"):
            pass
    assert dict(resnet.resampling) == before and dict(resnet.sizes) == dict(resnet.full_sizes)


def test_pruning_budgets_elastic_networks_and_conversion_checks_leave_the_sizes_alone(resnet, rng):
    """The library's own "at these sizes, then back" blocks (all written with
    ``at_sizes``) give the model back at the sizes it had, also on an error."""
    from inn_ms.convert import check_conversion, convert
    from inn_ms.elastic import make_elastic
    from inn_ms.prune import prune, sizes_for_budget
    resnet.resize(sizes={"s1": 5, "s2": 6})
    before = dict(resnet.sizes)
    plain, report = prune(resnet, keep=0.5)
    assert report["sizes"] == dict(resnet.sizes_for_keep(0.5)) and plain.fc.weight.shape[1] == report["sizes"]["s2"]
    sizes = sizes_for_budget(resnet, params=count_parameters(plain))
    assert count_parameters(prune(resnet, sizes=sizes)[0]) <= count_parameters(plain)
    with pytest.raises(ValueError, match="no width meets the budget"):
        sizes_for_budget(resnet, params=1)
    make_elastic(resnet, buckets=(0.5,))
    assert dict(resnet.sizes) == before

    original = create_model("resnet_small", integral=False, widths=(8, 16, 16), blocks=1)
    x = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)
    model = convert(original, x)
    model.resize(keep=0.5)
    half = dict(model.sizes)
    assert check_conversion(original, model, x) <= 1e-5
    assert dict(model.sizes) == half


def test_a_cell_registered_twice_is_counted_and_copied_once():
    """mindcv's SqueezeNet registers its last convolution under two names:
    the plain network holds one copy of it (before: two, and compression
    counted its parameters twice)."""
    m = create_model("mnist_cnn")
    plain = m.discretize()
    m.network.alias = m.network.conv2  # the same integral layer under a second name
    twice = m.discretize()
    assert twice.alias is twice.conv2
    assert count_parameters(twice) == count_parameters(plain)
    m.resize(keep=0.5)
    half = m.discretize()
    assert half.alias is half.conv2 and m.compression()["params"] == count_parameters(half)
