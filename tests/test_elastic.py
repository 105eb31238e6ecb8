"""The elastic network and MindIR: channel counts chosen at run time must give
the outputs of the network pruned to those counts (zoo networks, and a
converted network with a concatenation, a depthwise convolution, an
unfolded BatchNorm, a residual add and a flatten)."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from inn_ms.convert import convert
from inn_ms.elastic import bucket_rows, elastic_sizes, export_elastic, make_elastic
from inn_ms.export import export_mindir, load_mindir
from inn_ms.prune import prune
from model_zoo import create_model


class Mixed(nn.Cell):
    """stem → [branch a, depthwise branch b] concatenated → BN (not foldable:
    it reads a concatenation) → 1×1 conv + residual → flatten → dense."""

    def __init__(self):
        super().__init__()
        conv = lambda cin, cout, k, **kw: nn.Conv2d(cin, cout, k, pad_mode="pad", padding=k // 2, has_bias=True, **kw)
        self.stem = conv(3, 8, 3)
        self.a = conv(8, 6, 3)
        self.b = conv(8, 8, 3, group=8)
        self.bn = nn.BatchNorm2d(14)
        self.mix = conv(14, 10, 1)
        self.skip = conv(14, 10, 1)
        self.pool = nn.AvgPool2d(4, 4)
        self.fc = nn.Dense(10 * 2 * 2, 5)
        self.relu = nn.ReLU()

    def construct(self, x):
        s = self.relu(self.stem(x))
        y = ops.concat((self.relu(self.a(s)), self.relu(self.b(s))), 1)
        y = self.relu(self.bn(y))
        y = self.relu(self.mix(y) + self.skip(y))
        return self.fc(ops.flatten(self.pool(y)))


def mixed_model(rng):
    net = Mixed()
    for name, p in net.parameters_and_names():
        if name.startswith("bn."):
            lo, hi = (0.5, 1.5) if name.endswith(("gamma", "moving_variance")) else (-0.5, 0.5)
            p.set_data(Tensor(rng.uniform(lo, hi, p.shape).astype(np.float32)))
    return convert(net, (2, 3, 8, 8))


def pruned_output(model, x, **target):
    """The reference: the network pruned to ``target``, run in PyNative
    whatever the test's mode (the elastic network is what runs in that mode;
    compiling each pruned network again would only cost time)."""
    plain, _ = prune(model, **target)
    plain.set_train(False)
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        return plain(Tensor(x)).asnumpy()
    finally:
        ms.set_context(mode=mode)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("mode_name, which", [("pynative", "zoo"), ("pynative", "mixed"), ("graph", "mixed")])
def test_elastic_equals_pruned_at_every_width(rng, mode_name, which):
    """Every target, repeated and returned to (the cache path and the
    resampling path alternate), equals the pruned network. Graph mode runs
    the mixed network (the zoo network's elastic MindIR is compiled in
    test_cli_elastic)."""
    if which == "zoo":
        model, x = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32)), rng.normal(size=(3, 1, 28, 28))
    else:
        model, x = mixed_model(rng), rng.normal(size=(3, 3, 8, 8))
        assert list(model.groups) == ["stem", "a", "mix"]  # mix and skip joined by the add; b is depthwise on stem
    x = x.astype(np.float32)
    ms.set_context(mode=ms.GRAPH_MODE if mode_name == "graph" else ms.PYNATIVE_MODE)
    elastic = make_elastic(model)
    elastic.set_train(False)
    first = list(model.groups)[0]
    targets = [{"keep": k} for k in (1.0, 1.0, 0.8, 0.5, 0.5, 0.35)] + [{"sizes": {first: 3}}, {"keep": 1.0},
                                                                        {"keep": 0.35}]
    refs = {}
    for target in targets:
        key = repr(target)
        if key not in refs:
            refs[key] = pruned_output(model, x, **target)
        sizes = elastic_sizes(model, **target)
        assert rel(elastic(Tensor(x), sizes).asnumpy(), refs[key]) < 1e-4, target
    assert dict(model.sizes) == dict(model.full_sizes)  # the model itself is untouched


def test_elastic_mindir_round_trip(tmp_path, rng):
    model = mixed_model(rng)
    path = tmp_path / "elastic.mindir"
    export_elastic(model, str(path), (1, 3, 8, 8), backend="matmul", buckets=(0.5, 1.0))
    graph = load_mindir(str(path))
    for keep, batch in ((1.0, 1), (0.6, 4), (0.4, 2)):
        x = rng.normal(size=(batch, 3, 8, 8)).astype(np.float32)
        if keep == 0.6:  # one width against the pruned network's own MindIR, the others against the network
            fixed = tmp_path / "fixed.mindir"
            plain, _ = prune(model, keep=keep)
            export_mindir(plain, str(fixed), (1, 3, 8, 8), backend="matmul")
            ref = load_mindir(str(fixed))(Tensor(x)).asnumpy()
        else:
            ref = pruned_output(model, x, keep=keep)
        out = graph(Tensor(x), elastic_sizes(model, keep=keep)).asnumpy()
        assert out.shape == (batch, 5) and rel(out, ref) < 1e-4, keep


def test_elastic_errors(rng):
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    with pytest.raises(ValueError, match="exactly one"):
        elastic_sizes(model)
    with pytest.raises(ValueError, match="unknown group"):
        elastic_sizes(model, sizes={"nope": 3})
    with pytest.raises(ValueError, match=r"\[2, 8\]"):
        elastic_sizes(model, sizes={"c1": 1})
    with pytest.raises(ValueError, match=r"\[2, 8\]"):
        elastic_sizes(model, sizes={"c1": 9})
    with pytest.raises(ValueError, match="bucket fractions"):
        make_elastic(model, buckets=(0.0, 1.0))
    with pytest.raises(ValueError, match="bucket fractions"):
        make_elastic(model, buckets=(1.5,))
    simpson = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32), quadrature="simpson")
    with pytest.raises(ValueError, match="trapezoid"):
        make_elastic(simpson)


def test_cli_elastic(tmp_path, capsys, rng):
    from inn_ms.artifact import load_artifact, save_artifact
    from inn_ms.cli import main
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    artifact = tmp_path / "m.inn"
    save_artifact(model, str(artifact))
    out = tmp_path / "e.mindir"
    assert main(["elastic", str(artifact), "--out", str(out), "--input-shape", "1,1,28,28",
                 "--backend", "matmul", "--buckets", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "c1" in text and "2..8" in text and "branches at 0.5, 1 of full width" in text
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    loaded = load_artifact(str(artifact))
    ref = pruned_output(loaded, x, keep=0.5)
    assert rel(load_mindir(str(out))(Tensor(x), elastic_sizes(loaded, keep=0.5)).asnumpy(), ref) < 1e-4
    assert main(["elastic", str(artifact), "--out", str(tmp_path / "e.onnx"), "--input-shape", "1,1,28,28"]) == 2
    assert main(["elastic", str(artifact), "--out", str(tmp_path / "f.mindir")]) == 2  # zoo artifacts record no shape
    assert main(["elastic", str(artifact), "--out", str(tmp_path / "g.mindir"), "--input-shape", "1,1,28,28",
                 "--buckets", "0"]) == 2
    assert not (tmp_path / "g.mindir").exists()
    assert "--input-shape is needed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.mindir", "m.inn"]


def test_elastic_resamples_only_when_sizes_change(rng):
    """The sampled weights are kept between calls: changing the control
    weights shows only after the sizes change or after invalidate().
    (PyNative only: in graph mode MindSpore 2.10 does not see set_data on a
    Parameter read inside a branch, so weights are fixed once it has run.)"""
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    elastic = make_elastic(model, buckets=(1.0,))
    elastic.set_train(False)
    x = Tensor(rng.normal(size=(2, 1, 28, 28)).astype(np.float32))
    half, full = elastic_sizes(model, keep=0.5), elastic_sizes(model, keep=1.0)
    first = elastic(x, half).asnumpy()
    control = dict(elastic.parameters_and_names())["network.conv1.weight"]
    original = control.data.asnumpy().copy()
    control.set_data(Tensor(original * 2.0))
    assert np.array_equal(elastic(x, half).asnumpy(), first)  # same sizes: the cached samples
    elastic(x, full)
    assert rel(elastic(x, half).asnumpy(), first) > 1e-3  # new sizes: resampled from the new weights
    control.set_data(Tensor(original))
    assert rel(elastic(x, half).asnumpy(), first) > 1e-3  # still the samples of the doubled weights
    elastic.invalidate()
    assert rel(elastic(x, half).asnumpy(), first) < 1e-6


def test_bucket_rows_hold_their_keep_ratio():
    """A bucket at fraction f has room for the sizes elastic_sizes(keep=f)
    asks for, so keep=f runs in that bucket and not a wider one."""
    model = create_model("mnist_cnn", widths=(8, 16, 16, 16, 32))
    assert bucket_rows(model, 1.0) == [8, 16, 16, 16, 32]
    assert bucket_rows(model, 0.25) == [2, 4, 4, 4, 8]
    assert bucket_rows(model, 0.3) == [3, 5, 5, 5, 10]
    for f in (0.25, 0.3, 0.5, 0.77, 1.0):
        assert (elastic_sizes(model, keep=f).asnumpy() <= np.array(bucket_rows(model, f))).all(), f


def test_composite_axis_taps_place_a_one_value_block():
    """A composite axis whose second block has a single control value (a
    one-channel piece, say a concatenated input channel): gathering its
    four taps a row gives the same matrix as building it densely, so that
    block reads its own control value, not the first block's."""
    from types import SimpleNamespace
    from inn_ms.elastic import ElasticAxis, _SizeState, taps_matrix
    from inn_ms.partition import CompositePartition, UniformPartition
    wide, one = UniformPartition(8), UniformPartition(1)
    sampler = SimpleNamespace(get_partition=lambda: CompositePartition([wide, one]), control_sizes=[4, 1],
                              integrate=False)
    state = _SizeState(1)
    axis = ElasticAxis(sampler, {id(wide): 0}, state)
    for n in (8, 5):
        state.sizes.set_data(Tensor(np.array([n], np.int32)))
        idx, wts = axis.taps()
        gathered, dense = taps_matrix(idx, wts, 5).asnumpy(), axis.matrix().asnumpy()
        np.testing.assert_allclose(gathered, dense, atol=1e-6)
        assert dense[8, 4] == 1.0 and not dense[8, :4].any()  # the one-channel block's row reads column 4
