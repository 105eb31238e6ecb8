"""Repair (inn_ms.repair): each layer of a pruned network refitted in turn
against a float64 numpy least-squares reference (convolution, BatchNorm,
depthwise convolution, dense), in both execution modes; what prune() does
with it; and refusing what cannot be repaired."""
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from inn_ms.convert import convert
from inn_ms.prune import prune
from inn_ms.repair import calibration_images, output_maps, repair

from helpers import pynative_accuracy, run
from reference import ref_conv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

RIDGE = 1e-2


class Small(nn.Cell):
    """conv-ReLU, conv-BN (kept: fold_bn=False)-ReLU, depthwise-ReLU,
    global mean, dense."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, pad_mode="pad", padding=1, has_bias=True)
        self.conv2 = nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, has_bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, group=8, has_bias=True)
        self.fc = nn.Dense(8, 5)
        self.relu = nn.ReLU()

    def construct(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.bn(self.conv2(x)))
        x = self.relu(self.dw(x))
        return self.fc(ops.mean(x, (2, 3)))


def small_model(rng):
    net = Small()
    for name, p in net.parameters_and_names():
        if name.startswith("bn."):
            lo, hi = (0.5, 1.5) if name.endswith(("gamma", "moving_variance")) else (-0.3, 0.3)
            p.set_data(Tensor(rng.uniform(lo, hi, p.shape).astype(np.float32)))
    return convert(net, (2, 1, 8, 8), fold_bn=False)


def params(plain):
    return {name: p.asnumpy().astype(np.float64) for name, p in plain.parameters_and_names()}


def patches(x, k=3, pad=1):
    """``(n·h·w, c·k·k)`` rows of the patches a stride-1 convolution reads."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, c, k, k, h, w))
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + h, j:j + w]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * h * w, c * k * k)


def solve(rows, target, current):
    rows = np.concatenate([rows, np.ones((len(rows), 1))], 1)
    gram = rows.T @ rows
    lam = RIDGE * np.mean(np.diag(gram))
    return np.linalg.solve(gram + lam * np.eye(len(gram)), rows.T @ target + lam * current)


def channels_last(y):
    return y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])


def reference_repair(full, pruned, maps, x):
    """The refit written out in numpy, layer after layer."""
    f, p = full, dict(pruned)
    eps = 1e-5

    def bn(y, q, prefix):
        sd = np.sqrt(q[prefix + "moving_variance"] + eps)
        return (y - q[prefix + "moving_mean"].reshape(1, -1, 1, 1)) / sd.reshape(1, -1, 1, 1) \
            * q[prefix + "gamma"].reshape(1, -1, 1, 1) + q[prefix + "beta"].reshape(1, -1, 1, 1)

    relu = lambda v: np.maximum(v, 0)
    c1 = ref_conv(x, f["conv1.weight"], f["conv1.bias"], padding=1)
    c2 = ref_conv(relu(c1), f["conv2.weight"], f["conv2.bias"], padding=1)
    b = bn(c2, f, "bn.")
    d = ref_conv(relu(b), f["dw.weight"], f["dw.bias"], padding=1, groups=8)
    full_out = {"conv1": c1, "conv2": c2, "bn": b, "dw": d}

    def conv_fit(name, inp):
        w = p[name + ".weight"]
        current = np.concatenate([w.reshape(len(w), -1), p[name + ".bias"][:, None]], 1).T
        sol = solve(patches(inp), channels_last(full_out[name]) @ maps[name].T, current)
        p[name + ".weight"], p[name + ".bias"] = sol[:-1].T.reshape(w.shape), sol[-1]

    conv_fit("conv1", x)
    h1 = relu(ref_conv(x, p["conv1.weight"], p["conv1.bias"], padding=1))
    conv_fit("conv2", h1)
    y2 = ref_conv(h1, p["conv2.weight"], p["conv2.bias"], padding=1)
    target = channels_last(full_out["bn"]) @ maps["bn"].T
    sd = np.sqrt(p["bn.moving_variance"] + eps)
    scale, shift = p["bn.gamma"] / sd, p["bn.beta"] - p["bn.gamma"] * p["bn.moving_mean"] / sd
    for c in range(y2.shape[1]):
        sol = solve(channels_last(y2)[:, c:c + 1], target[:, c], np.array([scale[c], shift[c]]))
        p["bn.gamma"][c] = sol[0] * sd[c]
        p["bn.beta"][c] = sol[1] + sol[0] * p["bn.moving_mean"][c]
    h2 = relu(bn(y2, p, "bn."))
    target = channels_last(full_out["dw"]) @ maps["dw"].T
    w = p["dw.weight"]
    for c in range(h2.shape[1]):
        current = np.concatenate([w[c].reshape(-1), [p["dw.bias"][c]]])
        sol = solve(patches(h2[:, c:c + 1]), target[:, c], current)
        p["dw.weight"][c] = sol[:-1].reshape(w[c].shape)
        p["dw.bias"][c] = sol[-1]
    h3 = relu(ref_conv(h2, p["dw.weight"], p["dw.bias"], padding=1, groups=h2.shape[1])).mean((2, 3))
    fd = relu(ref_conv(relu(b), f["dw.weight"], f["dw.bias"], padding=1, groups=8)).mean((2, 3))
    t_fc = fd @ f["fc.weight"].T + f["fc.bias"]
    current = np.concatenate([p["fc.weight"], p["fc.bias"][:, None]], 1).T
    sol = solve(h3, t_fc, current)
    p["fc.weight"], p["fc.bias"] = sol[:-1].T, sol[-1]
    return p


# Each mode with one rule: the rule changes the pruned weights the refit
# starts from, the mode how the probes run; neither depends on the other.
@pytest.mark.parametrize("mode, rule", [("pynative", "point"), ("graph", "antialiased")])
def test_every_layer_is_refitted_as_the_numpy_reference(rng, mode, rule):
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    model = small_model(rng)
    model.set_resampling(rule)
    full = params(model.discretize())
    model.resize(keep=0.5)
    plain = model.discretize()
    names = [p.name for p in plain.get_parameters()]
    x = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    maps = output_maps(model)
    expected = reference_repair(full, params(plain), maps, x.astype(np.float64))
    report = repair(model, plain, x, ridge=RIDGE, batch_size=16)  # three batches, the last one padded
    assert list(report["layers"]) == ["conv1", "conv2", "bn", "dw", "fc"]
    got = params(plain)
    for name, value in expected.items():
        if name.endswith(("moving_mean", "moving_variance")):
            np.testing.assert_array_equal(got[name], value)  # not refitted
            continue
        scale = np.abs(value).max()
        assert np.abs(got[name] - value).max() <= 2e-3 * scale, name
    for before, after in report["layers"].values():
        assert 0 <= after <= before + 1e-6
    assert [p.name for p in plain.get_parameters()] == names  # the probes' renaming is undone


def test_repair_brings_back_the_pruned_accuracy_and_beats_the_baselines():
    """The main job's CNN at half its channels: INN with repair
    on 128 unlabelled training images > channel folding > L1 selection
    (neither baseline repaired), on 250 test digits. The repair runs in
    graph mode (PyNative runs these convolutions op by op, minutes instead
    of seconds); the scoring in PyNative, which compiles nothing."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    from inn_ms.baselines import folding_merges, l1_indices
    from inn_ms.data import mnist_subset
    from model_zoo import create_model
    xtr, _, xte, yte = mnist_subset(4000, 1000, seed=0)
    xte, yte = xte[:250], yte[:250]
    model = convert(create_model("mnist_torch_cnn", integral=False, checkpoint_torch="bundled"), (2, 1, 28, 28))
    for keep, bar in ((0.5, 0.93),):
        plain, report = prune(model, keep=keep, repair="calib", calib=xtr[:128])
        assert report["repaired"] and report["calib_images"] == 128
        inn = pynative_accuracy(plain, xte, yte)
        sizes = model.sizes_for_keep(keep)
        fold = pynative_accuracy(model.merge_channels(folding_merges(model, sizes)), xte, yte)
        l1 = pynative_accuracy(model.select_channels(l1_indices(model, sizes)), xte, yte)
        assert inn >= bar and inn > fold > l1, (keep, inn, fold, l1)
    plain, report = prune(model, keep=1.0, repair="calib", calib=xtr[:16])
    assert not report["repaired"]  # nothing pruned, nothing to repair: the network is the converted one


def test_bad_repair_requests_are_refused(rng):
    model = small_model(rng)
    x = rng.normal(size=(4, 1, 8, 8)).astype(np.float32)
    cases = [
        (dict(repair="calib"), "needs calibration images"),
        (dict(repair="none", calib=x), "repair is 'none'"),
        (dict(repair="fix", calib=x), "unknown repair 'fix'"),
        (dict(repair="calib", calib=x[:, :, :4]), "calibration images are"),
        (dict(repair="calib", calib=x[0]), "must be N x C x H x W"),
        (dict(repair="datafree", calib=x), "makes its own images"),
        (dict(repair="calib", calib=x, resampling="nearest"), "unknown resampling rule"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            prune(model, keep=0.5, input_shape=(1, 1, 8, 8), **kwargs)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    model.resize(keep=0.5)
    with pytest.raises(ValueError, match="NaN"):
        repair(model, model.discretize(), bad)
    with pytest.raises(ValueError, match="int >= 1"):
        calibration_images(model, "calib", x, count=0)


def test_prune_restores_the_model_and_keeps_its_rule(rng):
    model = small_model(rng)
    model.resize(keep=0.75)
    x = rng.normal(size=(8, 1, 8, 8)).astype(np.float32)
    ref = run(model, x)
    plain, report = prune(model, keep=0.5, resampling="antialiased", repair="calib", calib=x)
    assert report["resampling"] == "antialiased" and model.resampling == "point"
    assert dict(model.sizes) == {g: n for g, n in model.sizes_for_keep(0.75).items()}
    np.testing.assert_array_equal(run(model, x), ref)
