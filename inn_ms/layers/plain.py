"""``nn.Conv2d`` that runs with the project's convolution backend.

A drop-in subclass (same parameters, same checkpoint names, exported as an
ordinary convolution graph) whose ``construct`` goes through
:func:`inn_ms.functional.conv2d`, so discrete baselines and discretized
networks run as fast as the integral layers on CPU.
"""
from mindspore import nn

from inn_ms.cells import copy_tree, name_parameters_by_path
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


def fast_convolution(cell):
    """This module's :class:`Conv2d` with the configuration and a copy of the
    weights of ``cell`` if it is exactly a ``mindspore.nn.Conv2d`` (NCHW);
    None otherwise (a :func:`inn_ms.cells.copy_tree` replacement)."""
    if type(cell) is not nn.Conv2d or getattr(cell, "data_format", "NCHW") != "NCHW":
        return None
    new = Conv2d(cell.in_channels, cell.out_channels, cell.kernel_size, stride=cell.stride,
                 pad_mode=cell.pad_mode, padding=cell.padding, dilation=cell.dilation, group=cell.group,
                 has_bias=cell.has_bias)
    new.weight.set_data(cell.weight.data.copy())
    if cell.has_bias:
        new.bias.set_data(cell.bias.data.copy())
    return new


def with_fast_convolutions(network):
    """A copy of ``network`` in which every ``mindspore.nn.Conv2d`` is this
    module's :class:`Conv2d` with the same configuration and weights: the same
    function, run with the project's convolution backend (on CPU unfold +
    matmul, tens of times faster than MindSpore's CPU ``Conv2D`` kernel;
    see :mod:`inn_ms.functional`). Other Cells are copied unchanged.

    Networks the library makes already have these convolutions
    (``IntegralModel.discretize``, :func:`inn_ms.prune.prune`, ``convert``'s
    integral model); this is for a network of your own. Exporting writes
    MindSpore's standard ``Conv2D`` whatever the backend
    (:func:`inn_ms.export.export_mindir`, ``backend="native"``)."""
    return name_parameters_by_path(copy_tree(network, fast_convolution))
