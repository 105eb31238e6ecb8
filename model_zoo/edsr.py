"""EDSR (Lim et al., 2017): residual blocks without BatchNorm, a global skip
and sub-pixel (pixel-shuffle) upsampling; input is the low-resolution image,
output is ``scale`` times larger.

Channel groups: ``feat`` joins every residual ``Add`` (the head's output,
each block's output, the body's last convolution); each block's inner width
is its own group ``b{j}``; each upsampling stage's output is ``up{k}``.
Image channels stay discrete.

Sub-pixel convolution: a convolution to ``C·r²`` channels followed by a
pixel shuffle is written as ``r²`` convolutions to ``C`` channels, one per
sub-pixel position, interleaved in PyTorch's ``PixelShuffle`` order
(channel ``c·r² + i·r + j`` → pixel ``(i, j)`` of channel ``c``). The
function is the same; the split makes each output axis one channel group
that can be resampled (a ``C·r²`` axis cannot: its channels are ``C``
features times ``r²`` positions).
"""
from mindspore import nn, ops

from model_zoo.factory import finish, make_factory
from model_zoo.registry import register_model


def pixel_shuffle(parts, r):
    """Interleave ``r²`` tensors ``(N, C, H, W)`` (sub-pixel position
    ``i·r + j`` each) into one ``(N, C, H·r, W·r)`` image."""
    n, c, h, w = parts[0].shape
    x = ops.stack(parts, axis=2).reshape(n, c, r, r, h, w)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(n, c, h * r, w * r)


BRANCH_INIT_SCALE = 0.1


class ResBlock(nn.Cell):
    def __init__(self, f, feats, group, mid_group, res_scale):
        super().__init__()
        self.conv1 = f.conv(feats, feats, 3, padding=1, in_group=group, out_group=mid_group)
        self.conv2 = f.conv(feats, feats, 3, padding=1, in_group=mid_group, out_group=group)
        self.relu = nn.ReLU()
        self.res_scale = float(res_scale)
        # Start each residual branch small: with He-initialised convolutions
        # and no BatchNorm every block would double the activations' variance
        # (16 blocks: outputs ~1e5 times the image scale before training).
        self.conv2.weight.set_data(self.conv2.weight.data * BRANCH_INIT_SCALE)

    def construct(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class Upsample(nn.Cell):
    """One ``×r`` sub-pixel stage: ``r²`` convolutions, then the shuffle."""

    def __init__(self, f, feats, r, in_group, out_group):
        super().__init__()
        self.r = r
        self.parts = nn.CellList([f.conv(feats, feats, 3, padding=1, in_group=in_group, out_group=out_group)
                                  for _ in range(r * r)])

    def construct(self, x):
        outs = []
        for conv in self.parts:
            outs.append(conv(x))
        return pixel_shuffle(outs, self.r)


class EDSR(nn.Cell):
    def __init__(self, f, scale=2, n_resblocks=16, n_feats=64, res_scale=1.0, channels=3, pixel_mean=0.5):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"edsr: scale must be 2, 3 or 4, got {scale!r}")
        if n_resblocks < 1 or n_feats < 1:
            raise ValueError(f"edsr: n_resblocks and n_feats must be >= 1, got {n_resblocks}, {n_feats}")
        self.pixel_mean = float(pixel_mean)
        self.head = f.conv(channels, n_feats, 3, padding=1, out_group="feat")
        self.body = nn.SequentialCell([ResBlock(f, n_feats, "feat", f"b{j}", res_scale)
                                       for j in range(n_resblocks)])
        self.body_end = f.conv(n_feats, n_feats, 3, padding=1, in_group="feat", out_group="feat")
        stages, group = [], "feat"
        for k, r in enumerate([2, 2] if scale == 4 else [scale]):
            stages.append(Upsample(f, n_feats, r, group, f"up{k}"))
            group = f"up{k}"
        self.upsample = nn.SequentialCell(stages)
        self.tail = f.conv(n_feats, channels, 3, padding=1, in_group=group)

    def construct(self, x):
        x = self.head(x - self.pixel_mean)
        x = x + self.body_end(self.body(x))
        return self.tail(self.upsample(x)) + self.pixel_mean


@register_model(task="super_resolution", input="low_resolution", input_shape=(3, 24, 24))
def edsr(integral=True, scale=2, n_resblocks=16, n_feats=64, res_scale=1.0, channels=3, pixel_mean=0.5,
         quadrature="trapezoid", control_ratio=0.5):
    """EDSR ×``scale`` (2, 3 or 4). Defaults: the paper's baseline (16
    blocks, 64 features, residual scale 1); the large model is
    ``n_resblocks=32, n_feats=256, res_scale=0.1``; tests use e.g.
    ``n_resblocks=2, n_feats=8``. ``channels=1`` for the Y channel.
    ``pixel_mean`` is subtracted from the input and added to the output
    (images in [0, 1])."""
    f = make_factory(integral, quadrature, control_ratio)
    return finish(EDSR(f, int(scale), int(n_resblocks), int(n_feats), res_scale, int(channels), pixel_mean), f)
