"""Loading PyTorch weights into a MindSpore network.

**Reading** (:func:`read_state_dict`): ``.pth``/``.pt`` (needs torch; always
``torch.load(weights_only=True)``), ``.safetensors`` and ``.npz`` (no
torch). Checkpoints as they come are unwrapped where only one reading is
possible: a state_dict under one key (``{'model': sd}``,
``{'state_dict': sd, 'epoch': 3, 'optimizer': ...}``), or a pickled
``nn.Module``, whose parameters and persistent buffers are read while every
class or function the file names is replaced by an inert placeholder (the
file's code is never imported or run). Several state_dicts in one file are
refused, naming where each is (``key=`` picks one).

**Checking** (:func:`check_values`): every floating-point tensor must be
finite and every BatchNorm variance non-negative; a load is refused naming
the tensor and the index of a bad value.

**Matching** (:func:`match_state_dict`), by names only — never by the order
of the keys in the file, which differs between formats (``.safetensors``
sorts its keys):

1. a prefix on every key that the network does not have is dropped
   (``module.`` of DataParallel, ``_orig_mod.`` of ``torch.compile``, or
   any first name whose removal makes names match); a wrapper prefix on some
   keys but not all is refused;
2. ``name_map``: a checkpoint key → a parameter, or a module path → a
   module path (``{'fc': 'head'}``);
3. the same path, with PyTorch's normalisation names
   (``weight/bias/running_mean/running_var``) read as MindSpore's
   (``gamma/beta/moving_mean/moving_variance``);
4. the architecture's rename table (:mod:`inn_ms.convert.torch_names`);
5. what remains is paired module to module only where that is provable: a
   checkpoint module and a network module whose tensors (names and shapes)
   no other remaining module has on either side. Modules that share their
   shapes are not paired: the load is refused listing them, with a
   ``name_map`` to complete.

A load is all or nothing: every problem is listed and no parameter changes.
"""
import logging
import os
import pickle
import re
from collections import OrderedDict

import numpy as np
from mindspore import Tensor

from inn_ms.convert.torch_names import architecture_table, padding_differences

logger = logging.getLogger(__name__)

# PyTorch normalisation suffix → MindSpore's.
BN_SUFFIXES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
               "running_var": "moving_variance"}
_TO_TORCH = {v: k for k, v in BN_SUFFIXES.items()}
IGNORED_SUFFIXES = ("num_batches_tracked",)
VARIANCE_SUFFIXES = ("running_var", "moving_variance")
# First names that wrappers put before every key: DataParallel and
# DistributedDataParallel (``module.``), torch.compile (``_orig_mod.``).
WRAPPER_PREFIXES = ("module", "_orig_mod")
# How deep wrappers are searched for a state_dict ({'a': {'b': sd}} is depth 2).
_WRAPPER_DEPTH = 2


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as one state_dict."""


class InvalidWeightsError(ValueError):
    """Weights with non-finite values or negative BatchNorm variances.
    ``problems``: one phrase per bad tensor, naming it and an index."""

    def __init__(self, source, problems, outcome="refused, nothing was changed"):
        self.problems = list(problems)
        more = f"; and {len(self.problems) - 3} more tensors" if len(self.problems) > 3 else ""
        super().__init__(f"{source}: invalid weights ({outcome}): {'; '.join(self.problems[:3])}{more}")


class WeightLoadError(ValueError):
    """A load that cannot be complete: lists what is missing, unexpected,
    mis-shaped, or ambiguous (modules that only a ``name_map`` can tell apart)."""

    def __init__(self, missing, unexpected, mismatched, ambiguous=()):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        self.ambiguous = list(ambiguous)
        parts = []
        if missing:
            parts.append(f"missing in the checkpoint ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected in the checkpoint ({len(unexpected)}): {unexpected}")
        if mismatched:
            parts.append("shape mismatch ({}): {}".format(
                len(mismatched), [f"{k}: checkpoint {a} vs network {b}" for k, a, b in mismatched]))
        if self.ambiguous:
            parts.append(_describe_ambiguous(self.ambiguous))
        super().__init__("refusing a partial load, nothing was changed; " + "; ".join(parts))


def _natural(text):
    """Sort key that puts ``layer2`` before ``layer10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _describe_ambiguous(ambiguous):
    shown, suggestion = [], {}
    for ck, net, what in ambiguous[:5]:
        if what is None:  # several keys name one parameter
            shown.append(f"checkpoint keys {ck} all name parameter {net[0]!r}")
            continue
        shown.append(f"checkpoint modules {ck} and network modules {net} all hold {what}")
        if len(ck) == len(net):
            suggestion.update(zip(ck, net))
    more = f" (and {len(ambiguous) - 5} more)" if len(ambiguous) > 5 else ""
    text = f"ambiguous, not paired by position ({len(ambiguous)}): " + "; ".join(shown) + more
    if suggestion:
        text += (f"; say which is which with name_map, e.g. name_map={suggestion!r} "
                 f"(pairs in name order: check them)")
    return text


# ---------------------------------------------------------------- reading

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _one_line(e):
    """``Type: first line`` of an exception from a reader, without terminal
    colour codes and without torch's advice to unpickle arbitrary code."""
    lines = _ANSI.sub("", str(e)).strip().splitlines()
    line = lines[0].strip() if lines else ""
    if "weights_only" in line.lower() or "weights only" in line.lower():
        line = "the weights-only unpickler refused it"
    return f"{type(e).__name__}: {line[:300]}"


def read_state_dict(path, key=None):
    """``OrderedDict`` name → numpy array from a PyTorch checkpoint file
    (unwrapped as the module docstring says; ``key``: the entry, or a tuple
    of nested entries, that holds the state_dict when a file has several)."""
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint file at {path!r}")
    ext = os.path.splitext(path)[1].lower()
    readers = {".pth": _read_torch, ".pt": _read_torch, ".safetensors": _read_safetensors, ".npz": _read_npz}
    if ext not in readers:
        raise ValueError(f"unsupported checkpoint format {ext!r} (use .pth, .pt, .safetensors or .npz)")
    try:
        obj = readers[ext](path)
    except CheckpointError:
        raise
    except Exception as e:  # each format's readers raise their own types on corrupt files
        raise CheckpointError(f"cannot read checkpoint {path!r} (corrupt or truncated?): {_one_line(e)}") from None
    return unwrap_state_dict(obj, f"checkpoint {path!r}", key)


def _read_safetensors(path):
    from safetensors.numpy import load_file
    return load_file(path)


def _read_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class _Placeholder:
    """Stands in for a class or function that a pickle names: it is created
    and given its state, and never runs anything (``pickled_name``: the name
    in the file)."""

    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"reading {path!r} needs PyTorch (pip install 'inn_ms[torch]'); "
                              f".safetensors and .npz checkpoints load without it") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as refused:
        first = refused
    # The file names Python classes or functions (a pickled nn.Module, say).
    # Read it again with each name bound to an inert placeholder: still the
    # weights-only unpickler, and nothing the file names is imported.
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        names = []
    if not names:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {_one_line(first)}")
    stubs = [(type(n.rpartition(".")[2] or "Placeholder", (_Placeholder,), {"pickled_name": n}), n) for n in names]
    try:
        with torch.serialization.safe_globals(stubs):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path!r}: it pickles Python objects "
                              f"({', '.join(names[:5])}) that cannot be read as data: {_one_line(e)}") from None
    logger.info("%s pickles Python objects (%s): read as inert placeholders, none imported", path,
                ", ".join(names[:5]))
    return obj


def _is_module(obj):
    """A pickled ``nn.Module`` read as a placeholder."""
    state = vars(obj) if isinstance(obj, _Placeholder) else {}
    return isinstance(state.get("_parameters"), dict) and isinstance(state.get("_modules"), dict)


def _module_state(obj, prefix=""):
    """The state_dict of a pickled module: parameters, then persistent
    buffers, then each child's, as ``nn.Module.state_dict`` orders them."""
    state = vars(obj)
    out = OrderedDict()
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in state["_parameters"].items():
        if value is not None:
            out[prefix + name] = value
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, child in state["_modules"].items():
        if child is not None and _is_module(child):
            out.update(_module_state(child, f"{prefix}{name}."))
    return out


def _is_tensor(v):
    return isinstance(v, (np.ndarray, Tensor)) or (hasattr(v, "detach") and hasattr(v, "shape"))


def _to_numpy(v):
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, Tensor):
        return v.asnumpy()
    if hasattr(v, "detach"):  # torch
        v = v.detach().cpu()
        try:
            return v.numpy()
        except TypeError:  # bfloat16 and other types numpy lacks
            return v.float().numpy()
    return np.asarray(v)


def _find_state_dicts(obj, path, depth):
    """``[(entry path, name → tensor)]``: the state_dicts in ``obj``."""
    if _is_module(obj):
        return [(path, _module_state(obj))]
    if not isinstance(obj, dict):
        return []
    tensors = OrderedDict((k, v) for k, v in obj.items() if isinstance(k, str) and _is_tensor(v))
    found = [(path, tensors)] if tensors else []
    if depth > 0:
        for k, v in obj.items():
            if isinstance(k, str) and not _is_tensor(v):
                found += _find_state_dicts(v, path + (k,), depth - 1)
    return found


def _where(path):
    return "".join(f"[{k!r}]" for k in path) or " (top level)"


def unwrap_state_dict(obj, source="checkpoint", key=None):
    """The one state_dict in ``obj`` (what a checkpoint file holds), as
    ``OrderedDict`` name → numpy array; ``key`` selects an entry first."""
    if key is not None:
        for k in ((key,) if isinstance(key, str) else tuple(key)):
            if not isinstance(obj, dict) or k not in obj:
                entries = sorted(map(str, obj))[:20] if isinstance(obj, dict) else type(obj).__name__
                raise CheckpointError(f"{source} has no entry {k!r} (it has {entries})")
            obj = obj[k]
    found = _find_state_dicts(obj, (), _WRAPPER_DEPTH)
    if not found:
        if _is_module(obj) or isinstance(obj, _Placeholder):
            kind = f"a pickled {type(obj).pickled_name}"
        elif isinstance(obj, dict):
            kind = f"a dict without tensors (keys {sorted(map(str, obj))[:10]})"
        else:
            kind = f"a {type(obj).__name__}"
        raise CheckpointError(f"{source} holds {kind}, not a state_dict")
    if len(found) > 1:
        where = ", ".join(f"checkpoint{_where(p)}" for p, _ in found)
        example = next((p for p, _ in found if p), ())
        pick = repr(example[0]) if len(example) == 1 else repr(example)
        raise CheckpointError(f"{source} holds {len(found)} state_dicts ({where}): cannot tell which one "
                              f"to load; choose with key= (e.g. key={pick})")
    path, state = found[0]
    if path:
        logger.info("%s: loading the state_dict at checkpoint%s", source, _where(path))
    elif _is_module(obj):
        logger.info("%s: loading the parameters of the pickled %s", source, type(obj).pickled_name)
    return OrderedDict((k, _to_numpy(v)) for k, v in state.items())


# ---------------------------------------------------------------- checking

def value_problem(name, value):
    """None, or a phrase naming a bad value of the tensor ``name``: the first
    non-finite entry, or the first negative entry of a BatchNorm variance
    (``name`` ends in ``running_var``/``moving_variance``)."""
    a = _to_numpy(value)
    if a.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        return (f"{name}{list(where) if where else ''} is {a[where]} "
                f"({int(bad.sum())} of {a.size} values not finite)")
    if name.endswith(VARIANCE_SUFFIXES):
        negative = a < 0
        if negative.any():
            where = tuple(int(i) for i in np.argwhere(negative)[0])
            return (f"{name}{list(where) if where else ''} is {float(a[where]):.4g}, a negative BatchNorm "
                    f"variance ({int(negative.sum())} of {a.size} negative)")
    return None


def check_values(values, source="weights", outcome="refused, nothing was changed"):
    """Raise :class:`InvalidWeightsError` if any tensor of ``values`` (name →
    array, Tensor or Parameter) is not finite or is a negative BatchNorm
    variance (see :func:`value_problem`)."""
    problems = [p for p in (value_problem(n, v) for n, v in values.items()) if p]
    if problems:
        raise InvalidWeightsError(source, problems, outcome)


# ---------------------------------------------------------------- matching

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
    for the ones whose shapes differ. Both empty: ``values`` fits.

    Values that fit are also checked (:func:`check_values`): a non-finite
    value or a negative BatchNorm variance raises
    :class:`InvalidWeightsError`, so every loader that checks the fit of a
    file also refuses invalid weights."""
    missing = [n for n in params if n not in values]
    mismatched = [f"{n}: {tuple(values[n].shape)} vs {tuple(p.shape)}"
                  for n, p in params.items() if n in values and tuple(values[n].shape) != tuple(p.shape)]
    if not missing and not mismatched:
        check_values({n: values[n] for n in params}, "the weights to load")
    return missing, mismatched


def _split(name):
    module, _, suffix = name.rpartition(".")
    return module, suffix


def _join(module, suffix):
    return f"{module}.{suffix}" if module else suffix


def _is_module_path(path, params):
    return any(n.startswith(path + ".") for n in params)


def _suffix_targets(module, suffix, params):
    """Parameters that ``module.suffix`` may stand for: the same name, or
    its MindSpore normalisation name."""
    names = [_join(module, suffix)]
    if suffix in BN_SUFFIXES:
        names.append(_join(module, BN_SUFFIXES[suffix]))
    return [n for n in names if n in params]


def _renamed_module(module, table):
    """``module`` with its longest path prefix found in ``table`` replaced
    (None: no entry applies)."""
    parts = module.split(".") if module else []
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in table:
            return _join(table[head], ".".join(parts[i:])) if i < len(parts) else table[head]
    return None


def _name_map_target(key, original, name_map, params):
    for k in (original, key):
        if k in name_map and name_map[k] in params:
            return [name_map[k]]
    for k in (original, key):
        module, suffix = _split(k)
        renamed = _renamed_module(module, name_map)
        if renamed is not None:
            return _suffix_targets(renamed, suffix, params)
    return []


def _table_targets(key, table, params):
    module, suffix = _split(key)
    renamed = table.get(module) if table else None
    return _suffix_targets(renamed, suffix, params) if renamed is not None else []


def _direct_hits(keys, params, table):
    return sum(1 for k in keys if _suffix_targets(*_split(k), params) or _table_targets(k, table, params))


def _strip_prefixes(state, params, table):
    """Drop a first name that every key carries and the network lacks (see
    the module docstring). Returns ``(state, {new key: original key})``."""
    original = {k: k for k in state}
    while state:
        keys = list(state)
        for prefix in WRAPPER_PREFIXES:
            wrapped = [k for k in keys if k.startswith(prefix + ".")]
            if wrapped and len(wrapped) < len(keys) and not _is_module_path(prefix, params):
                other = next(k for k in keys if not k.startswith(prefix + "."))
                raise ValueError(
                    f"{len(wrapped)} of {len(keys)} checkpoint keys start with {prefix + '.'!r} (added by a "
                    f"wrapper such as DataParallel) and the others do not (e.g. {original[other]!r}): cannot "
                    f"tell which are this network's names; remove or rename them")
        heads = {k.split(".", 1)[0] for k in keys}
        if len(heads) != 1 or not all("." in k for k in keys):
            break
        head = heads.pop()
        if _is_module_path(head, params) or head in params:
            break
        stripped = OrderedDict((k[len(head) + 1:], v) for k, v in state.items())
        if head not in WRAPPER_PREFIXES and \
                _direct_hits(stripped, params, table) <= _direct_hits(keys, params, table):
            break
        logger.info("checkpoint keys all start with %r, which the network does not have: dropped", head + ".")
        original = {k[len(head) + 1:]: original[k] for k in keys}
        state = stripped
    return state, original


def _signature(tensors, shape_of):
    return tuple(sorted((s, tuple(shape_of(n))) for s, n in tensors.items()))


def _by_module(names):
    """module path → {PyTorch-style suffix: name}; None for a module whose
    suffixes collide once read the PyTorch way (never paired)."""
    out = OrderedDict()
    for name in names:
        module, suffix = _split(name)
        group = out.setdefault(module, {})
        if group is None:
            continue
        canon = _TO_TORCH.get(suffix, suffix)
        out[module] = None if canon in group else {**group, canon: name}
    return out


def _match_unique_modules(state, params):
    """Pair leftover checkpoint modules with leftover network modules where
    the pairing is forced: the two hold tensors of the same names and
    shapes, and no other leftover module on either side does. Returns
    ``(pairs name → key, ambiguous [(checkpoint modules, network modules, shapes)])``."""
    ck, net = _by_module(state), _by_module(params)
    classes = OrderedDict()
    for side, mods, shape_of in ((0, ck, lambda n: state[n].shape), (1, net, lambda n: params[n].shape)):
        for module, tensors in mods.items():
            if tensors:
                classes.setdefault(_signature(tensors, shape_of), ([], []))[side].append(module)
    pairs, ambiguous, paired = OrderedDict(), [], []
    for sig, (cks, nets) in classes.items():
        if not cks or not nets:
            continue
        if len(cks) == 1 and len(nets) == 1:
            for canon, key in ck[cks[0]].items():
                pairs[net[nets[0]][canon]] = key
            paired.append(f"{cks[0] or '(top)'} -> {nets[0] or '(top)'}")
        else:
            what = ", ".join(f"{s} {shape}" for s, shape in sig)
            ambiguous.append((sorted(cks, key=_natural), sorted(nets, key=_natural), f"[{what}]"))
    if paired:
        logger.info("paired %d modules by their unique shapes: %s", len(paired), ", ".join(paired))
    return pairs, ambiguous


def match_state_dict(network, state, name_map=None):
    """``OrderedDict`` parameter name → array for every parameter of
    ``network``, matched by name as the module docstring says. Raises
    :class:`WeightLoadError` if anything is left over, mis-shaped or
    ambiguous, and ``ValueError`` for a ``name_map`` entry that points
    nowhere."""
    params = network_parameters(network)
    state = OrderedDict((k, v) for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES))
    name_map = dict(name_map or {})
    unknown = [v for v in name_map.values() if v not in params and not _is_module_path(v, params)]
    if unknown:
        raise ValueError(f"name_map points at parameters or modules the network does not have: {unknown}")
    table = architecture_table(network)
    state, original = _strip_prefixes(state, params, table)

    matched, mismatched, ambiguous = {}, [], []
    done_keys, done_targets = set(), set()  # consumed by a mismatch or a conflict
    passes = (lambda k: _name_map_target(k, original[k], name_map, params),
              lambda k: _suffix_targets(*_split(k), params),
              lambda k: _table_targets(k, table, params))
    for targets_of in passes:
        used = set(matched.values()) | done_keys
        proposals = OrderedDict()
        for key in state:
            if key in used:
                continue
            targets = [t for t in targets_of(key) if t not in matched and t not in done_targets]
            if targets:
                proposals.setdefault(targets[0], []).append(key)
        for target, keys in proposals.items():
            if len(keys) > 1:
                ambiguous.append((sorted(original[k] for k in keys), [target], None))
                done_keys.update(keys)
                done_targets.add(target)
                continue
            key = keys[0]
            if tuple(state[key].shape) != tuple(params[target].shape):
                mismatched.append((original[key], tuple(state[key].shape), tuple(params[target].shape)))
                done_keys.add(key)
                done_targets.add(target)
                continue
            matched[target] = key
    used = set(matched.values()) | done_keys
    rest = OrderedDict((k, v) for k, v in state.items() if k not in used)
    free = OrderedDict((n, p) for n, p in params.items() if n not in matched and n not in done_targets)
    if rest and free:
        pairs, unclear = _match_unique_modules(rest, free)
        matched.update(pairs)
        module_of = {_split(k)[0]: _split(original[k])[0] for k in rest}
        ambiguous += [([module_of[m] for m in cks], nets, what) for cks, nets, what in unclear]
        unclear_ck = {m for cks, _, _ in unclear for m in cks}
        unclear_net = {m for _, nets, _ in unclear for m in nets}
        rest = OrderedDict((k, v) for k, v in rest.items()
                           if k not in pairs.values() and _split(k)[0] not in unclear_ck)
        free = OrderedDict((n, p) for n, p in free.items() if n not in pairs and _split(n)[0] not in unclear_net)
    if free or rest or mismatched or ambiguous:
        raise WeightLoadError(list(free), [original[k] for k in rest], mismatched, ambiguous)
    return OrderedDict((n, state[matched[n]]) for n in params)


def load_mindspore_weights(model, path):
    """Load a MindSpore ``.ckpt`` into ``model`` after checking every
    parameter is present with the right shape (MindSpore's own loader stops
    half-way on a shape mismatch) and every value is valid (finite; BatchNorm
    variances non-negative). Extra entries (optimiser state) are ignored."""
    import mindspore as ms
    ckpt = ms.load_checkpoint(path)
    params = {p.name: p for p in model.get_parameters()}
    check_values({n: ckpt[n] for n in params if n in ckpt}, f"checkpoint {path}")
    missing, mismatched = checkpoint_misfit(params, ckpt)
    if missing or mismatched:
        raise ValueError(f"checkpoint {path} does not fit the model, nothing loaded; "
                         f"missing: {missing}; shape mismatch (checkpoint vs model): {mismatched}")
    ms.load_param_into_net(model, {n: ckpt[n] for n in params}, strict_load=True)


def load_torch_weights(network, source, name_map=None, key=None):
    """Load a PyTorch checkpoint (a path, or a mapping as a checkpoint file
    holds it) into ``network``: every parameter or none, after checking
    every value (:func:`check_values`). ``name_map``/``key``: see
    :func:`match_state_dict` / :func:`read_state_dict`. Logs a warning when
    the network pads where PyTorch networks cannot
    (:func:`~inn_ms.convert.torch_names.padding_differences`). Returns the
    loaded parameter names."""
    if isinstance(source, (str, os.PathLike)):
        what = f"checkpoint {os.fspath(source)!r}"
        state = read_state_dict(os.fspath(source), key)
    else:
        what = "the given state_dict"
        state = unwrap_state_dict(source, what, key)
    check_values(state, what)
    matched = match_state_dict(network, state, name_map)
    params = network_parameters(network)
    for name, value in matched.items():
        params[name].set_data(Tensor(np.asarray(value), dtype=params[name].dtype))
    differ = padding_differences(network)
    if differ:
        logger.warning("%s: loaded PyTorch weights into a network that pads with pad_mode='same' at a stride "
                       "above 1 (%s), which no PyTorch layer does: for even input sizes its windows are shifted "
                       "by one pixel, so it does not compute what the network these weights come from computes "
                       "(for a torchvision ResNet use the zoo's resnet18/resnet50 with stem='imagenet')",
                       what, "; ".join(differ[:5]))
    return list(matched)
