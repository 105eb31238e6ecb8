"""Transformers: the MLP hidden width is a continuous channel group.

A pre-norm transformer (patch embedding, LayerNorm, hand-written multi-head
attention, MLP with GELU) written in PyTorch, loaded into its MindSpore twin
through ``load_torch_weights``, converted exactly (against the real torch
module), resized to keep 0.5 on the MLP groups and checked against a numpy
float64 forward pass of the pruned network (the torch weights, permuted as
the conversion did, resampled by the numpy cubic reference); the embedding
width (LayerNorm, residual stream) and the attention heads stay discrete,
saying why; patterns that cannot be followed are pinned with their reason.
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from inn_ms.convert import convert, load_torch_weights
from inn_ms.graph.channels import find_channel_groups
from inn_ms.layers import IntegralDense
from reference import ref_sample, ref_sample_bias

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("torch_single_thread")

DIM, HEADS, HIDDEN, CLASSES, DEPTH = 16, 2, 64, 5, 2


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(DIM)
        self.qkv = torch.nn.Linear(DIM, 3 * DIM)
        self.proj = torch.nn.Linear(DIM, DIM)
        self.ln2 = torch.nn.LayerNorm(DIM)
        self.fc1 = torch.nn.Linear(DIM, HIDDEN)
        self.fc2 = torch.nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(q @ k.transpose(-2, -1) * (c // HEADS) ** -0.5, dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


class TorchTinyViT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, DIM, 4, stride=4)
        self.pos_embed = torch.nn.Parameter(torch.randn(1, 4, DIM) * 0.1)
        self.blocks = torch.nn.ModuleList([TorchBlock() for _ in range(DEPTH)])
        self.norm = torch.nn.LayerNorm(DIM)
        self.head = torch.nn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))


class MsBlock(nn.Cell):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm((DIM,), epsilon=1e-5)
        self.qkv = nn.Dense(DIM, 3 * DIM)
        self.proj = nn.Dense(DIM, DIM)
        self.ln2 = nn.LayerNorm((DIM,), epsilon=1e-5)
        self.fc1 = nn.Dense(DIM, HIDDEN)
        self.act = nn.GELU(approximate=False)
        self.fc2 = nn.Dense(HIDDEN, DIM)
        self.bmm = ops.BatchMatMul()
        self.bmm_t = ops.BatchMatMul(transpose_b=True)

    def construct(self, x):
        b, n, c = x.shape
        qkv = ops.transpose(ops.reshape(self.qkv(self.ln1(x)), (b, n, 3, HEADS, c // HEADS)), (2, 0, 3, 1, 4))
        attn = ops.softmax(self.bmm_t(qkv[0], qkv[1]) * (c // HEADS) ** -0.5, axis=-1)
        x = x + self.proj(ops.reshape(ops.transpose(self.bmm(attn, qkv[2]), (0, 2, 1, 3)), (b, n, c)))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class MsTinyViT(nn.Cell):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, DIM, 4, stride=4, pad_mode="valid", has_bias=True)
        self.pos_embed = Parameter(Tensor(np.zeros((1, 4, DIM), np.float32)), name="pos_embed")
        self.blocks = nn.CellList([MsBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm((DIM,), epsilon=1e-5)
        self.head = nn.Dense(DIM, CLASSES)

    def construct(self, x):
        x = self.patch(x)
        x = ops.transpose(ops.reshape(x, (x.shape[0], DIM, -1)), (0, 2, 1)) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))


def _erf(x):
    from scipy.special import erf
    return erf(x)


def numpy_vit(sd, x, hidden=None):
    """float64 forward pass of the tiny ViT with the torch state_dict ``sd``
    (numpy arrays); ``hidden[k]``: (fc1 weight, fc1 bias, fc2 weight) of
    block ``k`` replacing the state_dict's."""
    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * sd[p + ".weight"] + sd[p + ".bias"]

    def lin(x, p):
        return x @ sd[p + ".weight"].T + sd[p + ".bias"]

    b = x.shape[0]
    w = sd["patch.weight"]
    patches = x.reshape(b, 3, 2, 4, 2, 4).transpose(0, 2, 4, 1, 3, 5).reshape(b, 4, -1)  # (b, tokens, 3·4·4)
    t = patches @ w.reshape(DIM, -1).T + sd["patch.bias"] + sd["pos_embed"]
    hd = DIM // HEADS
    for k in range(DEPTH):
        p = f"blocks.{k}."
        qkv = lin(ln(t, p + "ln1"), p + "qkv").reshape(b, 4, 3, HEADS, hd).transpose(2, 0, 3, 1, 4)
        s = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * hd ** -0.5
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        t = t + lin((a @ qkv[2]).transpose(0, 2, 1, 3).reshape(b, 4, DIM), p + "proj")
        w1, b1, w2 = hidden[k] if hidden else (sd[p + "fc1.weight"], sd[p + "fc1.bias"], sd[p + "fc2.weight"])
        h = ln(t, p + "ln2") @ w1.T + b1
        h = 0.5 * h * (1 + _erf(h / np.sqrt(2)))
        t = t + h @ w2.T + sd[p + "fc2.bias"]
    return lin(ln(t, "norm").mean(1), "head")


def rel(out, ref):
    return float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """(torch state_dict as float64 arrays, input, torch logits, the MindSpore
    twin loaded from the .pth, its conversion)."""
    torch.manual_seed(0)
    tnet = TorchTinyViT().eval()
    path = tmp_path_factory.mktemp("vit") / "vit.pth"
    torch.save(tnet.state_dict(), path)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = tnet(torch.from_numpy(x)).numpy()
    sd = {k: v.double().numpy() for k, v in tnet.state_dict().items()}
    net = MsTinyViT()
    load_torch_weights(net, str(path))
    net.set_train(False)
    model = convert(net, Tensor(x))
    return sd, x, ref, net, model


def test_the_mlp_hidden_widths_are_continuous_and_the_rest_says_why(vit):
    _, _, _, _, model = vit
    groups = model.conversion["groups"]
    assert groups.continuous == ["blocks.0.fc1", "blocks.1.fc1"]
    assert {p: u.kind for p, u in groups.layers.items() if u.out in groups.continuous
            or any(g in groups.continuous for g, _, _ in u.inputs)} == \
        {f"blocks.{k}.fc{i}": "dense" for k in range(DEPTH) for i in (1, 2)}
    embedding = groups.groups["patch"]  # the residual stream: patch embedding, every proj and fc2
    assert not embedding.continuous
    assert any(r.startswith("normalised over its channels by LayerNorm (blocks.0.ln1") for r in embedding.reasons)
    assert any(r.startswith("a per-channel parameter outside a known layer") for r in embedding.reasons)
    assert {"blocks.0.proj", "blocks.1.fc2"} <= set(embedding.producers)
    heads = groups.groups["blocks.0.qkv"]  # split into heads by a reshape
    assert not heads.continuous and heads.reasons[0].startswith("op Reshape changes the channel axis")
    summary = groups.summary()
    assert "blocks.0.fc1: 64 channels, continuous" in summary
    assert "normalised over its channels by LayerNorm" in summary


def test_the_numpy_reference_is_the_torch_network(vit):
    sd, x, ref, _, _ = vit
    assert rel(numpy_vit(sd, x.astype(np.float64)), ref) < 1e-5


def test_converts_exactly_against_the_real_torch_module(vit):
    _, x, ref, net, model = vit
    assert rel(net(Tensor(x)).asnumpy(), ref) < 1e-5  # the twin loaded right
    with model.at_sizes(model.full_sizes):
        assert rel(model(Tensor(x)).asnumpy(), ref) < 1e-5
        assert rel(model.discretize()(Tensor(x)).asnumpy(), ref) < 1e-5
    for k in range(DEPTH):
        assert isinstance(model.network.blocks[k].fc1, IntegralDense)
        assert isinstance(model.network.blocks[k].qkv, nn.Dense)  # on no continuous group: unchanged


def _pruned_reference(sd, model, size):
    """(fc1 weight, fc1 bias, fc2 weight) per block at ``size`` hidden
    channels: the torch weights in the conversion's channel order, sampled
    by the numpy cubic reference (rows of fc1, columns of fc2)."""
    hidden = []
    for k in range(DEPTH):
        p = f"blocks.{k}."
        order = np.asarray(model.conversion["permutation"][p + "fc1"]["order"])
        w1, b1, w2 = sd[p + "fc1.weight"][order], sd[p + "fc1.bias"][order], sd[p + "fc2.weight"][:, order]
        hidden.append((ref_sample(w1, size, None), ref_sample_bias(b1, size), ref_sample(w2, None, size)))
    return hidden


def test_resized_to_half_is_the_numpy_pruned_network_and_discretizes_to_it(vit):
    sd, x, _, _, model = vit
    expected = numpy_vit(sd, x.astype(np.float64), _pruned_reference(sd, model, HIDDEN // 2))
    with model.at_sizes(model.sizes_for_keep(0.5)):
        assert model.sizes == {"blocks.0.fc1": HIDDEN // 2, "blocks.1.fc1": HIDDEN // 2}
        out = model(Tensor(x)).asnumpy()
        plain = model.discretize()
        removed = model.compression()["compression"]
    total = sum(v.size for v in sd.values())
    assert removed == pytest.approx(DEPTH * (DIM * HIDDEN // 2 + HIDDEN // 2 + HIDDEN // 2 * DIM) / total)
    assert rel(out, expected) < 1e-5
    assert isinstance(plain.blocks[0].fc1, nn.Dense) and tuple(plain.blocks[0].fc1.weight.shape) == (HIDDEN // 2, DIM)
    assert tuple(plain.blocks[1].fc2.weight.shape) == (DIM, HIDDEN // 2)
    assert rel(plain(Tensor(x)).asnumpy(), expected) < 1e-5


def test_resized_integral_dense_on_tokens_runs_in_graph_mode(vit):
    sd, x, _, _, model = vit
    expected = numpy_vit(sd, x.astype(np.float64), _pruned_reference(sd, model, 24))
    ms.set_context(mode=ms.GRAPH_MODE)
    with model.at_sizes({"blocks.0.fc1": 24, "blocks.1.fc1": 24}):
        out = model(Tensor(x)).asnumpy()
    assert rel(out, expected) < 1e-5


# -- what stays discrete, and why ---------------------------------------------------

class ScaledHidden(nn.Cell):
    """An MLP whose hidden width is scaled by a parameter of its own (a
    per-channel tensor that no layer kind resamples)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(8, 16)
        self.scale = Parameter(Tensor(np.linspace(0.5, 1.5, 16).astype(np.float32)), name="scale")
        self.fc2 = nn.Dense(16, 8)

    def construct(self, x):
        return self.fc2(ops.gelu(self.fc1(x)) * self.scale)


class HeadsOnly(nn.Cell):
    """The hidden width split into heads by a reshape, then merged back."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(8, 16)
        self.fc2 = nn.Dense(16, 8)

    def construct(self, x):
        b, n, _ = x.shape
        h = ops.softmax(ops.reshape(self.fc1(x), (b, n, 4, 4)), axis=-1)
        return self.fc2(ops.reshape(h, (b, n, 16)))


class TokensIntoChannels(nn.Cell):
    """A reshape that merges the tokens into the hidden channels: (B, N, C) → (B, N·C)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(8, 16)
        self.fc2 = nn.Dense(3 * 16, 4)

    def construct(self, x):
        return self.fc2(ops.reshape(ops.relu(self.fc1(x)), (x.shape[0], -1)))


class ClassTokenAdd(nn.Cell):
    """CrossViT's ``x[:, 0:1] + attn(x)``: a dense layer's output (1 token)
    added to a slice the tracer does not follow, whose token axis has size 1."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(8, 16)
        self.fc2 = nn.Dense(8, 16)
        self.head = nn.Dense(16, 3)

    def construct(self, x):
        y = self.fc1(x)[:, 0:1] + self.fc2(x[:, 0:1])
        return self.head(y.mean(1))


def test_patterns_that_cannot_be_followed_are_refused_with_their_reason():
    x = Tensor(np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32))
    groups = find_channel_groups(ScaledHidden(), x)
    reasons = groups.groups["fc1"].reasons
    assert len(reasons) == 1 and reasons[0].startswith("a per-channel parameter outside a known layer")
    with pytest.raises(ValueError, match="no channel group can be continuous(.|\n)*op Reshape changes the channel axis"):
        convert(HeadsOnly(), x)
    groups = find_channel_groups(ClassTokenAdd(), x)  # fc2's channels meet the slice's: not dropped unseen
    assert not groups.groups["fc2"].continuous
    assert groups.groups["fc2"].reasons[0] == "not made by a known layer"
    groups = find_channel_groups(TokensIntoChannels(), x)
    assert not groups.groups["fc1"].continuous
    assert groups.groups["fc1"].reasons[0].startswith("op Reshape changes the channel axis")


def test_mlp_mixer_token_and_channel_mixing_hidden_widths():
    """mindcv's MLP-Mixer: its token-mixing MLP reads the tokens (a
    transpose puts them last); both MLPs' hidden widths are continuous,
    the token count and the embedding width are not."""
    mixer = pytest.importorskip("mindcv.models.mlpmixer")
    net = mixer.MLPMixer(depth=1, patch_size=4, n_patches=4, n_channels=8, token_dim=6, channel_dim=16,
                         num_classes=3)
    net.set_train(False)
    x = Tensor(np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32))
    model = convert(net, x)
    groups = model.conversion["groups"]
    assert groups.continuous == ["mixer_blocks.0.token_mix.2.net.0", "mixer_blocks.0.channel_mix.1.net.0"]
    tokens = groups.groups["mixer_blocks.0.token_mix.2.net.3"]  # the token-mixing MLP's output: 4 tokens
    assert tokens.size == 4 and not tokens.continuous
    assert tokens.reasons[0].startswith("op Add joins channels on different axes")
    with model.at_sizes(model.sizes_for_keep(0.5)):
        out = model(x).asnumpy()
        plain = model.discretize()
    assert tuple(plain.mixer_blocks[0].token_mix[2].net[0].weight.shape) == (3, 4)
    assert tuple(plain.mixer_blocks[0].channel_mix[1].net[3].weight.shape) == (8, 8)
    assert rel(plain(x).asnumpy(), out) < 1e-5


def test_repair_refits_dense_layers_on_tokens(vit):
    """Repair's dense refit reads every token as a row of its sample: the
    pruned network's layers (attention and MLP alike, all on token tensors)
    refit, and padded samples of a last short batch weigh nothing (the same
    fit in batches of 8 as in one batch of 20)."""
    from inn_ms.repair import repair
    _, _, _, _, model = vit
    images = np.random.default_rng(1).normal(size=(20, 3, 8, 8)).astype(np.float32)
    reports = []
    with model.at_sizes(model.sizes_for_keep(0.5)):
        before = model.discretize()
        for batch in (8, 20):
            plain = model.discretize()
            reports.append((repair(model, plain, images, batch_size=batch), plain))
    layers = reports[0][0]["layers"]
    assert {"blocks.0.qkv", "blocks.0.fc1", "blocks.1.fc2", "head"} <= set(layers)
    for path, (was, now) in layers.items():
        assert now <= was + 1e-6, path
    assert layers["blocks.0.fc2"][1] < 0.5 * layers["blocks.0.fc2"][0]
    for path, (_, now) in reports[1][0]["layers"].items():
        assert now == pytest.approx(layers[path][1], rel=1e-3, abs=1e-7), path
    full = model.network
    with model.at_sizes(model.full_sizes):
        ref = full(Tensor(images)).asnumpy()
    assert rel(reports[0][1](Tensor(images)).asnumpy(), ref) < rel(before(Tensor(images)).asnumpy(), ref)


class ClassTokenMlp(nn.Cell):
    """XCiT's class-token MLP: dense layers on a (B, 1, C) slice the tracer
    does not follow (its 1-token axis read as a flatten of 1 channel)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(8, 16)
        self.fc2 = nn.Dense(16, 3)

    def construct(self, x):
        return self.fc2(ops.gelu(self.fc1(x[:, 0:1]))).mean(1)


def test_dense_layers_on_a_class_token_slice_convert_and_resize():
    x = Tensor(np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32))
    net = ClassTokenMlp()
    model = convert(net, x)
    assert model.conversion["groups"].continuous == ["fc1"]
    assert model.network.fc1.in_spatial == 8  # 1 discrete channel x 8 features: the layer reads (B, 1, 8)
    with model.at_sizes({"fc1": 8}):
        out = model(x).asnumpy()
        plain = model.discretize()
    assert tuple(plain.fc1.weight.shape) == (8, 8)
    assert rel(plain(x).asnumpy(), out) < 1e-5
