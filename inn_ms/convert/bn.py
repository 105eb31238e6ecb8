"""Folding BatchNorm into the convolution or dense layer before it.

For inference ``BN(W x + b) = s·(W x + b − μ) + β`` with ``s = γ/√(σ² + ε)``
per output channel, which is one layer with weight ``s·W`` and bias
``s·(b − μ) + β``. Folding removes the BatchNorm from the channel group, so
the integral network has fewer continuous tensors to resample.
"""
import numpy as np
from mindspore import Tensor, nn

from inn_ms.cells import get_cell, name_parameters_by_path, set_cell


def fold_bn(layer, bn):
    """A new layer of ``layer``'s type (``nn.Conv2d`` or ``nn.Dense``) equal
    to ``bn(layer(x))`` in inference, with a bias."""
    if not isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm1d)):
        raise ValueError(f"fold_bn: expected a BatchNorm, got {type(bn).__name__}")
    gamma, beta, mean, var = (p.asnumpy().astype(np.float64)
                              for p in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    scale = gamma / np.sqrt(var + float(bn.eps))
    w = layer.weight.asnumpy().astype(np.float64)
    if w.shape[0] != scale.shape[0]:
        raise ValueError(f"fold_bn: layer has {w.shape[0]} outputs, BatchNorm {scale.shape[0]} channels")
    b = layer.bias.asnumpy().astype(np.float64) if layer.has_bias else np.zeros(w.shape[0])
    w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    b = (b - mean) * scale + beta
    if isinstance(layer, nn.Conv2d):
        padding = layer.padding
        new = type(layer)(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                          pad_mode=layer.pad_mode, padding=padding, dilation=layer.dilation,
                          group=layer.group, has_bias=True)
    elif isinstance(layer, nn.Dense):
        new = nn.Dense(layer.in_channels, layer.out_channels, has_bias=True)
    else:
        raise ValueError(f"fold_bn: can fold into nn.Conv2d or nn.Dense, not {type(layer).__name__}")
    new.weight.set_data(Tensor(w.astype(np.float32)))
    new.bias.set_data(Tensor(b.astype(np.float32)))
    return new


def output_statistics(bn):
    """Mean and standard deviation, per channel, of what ``bn`` outputs on
    the data its moving statistics describe: ``β`` and ``|γ|·σ/√(σ²+ε)``.
    Folding the BatchNorm away keeps them here, for data-free repair
    (:mod:`inn_ms.synthesis`)."""
    gamma, beta, var = (p.asnumpy().astype(np.float64) for p in (bn.gamma, bn.beta, bn.moving_variance))
    var = np.maximum(var, 0.0)
    return beta, np.abs(gamma) * np.sqrt(var / (var + float(bn.eps)))


def fold_batchnorms(network, pairs):
    """Fold each BatchNorm at path ``bn`` into the layer at ``pairs[bn]``
    (from :attr:`inn_ms.graph.channels.ChannelGroups.bn_after`) and put an
    ``nn.Identity`` in the BatchNorm's place. Returns the folded BN paths."""
    done = []
    for bn_path, layer_path in pairs.items():
        bn, layer = get_cell(network, bn_path), get_cell(network, layer_path)
        if not isinstance(layer, (nn.Conv2d, nn.Dense)) or not isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm1d)):
            continue
        set_cell(network, layer_path, fold_bn(layer, bn))
        set_cell(network, bn_path, nn.Identity())
        done.append(bn_path)
    if done:
        name_parameters_by_path(network)
    return done
