"""``nn.Conv2d`` that runs with the project's convolution backend.

A drop-in subclass (same parameters, same checkpoint names, exported as an
ordinary convolution graph) whose ``construct`` goes through
:func:`inn_ms.functional.conv2d`, so discrete baselines and discretized
networks run as fast as the integral layers on CPU.
"""
from mindspore import nn

from inn_ms.functional import conv2d, conv_backend


class Conv2d(nn.Conv2d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        p = self.padding
        self._padding4 = (p, p, p, p) if isinstance(p, int) else tuple(p)
        if self.pad_mode != "pad":
            self._padding4 = (0, 0, 0, 0)
        self.conv_backend = conv_backend()

    def construct(self, x):
        return conv2d(x, self.weight, self.bias if self.has_bias else None, self.stride, self.pad_mode,
                      self._padding4, self.dilation, self.group, self.conv_backend)
