"""inn_ms: Integral Neural Networks for MindSpore.

Weights are continuous functions of channel coordinates (cubic Keys
interpolation of trainable control values), sampled at a partition of
[0, 1] and multiplied by quadrature weights. Resampling with fewer points
gives a thinner network with no fine-tuning: structured pruning.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
