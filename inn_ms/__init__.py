"""inn_ms: Integral Neural Networks for MindSpore.

Weights are continuous functions of channel coordinates (cubic Keys
interpolation of trainable control values), sampled at a partition of
[0, 1] and multiplied by quadrature weights. Resampling with fewer points
gives a thinner network with no fine-tuning: structured pruning.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

from inn_ms.layers import IntegralConv2d, IntegralDense, SeparableIntegralConv2d  # noqa: E402
from inn_ms.model import IntegralModel, count_parameters  # noqa: E402
from inn_ms.partition import (CompositePartition, NormalSizes, TrainablePartition,  # noqa: E402
                              UniformPartition, UniformSizes)
from inn_ms.quadrature import get_quadrature, integrate  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler  # noqa: E402

__all__ = ["IntegralConv2d", "IntegralDense", "SeparableIntegralConv2d", "IntegralModel", "count_parameters",
           "UniformPartition", "TrainablePartition", "CompositePartition", "UniformSizes", "NormalSizes",
           "get_quadrature", "integrate", "RandomWidthTrainer", "WidthSampler"]
