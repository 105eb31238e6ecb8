"""inn_ms: Integral Neural Networks for MindSpore.

Weights are continuous functions of channel coordinates (cubic Keys
interpolation of trainable control values), sampled at a partition of
[0, 1] and multiplied by quadrature weights. Resampling with fewer points
gives a thinner network with no fine-tuning: structured pruning.

Trained discrete networks become integral with ``inn_ms.convert.convert``
(the subpackage ``inn_ms.convert`` also loads PyTorch weights).
"""
import logging

from inn_ms._version import __version__  # noqa: E402,F401

logging.getLogger(__name__).addHandler(logging.NullHandler())

from inn_ms.layers import (IntegralBatchNorm2d, IntegralConv2d, IntegralDense,  # noqa: E402
                           SeparableIntegralConv2d)
from inn_ms.model import IntegralModel, count_parameters  # noqa: E402
from inn_ms.partition import (CompositePartition, NormalSizes, TrainablePartition,  # noqa: E402
                              UniformPartition, UniformSizes)
from inn_ms.quadrature import get_quadrature, integrate  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler  # noqa: E402
from inn_ms.graph.channels import find_channel_groups  # noqa: E402
from inn_ms.graph.kinds import LayerKind, register_layer_kind  # noqa: E402

__all__ = ["IntegralConv2d", "IntegralDense", "SeparableIntegralConv2d", "IntegralBatchNorm2d", "IntegralModel",
           "count_parameters", "find_channel_groups", "LayerKind", "register_layer_kind",
           "UniformPartition", "TrainablePartition", "CompositePartition", "UniformSizes", "NormalSizes",
           "get_quadrature", "integrate", "RandomWidthTrainer", "WidthSampler"]
