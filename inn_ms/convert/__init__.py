"""Conversion of discrete networks to integral form: PyTorch weights, channel
groups, BatchNorm folding, TSP channel permutation, integral layers."""
from inn_ms.convert.convert import ConversionError, check_conversion, clone_network, convert  # noqa: F401
from inn_ms.convert.weights import (CheckpointError, InvalidWeightsError, WeightLoadError,  # noqa: F401
                                    check_values, load_torch_weights, match_state_dict, read_state_dict,
                                    unwrap_state_dict)
