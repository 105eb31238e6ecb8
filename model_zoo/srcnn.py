"""SRCNN (Dong et al., 2014/2016): three convolutions that map a
bicubic-upscaled low-resolution image to its high-resolution version, on the
luminance (Y) channel.

Layer 1 (``k1×k1``, ``c1`` filters) extracts patches, layer 2 (``k2×k2``,
``c2``) maps them non-linearly, layer 3 (``k3×k3``, one output per image
channel) reconstructs. The paper's settings are ``kernels=(9, 1, 5)`` (the
base network) or ``(9, 5, 5)``, ``widths=(64, 32)``. Convolutions are
zero-padded to keep the image size (the paper trained without padding on
33×33 crops; padding lets one network serve any image size).

``residual=True`` adds the input to the output (the global residual of
VDSR, Kim et al. 2016) and starts the last layer at 1 % of its initial
weights and zero bias, so the untrained network is the bicubic input and
training learns only the missing detail: several times fewer steps to beat
bicubic (measured: PyTorch twin, ×3, 400 steps +0.37 dB over bicubic; the
plain network is still below bicubic after 400 steps and needs ~2,000).

``offset`` subtracts a constant from the input and adds it back to the
output (0.5: the middle of the pixel range; a constant, not the input, so
the network still predicts the image, not a residual), and ``last_scale``
starts the last layer's weights at that fraction of their initial values
with zero bias (default: 0.01 with ``residual``, else 1). Together they
start the plain network at a flat grey image instead of a random one.

Channel groups: ``c1`` (layer 1's output = layer 2's input) and ``c2``;
image channels stay discrete. Without the residual the channels carry the
whole image, so the quadrature error of a width change (weight functions
that vary between control points, summed over fewer channels) reaches the
output in full: train the plain network from scratch with a coarser control
grid (``control_ratio=0.25``; README, "Super resolution").
"""
from mindspore import nn, ops

from model_zoo.factory import finish, make_factory
from model_zoo.registry import register_model


class SRCNN(nn.Cell):
    def __init__(self, f, kernels=(9, 1, 5), widths=(64, 32), channels=1, residual=False, offset=0.0,
                 last_scale=None):
        super().__init__()
        if len(kernels) != 3 or any(int(k) < 1 or int(k) % 2 == 0 for k in kernels):
            raise ValueError(f"srcnn: kernels must be three odd sizes, e.g. (9, 1, 5), got {kernels!r}")
        if len(widths) != 2 or any(int(w) < 1 for w in widths):
            raise ValueError(f"srcnn: widths must be two positive channel counts, e.g. (64, 32), got {widths!r}")
        (k1, k2, k3), (c1, c2) = (int(k) for k in kernels), (int(w) for w in widths)
        self.conv1 = f.conv(channels, c1, k1, padding=k1 // 2, out_group="c1")
        self.conv2 = f.conv(c1, c2, k2, padding=k2 // 2, in_group="c1", out_group="c2")
        self.conv3 = f.conv(c2, channels, k3, padding=k3 // 2, in_group="c2")
        self.relu = nn.ReLU()
        self.residual = bool(residual)
        self.offset = float(offset)
        if last_scale is None:
            last_scale = 0.01 if self.residual else 1.0
        if last_scale != 1.0:
            self.conv3.weight.set_data(self.conv3.weight.data * float(last_scale))
        if self.residual or last_scale != 1.0:
            self.conv3.bias.set_data(ops.zeros_like(self.conv3.bias.data))

    def construct(self, x):
        if self.offset != 0.0:
            x = x - self.offset
        y = self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))
        if self.residual:
            y = y + x
        if self.offset != 0.0:
            y = y + self.offset
        return y


@register_model(task="super_resolution", input="upscaled", input_shape=(1, 33, 33))
def srcnn(integral=True, kernels=(9, 1, 5), widths=(64, 32), channels=1, residual=False,
          quadrature="trapezoid", control_ratio=0.5, offset=0.0, last_scale=None):
    """SRCNN on ``channels`` image channels (1: the Y channel). Input: the
    bicubic-upscaled low-resolution image; output: the same size.
    ``control_ratio=0.5``: control grids of half the channel count, smooth
    weights for training from scratch with random widths (1.0: one control
    value per channel, for exact conversion). ``residual``, ``offset``,
    ``last_scale``: see the module."""
    f = make_factory(integral, quadrature, control_ratio)
    return finish(SRCNN(f, tuple(kernels), tuple(widths), channels, residual, offset, last_scale), f)
