"""Integral layers (MindSpore Cells)."""
from inn_ms.keyed import SizeKeyed
from inn_ms.layers.base import IntegralLayer
from inn_ms.layers.batchnorm import IntegralBatchNorm2d
from inn_ms.layers.conv import IntegralConv2d
from inn_ms.layers.dense import IntegralDense
from inn_ms.layers.separable import SeparableIntegralConv2d

__all__ = ["IntegralLayer", "SizeKeyed", "IntegralConv2d", "IntegralDense", "SeparableIntegralConv2d",
           "IntegralBatchNorm2d"]
