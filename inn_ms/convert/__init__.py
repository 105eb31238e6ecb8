"""Conversion of discrete networks to integral form (first piece: weights)."""
from inn_ms.convert.weights import (CheckpointError, WeightLoadError, load_torch_weights,  # noqa: F401
                                    match_state_dict, read_state_dict)
