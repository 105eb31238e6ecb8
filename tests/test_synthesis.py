"""Data-free calibration images (inn_ms.synthesis): the statistics a
converted network keeps from its folded BatchNorms, the gradient the probes
inject (against finite differences of the mismatch in float64 numpy),
synthesized images that match the statistics, and the artifact carrying
them."""
import zipfile

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from inn_ms.artifact import load_artifact, save_artifact
from inn_ms.convert import convert
from inn_ms.synthesis import _Pull, statistics_mismatch, statistics_sites, synthesize
from model_zoo import create_model

from reference import fd_grad


def mismatch(y, mean, std):
    m = y.mean((0, 2, 3))
    s = np.sqrt(y.var((0, 2, 3)) + 1e-8)
    return float(np.mean((m - mean) ** 2) + np.mean((s - std) ** 2))


class _Loss(nn.Cell):
    def __init__(self, pull):
        super().__init__()
        self.pull = pull

    def construct(self, y):
        return self.pull(y).sum() * 0.0


def test_the_injected_gradient_is_the_mismatch_gradient(rng):
    y = rng.normal(size=(3, 4, 2, 3))
    mean, std = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    got = ms.grad(_Loss(_Pull(mean, std)), grad_position=0)(Tensor(y.astype(np.float32))).asnumpy()
    expected = fd_grad(lambda v: mismatch(v.reshape(y.shape), mean, std), y)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


@pytest.fixture(scope="module")
def converted():
    """The main job's CNN and its conversion, made once for the module (3 s
    of CPU each time); the tests only read them."""
    net = create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled")
    return net, convert(net, (2, 1, 28, 28), builder="mnist_torch_cnn")


def test_folded_batchnorms_leave_their_statistics_on_the_layers(converted):
    net, model = converted
    sites = statistics_sites(model)
    assert list(sites) == ["conv1", "conv2", "conv3", "res_conv1", "res_conv2", "conv4"]
    order = model.conversion["permutation"]
    groups = {"res_conv2": "conv3"}  # the residual add joins res_conv2 to conv3's group
    for layer, bn in (("conv1", "bn1"), ("conv3", "bn3"), ("res_conv2", "res_bn2")):
        cell = dict(net.cells_and_names())[bn]
        g, b, v = (p.asnumpy().astype(np.float64) for p in (cell.gamma, cell.beta, cell.moving_variance))
        perm = order[groups.get(layer, layer)]["order"]
        where, mean, std = sites[layer]
        assert where == "output"
        np.testing.assert_allclose(mean, b[perm], rtol=1e-6)
        np.testing.assert_allclose(std, (np.abs(g) * np.sqrt(v / (v + 1e-5)))[perm], rtol=1e-6)


def test_synthesized_images_match_the_statistics_and_repeat_with_a_seed(converted):
    ms.set_context(mode=ms.GRAPH_MODE)
    _, model = converted
    noise = np.random.default_rng(5).standard_normal((16, 1, 28, 28)).astype(np.float32)
    images = synthesize(model, (1, 1, 28, 28), count=16, steps=25, seed=3)
    again = synthesize(model, (1, 28, 28), count=16, steps=25, seed=3)
    np.testing.assert_array_equal(images, again)
    assert images.shape == (16, 1, 28, 28) and np.isfinite(images).all()
    before = statistics_mismatch(model, noise)
    after = statistics_mismatch(model, images)
    for path in before:  # measured: 0.10-0.32 of the noise's mismatch after 25 steps
        assert sum(after[path]) < 0.5 * sum(before[path]), (path, before[path], after[path])


def test_data_free_repair_needs_statistics():
    class NoBN(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 6, 3, pad_mode="pad", padding=1, has_bias=True)
            self.b = nn.Conv2d(6, 2, 3, pad_mode="pad", padding=1, has_bias=True)
            self.relu = nn.ReLU()

        def construct(self, x):
            return self.b(self.relu(self.a(x)))

    model = convert(NoBN(), (1, 1, 8, 8))
    assert statistics_sites(model) == {}
    with pytest.raises(ValueError, match="no BatchNorm.*repair='calib'"):
        synthesize(model, (1, 8, 8), count=2, steps=1)
    with pytest.raises(ValueError, match="count must be an int"):
        synthesize(model, (1, 8, 8), count=0)
    with pytest.raises(ValueError, match="input_shape"):
        synthesize(model, (8, 8))


def test_the_artifact_keeps_the_statistics_and_reads_files_without_them(tmp_path, converted):
    _, model = converted
    path = tmp_path / "m.inn"
    save_artifact(model, str(path))
    loaded = load_artifact(str(path))
    for name, (where, mean, std) in statistics_sites(model).items():
        _, mean2, std2 = statistics_sites(loaded)[name]
        np.testing.assert_array_equal(mean2, mean)
        np.testing.assert_array_equal(std2, std)
    # A file from before the statistics were kept: the same weights without them.
    old = tmp_path / "old.inn"
    model_old = load_artifact(str(path))
    for _, cell in model_old.network.cells_and_names():
        if getattr(cell, "output_mean", None) is not None:
            cell.output_mean = None
            cell.output_std = None
    save_artifact(model_old, str(old))
    ckpt = tmp_path / "w.ckpt"
    with zipfile.ZipFile(old) as z:
        ckpt.write_bytes(z.read("weights.ckpt"))
    assert not any("output_" in n for n in ms.load_checkpoint(str(ckpt)))
    reread = load_artifact(str(old))
    assert statistics_sites(reread) == {}
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    reread.set_train(False)
    model.set_train(False)
    np.testing.assert_array_equal(reread(Tensor(x)).asnumpy(), model(Tensor(x)).asnumpy())
