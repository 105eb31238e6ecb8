"""Loading PyTorch weights into a MindSpore network.

Reads a PyTorch ``state_dict`` from ``.pth``/``.pt`` (needs torch),
``.safetensors`` or ``.npz`` (no torch), maps names to MindSpore's
(BatchNorm ``weight/bias/running_mean/running_var`` →
``gamma/beta/moving_mean/moving_variance``, ``num_batches_tracked``
dropped), falls back to matching the remaining tensors module by module,
and refuses a load that would be partial: every problem is listed and no
parameter changes.
"""
import logging
import os
from collections import OrderedDict

import numpy as np
from mindspore import Tensor

logger = logging.getLogger(__name__)

# PyTorch BatchNorm suffix → MindSpore BatchNorm suffix.
BN_SUFFIXES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
               "running_var": "moving_variance"}
IGNORED_SUFFIXES = ("num_batches_tracked",)


class WeightLoadError(ValueError):
    """A load that cannot be complete: lists what is missing, unexpected or mis-shaped."""

    def __init__(self, missing, unexpected, mismatched):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"missing in the checkpoint ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected in the checkpoint ({len(unexpected)}): {unexpected}")
        if mismatched:
            parts.append("shape mismatch ({}): {}".format(
                len(mismatched), [f"{k}: checkpoint {a} vs network {b}" for k, a, b in mismatched]))
        super().__init__("refusing a partial load, nothing was changed; " + "; ".join(parts))


def read_state_dict(path):
    """``OrderedDict`` name → numpy array from a PyTorch checkpoint file."""
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint file at {path!r}")
    ext = os.path.splitext(path)[1].lower()
    readers = {".pth": _read_torch, ".pt": _read_torch, ".safetensors": _read_safetensors, ".npz": _read_npz}
    if ext not in readers:
        raise ValueError(f"unsupported checkpoint format {ext!r} (use .pth, .pt, .safetensors or .npz)")
    try:
        state = readers[ext](path)
    except CheckpointError:
        raise
    except Exception as e:  # each format's readers raise their own types on corrupt files
        raise CheckpointError(f"cannot read checkpoint {path!r} (corrupt or truncated?): "
                              f"{type(e).__name__}: {e}") from e
    return OrderedDict((k, np.asarray(v)) for k, v in state.items())


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as a state_dict."""


def _read_safetensors(path):
    from safetensors.numpy import load_file
    return load_file(path)


def _read_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"reading {path!r} needs PyTorch (pip install 'inn_ms[torch]'); "
                         f".safetensors and .npz checkpoints load without it") from None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(obj).__name__}, not a state_dict")
    return OrderedDict((k, v.detach().cpu().numpy()) for k, v in obj.items() if hasattr(v, "detach"))


def _candidates(name):
    """MindSpore names a PyTorch parameter name may stand for."""
    out = [name]
    prefix, _, suffix = name.rpartition(".")
    if suffix in BN_SUFFIXES:
        out.append(f"{prefix}.{BN_SUFFIXES[suffix]}" if prefix else BN_SUFFIXES[suffix])
    return out


def network_parameters(network):
    """Parameters by their path in the Cell tree (``conv1.weight``), the
    counterpart of PyTorch's state_dict keys; a shared parameter once."""
    out, seen = OrderedDict(), set()
    for name, p in network.parameters_and_names():
        if id(p) not in seen:
            seen.add(id(p))
            out[name] = p
    return out


def checkpoint_misfit(params, values):
    """``(missing, mismatched)``: names in ``params`` (name → Parameter) absent
    from ``values`` (name → tensor), and ``"name: values … vs params …"``
    for the ones whose shapes differ. Both empty: ``values`` fits."""
    missing = [n for n in params if n not in values]
    mismatched = [f"{n}: {tuple(values[n].shape)} vs {tuple(p.shape)}"
                  for n, p in params.items() if n in values and tuple(values[n].shape) != tuple(p.shape)]
    return missing, mismatched


def _by_module(names):
    """``OrderedDict`` module path → list of parameter suffixes, in order."""
    out = OrderedDict()
    for name in names:
        prefix, _, suffix = name.rpartition(".")
        out.setdefault(prefix, []).append(suffix)
    return out


def _match_by_structure(state, params):
    """Pair leftover checkpoint tensors with leftover parameters: modules in
    order, one to one; inside a module by suffix (``weight`` → ``weight`` or
    ``gamma``, ``running_var`` → ``moving_variance`` …), never by position
    (MindSpore's BatchNorm orders its four same-shaped parameters unlike
    PyTorch's). Returns the pairs, or None if the structures differ."""
    t_mods, m_mods = _by_module(state), _by_module(params)
    if len(t_mods) != len(m_mods):
        return None
    pairs = OrderedDict()
    for (tp, t_suf), (mp, m_suf) in zip(t_mods.items(), m_mods.items()):
        if len(t_suf) != len(m_suf):
            return None
        for suffix in t_suf:
            target = suffix if suffix in m_suf else BN_SUFFIXES.get(suffix)
            if target not in m_suf:
                return None
            key = f"{tp}.{suffix}" if tp else suffix
            name = f"{mp}.{target}" if mp else target
            if name in pairs or tuple(state[key].shape) != tuple(params[name].shape):
                return None
            pairs[name] = state[key]
    return pairs


def match_state_dict(network, state, name_map=None):
    """Pairs ``(mindspore_name, array)`` for every parameter of ``network``.

    By name first (``name_map`` entries, then the PyTorch → MindSpore
    renames), then the rest by structure (:func:`_match_by_structure`). Raises
    :class:`WeightLoadError` if anything is left over or mis-shaped.
    """
    params = network_parameters(network)
    state = OrderedDict((k, v) for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES))
    name_map = dict(name_map or {})
    unknown_targets = [v for v in name_map.values() if v not in params]
    if unknown_targets:
        raise ValueError(f"name_map points at parameters the network does not have: {unknown_targets}")
    matched, mismatched = OrderedDict(), []
    rest = OrderedDict()
    for key, value in state.items():
        target = name_map.get(key) or next((c for c in _candidates(key) if c in params), None)
        if target is None or target in matched:
            rest[key] = value
            continue
        if tuple(value.shape) != tuple(params[target].shape):
            mismatched.append((key, tuple(value.shape), tuple(params[target].shape)))
            continue
        matched[target] = value
    free = [n for n in params if n not in matched]
    if rest and free:
        pairs = _match_by_structure(rest, {n: params[n] for n in free})
        if pairs is not None:
            logger.info("matched %d tensors by module order and shape", len(pairs))
            matched.update(pairs)
            rest, free = OrderedDict(), []
    if free or rest or mismatched:
        raise WeightLoadError(free, list(rest), mismatched)
    return matched


def load_torch_weights(network, source, name_map=None):
    """Load a PyTorch checkpoint (path or name → array mapping) into
    ``network``: all parameters or none. Returns the loaded names."""
    state = read_state_dict(source) if isinstance(source, (str, os.PathLike)) else OrderedDict(source)
    matched = match_state_dict(network, state, name_map)
    params = network_parameters(network)
    for name, value in matched.items():
        params[name].set_data(Tensor(np.asarray(value), dtype=params[name].dtype))
    return list(matched)
