"""The integral artifact: one file that lets a device resample a network.

A ``.inn`` file is a zip archive of three members:

* ``manifest.json`` — format name and version, the architecture (a zoo
  network and its arguments, or a discrete builder plus the conversion
  options that turned it integral), every channel group with its full size,
  the size it was saved at and the sizes allowed, the quadrature and the
  resampling rule of each group, the parametrization (Keys cubic kernel,
  control grid sizes per layer);
* ``weights.ckpt`` — the continuous parameters (control values, biases,
  BatchNorm statistics) as a MindSpore checkpoint;
* ``digest.sha256`` — one SHA-256 over the manifest and the weights, so an
  edited manifest (a group size, the architecture) is refused as corrupt
  just like edited weights.

The manifest of a converted network also keeps the conversion's result
(``conversion``: every continuous group's size, how each layer uses the
groups, the BatchNorms folded, and each layer's output positions for the
input shape converted at), so loading builds the integral network from the
discrete architecture directly: nothing is traced or compiled until the
network runs, and pruning at that input shape counts MACs without tracing.
Loading checks the groups and every parameter against the manifest and
loads the weights; it needs inn_ms and the architecture's code (the zoo,
mindcv, or the trusted builder), not PyTorch or training code. The architecture is built only by a known builder
(:mod:`inn_ms.builders`): a file cannot make us import or call anything
else. Writes are atomic (:func:`inn_ms.fileio.atomic_write`); a truncated,
corrupt, incomplete or newer-version file is refused with a clear message.

Format versions 1 and 2 (inn_ms before the digest) have a checksum of the
weights only. They are refused by default; ``load_artifact(path,
legacy=True)`` reads one whose manifest you trust, and
:func:`upgrade_artifact` rewrites it as version 3.
"""
import hashlib
import json
import logging
import os
import tempfile
import zipfile

from inn_ms._version import __version__
from inn_ms.builders import (UntrustedBuilderError, architecture_builder, build_discrete,  # noqa: F401
                             converted_architecture, resolve, zoo_architecture)
from inn_ms.convert.convert import convert, rebuild_converted
from inn_ms.convert.weights import checkpoint_misfit, network_parameters
from inn_ms.fileio import atomic_write
from inn_ms.layers.base import IntegralLayer
from inn_ms.partition import size_range, size_step

logger = logging.getLogger(__name__)

FORMAT = "inn_ms-integral"
VERSION = 3  # the newest version read; 2 added a group's "resampling" rule, 3 the digest over everything
LEGACY_VERSIONS = (1, 2)  # a checksum of the weights only
KERNEL = "keys(a=-0.75), edge-clamped"
MANIFEST, WEIGHTS, DIGEST = "manifest.json", "weights.ckpt", "digest.sha256"
# Options of inn_ms.convert.convert a converted architecture may record.
CONVERT_OPTIONS = ("fold_bn", "quadrature", "discrete_dims", "continuous_dims")


class ArtifactError(ValueError):
    """An integral artifact that cannot be read or does not fit its manifest."""


def _architecture_error(path, text):
    return ArtifactError(f"{path!r}: invalid architecture in the manifest: {text}")


def _check_architecture(architecture, path="artifact"):
    """The architecture spec, checked key by key (a named error, not a KeyError)."""
    if not isinstance(architecture, dict):
        raise _architecture_error(path, f"expected an object, got {type(architecture).__name__}")
    kind = architecture.get("kind")
    if kind not in ("zoo", "converted"):
        raise _architecture_error(path, f"unknown kind {kind!r} (expected 'zoo' or 'converted')")
    key = "name" if kind == "zoo" else "builder"
    if not isinstance(architecture.get(key), str) or not architecture[key]:
        raise _architecture_error(path, f"a {kind} architecture needs {key!r} (a string), got "
                                        f"{architecture.get(key)!r}")
    if not isinstance(architecture.get("kwargs", {}), dict):
        raise _architecture_error(path, f"'kwargs' must be an object, got {architecture['kwargs']!r}")
    if kind == "converted":
        shape = architecture.get("input_shape")
        if (not isinstance(shape, list) or len(shape) < 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
            raise _architecture_error(path, f"'input_shape' must be a list of at least two ints >= 1, got {shape!r}")
        options = architecture.get("convert", {})
        if not isinstance(options, dict):
            raise _architecture_error(path, f"'convert' must be an object, got {options!r}")
        unknown = sorted(k for k in options if k not in CONVERT_OPTIONS)
        if unknown:
            raise _architecture_error(path, f"unknown conversion option(s) {unknown}; allowed: {list(CONVERT_OPTIONS)}")
    return architecture


def rebuild(architecture, builders=None, conversion=None):
    """The integral model an architecture spec describes, with fresh weights.
    The builder it names must be known (:mod:`inn_ms.builders`) or trusted by
    the caller through ``builders``; it is resolved before anything runs.
    ``conversion`` (a converted architecture's recorded ``plan``): build
    the integral layers from it, no tracing; without it the conversion is
    run again (files written before the plan was recorded)."""
    _check_architecture(architecture)
    kwargs = dict(architecture.get("kwargs", {}))
    if architecture["kind"] == "zoo":
        return resolve(architecture["name"], builders, kind="integral")(**kwargs)
    fn = resolve(architecture["builder"], builders, kind="discrete")
    net = fn(**kwargs)
    options = architecture.get("convert", {})
    if conversion is not None:
        model = rebuild_converted(net, conversion["plan"], quadrature=options.get("quadrature", "trapezoid"))
        model.conversion = conversion
        return model
    return convert(net, tuple(architecture["input_shape"]), permute=False, verify=False, **options)


def describe_architecture(architecture):
    """``name(k=v, ...)`` of an architecture spec, for messages."""
    if not isinstance(architecture, dict):
        return repr(architecture)
    name = architecture_builder(architecture)
    kwargs = architecture.get("kwargs") or {}
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())) if isinstance(kwargs, dict) else repr(kwargs)
    return f"{name}({args})"


def check_same_architecture(architecture, name, kwargs=None, what="the artifact"):
    """Raise unless ``architecture`` (an artifact's) is built by ``name`` with
    every argument of ``kwargs`` recorded and equal (arguments it records
    beyond them, such as filled-in defaults, are not compared)."""
    architecture = _json_ready(architecture, "architecture")  # tuples as lists, as a manifest has them
    _check_architecture(architecture, what)
    built = architecture_builder(architecture)
    recorded = architecture.get("kwargs", {})
    wanted = _json_ready(kwargs or {}, "kwargs")
    differ = sorted(k for k, v in wanted.items() if k not in recorded or recorded[k] != v)
    if built != name or differ:
        expected = f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(wanted.items()))})"
        raise ValueError(f"{what} holds {describe_architecture(architecture)}, but the config describes {expected}"
                         + (f" (they differ in {differ})" if differ and built == name else ""))


def _json_ready(value, what):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be JSON data (str, numbers, lists, dicts): {e}") from None


def _manifest(model, architecture, allowed_sizes):
    groups = {}
    for name, p in model.groups.items():
        if getattr(p, "trainable", False):
            raise ValueError(f"group {name!r} has a trainable partition (pipeline B): its learnt nodes fix the "
                             f"width; export the tuned network with discretize() instead of an artifact")
        smallest, largest = size_range(p)
        low, high = allowed_sizes.get(name, (smallest, largest))
        if not smallest <= low <= high <= largest:
            raise ValueError(f"allowed sizes of group {name!r} must satisfy {smallest} <= low <= high <= {largest}, "
                             f"got ({low}, {high})")
        if low % size_step(p) or high % size_step(p):
            raise ValueError(f"allowed sizes of group {name!r} must be multiples of its {size_step(p)} blocks (a "
                             f"grouped convolution's channels), got ({low}, {high})")
        groups[name] = {"full_size": int(p.full_size), "size": int(p.size), "allowed": [int(low), int(high)],
                        "quadrature": p.quadrature.name}
        if p.resampling != "point":
            groups[name]["resampling"] = p.resampling
        if size_step(p) > 1:  # a grouped convolution's channels: resized block by block
            groups[name]["blocks"] = size_step(p)
    layers = {}
    for path, layer in model.network.cells_and_names():
        if isinstance(layer, IntegralLayer):
            layers[path] = {"type": type(layer).__name__, "control": [int(s) for s in layer.weight.shape[:2]]
                            if hasattr(layer, "weight") else [int(layer.num_features)]}
    manifest = {"format": FORMAT, "version": VERSION, "inn_ms_version": __version__,
                "architecture": architecture, "groups": groups,
                "parametrization": {"kernel": KERNEL, "layers": layers}}
    conversion = getattr(model, "conversion", None) or {}
    if architecture["kind"] == "converted" and "plan" in conversion:
        manifest["conversion"] = _json_ready({k: conversion[k] for k in ("plan", "positions") if k in conversion},
                                             "conversion")
    return manifest


def _digest(manifest_bytes, weights):
    """SHA-256 over both members, each framed by its name and length (so no
    bytes can move from one member to the other unnoticed)."""
    h = hashlib.sha256()
    for name, data in ((MANIFEST, manifest_bytes), (WEIGHTS, weights)):
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def save_artifact(model, path, architecture=None, allowed_sizes=None):
    """Write ``model`` (an :class:`~inn_ms.model.IntegralModel`) to the
    artifact ``path`` (``.inn``). ``architecture``: a spec from
    :func:`zoo_architecture` / :func:`converted_architecture`; by default the
    one the model carries (zoo networks and converted ones record theirs).
    ``allowed_sizes``: ``{group: (low, high)}`` the device may pick from."""
    import mindspore as ms

    if not str(path).endswith(".inn"):
        raise ValueError(f"an integral artifact's name ends with .inn, got {path!r}")
    architecture = architecture if architecture is not None else getattr(model, "architecture", None)
    if architecture is None:
        raise ValueError("save_artifact: the model does not know how it was built; pass architecture= "
                         "(inn_ms.artifact.zoo_architecture or converted_architecture)")
    architecture = _json_ready(architecture, "architecture")
    _check_architecture(architecture, "save_artifact")
    unknown = [g for g in (allowed_sizes or {}) if g not in model.groups]
    if unknown:
        raise ValueError(f"allowed_sizes names unknown group(s) {unknown}; groups are {list(model.groups)}")
    manifest = _manifest(model, architecture, dict(allowed_sizes or {}))
    with tempfile.TemporaryDirectory() as scratch:
        ckpt = os.path.join(scratch, WEIGHTS)
        # Keyed by path in the Cell tree: a Parameter's own name changes when
        # its Cell is attached to another parent (a train step, a loss cell).
        ms.save_checkpoint([{"name": path, "data": p} for path, p in network_parameters(model).items()], ckpt)
        with open(ckpt, "rb") as f:
            weights = f.read()
    text = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    with atomic_write(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, text)
            z.writestr(WEIGHTS, weights)
            z.writestr(DIGEST, _digest(text, weights) + "\n")
    logger.info("saved integral artifact %s (%d groups)", path, len(manifest["groups"]))
    return manifest


def read_manifest(path, legacy=False):
    """The manifest of artifact ``path``, checked for format, version, the
    digest over manifest and weights, and every key loading needs."""
    manifest, _ = _read(path, legacy)
    return manifest


def _check_groups(path, groups):
    if not isinstance(groups, dict) or not groups:
        raise ArtifactError(f"{path!r}: the manifest's 'groups' must be a non-empty object, got {groups!r}")
    for name, g in groups.items():
        if not isinstance(g, dict):
            raise ArtifactError(f"{path!r}: group {name!r} in the manifest must be an object, got {g!r}")
        missing = [k for k in ("full_size", "size", "allowed") if k not in g]
        if missing:
            raise ArtifactError(f"{path!r}: group {name!r} in the manifest has no {missing}")
        full, size, allowed = g["full_size"], g["size"], g["allowed"]
        ints = [full, size] + (list(allowed) if isinstance(allowed, list) else [])
        if (not isinstance(allowed, list) or len(allowed) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in ints)
                or not 1 <= allowed[0] <= allowed[1] <= full or not 1 <= size <= full):
            raise ArtifactError(f"{path!r}: group {name!r} in the manifest is inconsistent: full_size {full!r}, "
                                f"size {size!r}, allowed {allowed!r} (need 1 <= size <= full_size and "
                                f"1 <= low <= high <= full_size)")


def _read(path, legacy=False):
    """``(manifest, weights bytes)`` of artifact ``path``, every check done."""
    if not os.path.isfile(path):
        raise ArtifactError(f"no integral artifact at {path!r}")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if MANIFEST not in names or WEIGHTS not in names:
                raise ArtifactError(f"{path!r} is a zip archive but not an integral artifact "
                                    f"(needs {MANIFEST} and {WEIGHTS}, has {sorted(names)})")
            text = z.read(MANIFEST)
            manifest = json.loads(text.decode("utf-8"))
            data = z.read(WEIGHTS)
            digest = z.read(DIGEST).decode("ascii").strip() if DIGEST in names else None
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeDecodeError,
            json.JSONDecodeError) as e:
        raise ArtifactError(f"cannot read integral artifact {path!r} (corrupt or truncated?): "
                            f"{type(e).__name__}: {e}") from e
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path!r}: manifest is not an object")
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path!r} is not an inn_ms integral artifact (format {manifest.get('format')!r})")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ArtifactError(f"{path!r}: invalid format version {version!r}")
    if version > VERSION:
        raise ArtifactError(f"{path!r} has artifact format version {version}, newer than this inn_ms "
                            f"({__version__}) reads (up to {VERSION}): upgrade inn_ms")
    if version in LEGACY_VERSIONS:
        if not legacy:
            raise ArtifactError(f"{path!r} has format version {version}, whose checksum covers the weights but not "
                                f"the manifest: if you trust the file, rewrite it once with "
                                f"inn_ms.artifact.upgrade_artifact({path!r}) (or load it with legacy=True)")
        if hashlib.sha256(data).hexdigest() != manifest.get("weights_sha256"):
            raise ArtifactError(f"{path!r}: the weights do not match the manifest's checksum (corrupt file)")
        logger.warning("%s: format version %d, its manifest is not covered by a checksum (read as trusted)",
                       path, version)
    elif digest is None:
        raise ArtifactError(f"{path!r}: no {DIGEST} member (corrupt or incomplete file)")
    elif digest != _digest(text, data):
        raise ArtifactError(f"{path!r}: manifest and weights do not match the file's digest (corrupt or "
                            f"edited file)")
    missing = [k for k in ("architecture", "groups") if k not in manifest]
    if missing:
        raise ArtifactError(f"{path!r}: the manifest has no {' and no '.join(repr(k) for k in missing)} "
                            f"(an incomplete artifact)")
    _check_architecture(manifest["architecture"], path)
    _check_groups(path, manifest["groups"])
    _check_conversion(path, manifest)
    return manifest, data


def _check_conversion(path, manifest):
    """The optional ``conversion`` record, checked key by key."""
    conversion = manifest.get("conversion")
    if conversion is None:
        return
    bad = None
    plan = conversion.get("plan") if isinstance(conversion, dict) else None
    if manifest["architecture"]["kind"] != "converted":
        bad = "only a converted architecture has one"
    elif not isinstance(plan, dict) or not isinstance(plan.get("groups"), list) \
            or not isinstance(plan.get("layers"), list) or not isinstance(plan.get("folded", {}), dict):
        bad = "'plan' must be an object with 'groups' and 'layers' lists and a 'folded' object"
    elif any(not isinstance(g, list) or len(g) not in (2, 3) for g in plan["groups"]):
        bad = "every group of the plan is [name, size] or [name, size, blocks]"
    elif any(not isinstance(u, list) or len(u) != 4 or not isinstance(u[3], list)
             or not all(isinstance(i, list) and len(i) == 3 for i in u[3]) for u in plan["layers"]):
        bad = "every layer of the plan is [path, kind, out group, [[group, channels, spatial], ...]]"
    elif {g[0]: g[1] for g in plan["groups"]} != {n: g["full_size"] for n, g in manifest["groups"].items()} \
            or {g[0]: (g[2] if len(g) > 2 else 1) for g in plan["groups"]} != \
            {n: g.get("blocks", 1) for n, g in manifest["groups"].items()}:
        bad = f"its groups {plan['groups']} are not the manifest's"
    positions = conversion.get("positions") if isinstance(conversion, dict) else None
    if bad is None and positions is not None and (
            not isinstance(positions, dict) or not isinstance(positions.get("layers"), dict)
            or not isinstance(positions.get("input_shape"), list)):
        bad = "'positions' must be an object with 'input_shape' (a list) and 'layers' (an object)"
    if bad is not None:
        raise ArtifactError(f"{path!r}: invalid conversion record in the manifest: {bad}")


def load_artifact(path, builders=None, legacy=False):
    """The :class:`~inn_ms.model.IntegralModel` saved in artifact ``path``,
    at the sizes it was saved at. Carries ``allowed_sizes`` (group →
    ``(low, high)``) and ``architecture``.

    The architecture is built only by a known builder (the zoo's networks,
    ``mindcv:<name>``, builders registered with
    :func:`inn_ms.builders.register_builder`) or one the caller trusts here:
    ``builders={name: callable}`` or ``builders=["module:function"]``. A
    file naming anything else is refused before anything is imported.
    ``legacy``: read a version 1–2 file, whose manifest has no checksum."""
    import mindspore as ms

    manifest, data = _read(path, legacy)
    try:
        model = rebuild(manifest["architecture"], builders, manifest.get("conversion"))
    except UntrustedBuilderError as e:
        raise UntrustedBuilderError(f"{path!r}: {e}") from None
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path!r}: cannot rebuild the architecture "
                            f"{describe_architecture(manifest['architecture'])}: {e}") from e
    groups = manifest["groups"]
    found = {n: (p.full_size, size_step(p)) for n, p in model.groups.items()}
    expected = {n: (g["full_size"], g.get("blocks", 1)) for n, g in groups.items()}
    if found != expected:
        raise ArtifactError(f"{path!r}: the rebuilt network's channel groups {found} differ from the "
                            f"artifact's {expected} ((full size, blocks) per group)")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, WEIGHTS)
        with open(ckpt, "wb") as f:
            f.write(data)
        try:
            values = ms.load_checkpoint(ckpt)
        except (RuntimeError, ValueError) as e:
            raise ArtifactError(f"{path!r}: unreadable weights: {e}") from e
    params = network_parameters(model)
    missing, mismatched = checkpoint_misfit(params, values)
    # Files written before layers kept their folded BatchNorms' statistics
    # (inn_ms.convert.bn.output_statistics) have none: those layers go
    # without (data-free repair then has fewer statistics to match).
    old = [n for n in missing if n.endswith((".output_mean", ".output_std"))]
    if old:
        cells = dict(model.cells_and_names())
        for n in old:
            layer, _, attr = n.rpartition(".")
            setattr(cells[layer], attr, None)
            del params[n]
        missing = [n for n in missing if n not in old]
        logger.info("%s: no output statistics for %d layers (an older file)", path, len(old) // 2)
    if missing or mismatched:
        raise ArtifactError(f"{path!r}: the weights do not fit the rebuilt network; missing {missing}; "
                            f"shape mismatch (artifact vs network) {mismatched}")
    for n, p in params.items():
        p.set_data(values[n])
    try:
        model.set_resampling({n: g.get("resampling", "point") for n, g in groups.items()})
    except ValueError as e:
        raise ArtifactError(f"{path!r}: {e}") from None
    try:
        model.resize(sizes={n: int(g["size"]) for n, g in groups.items()})
    except ValueError as e:
        raise ArtifactError(f"{path!r}: {e}") from None
    # Files written before one group size became the rule may allow 1
    # channel; a group now takes at least size_range's smallest size.
    model.allowed_sizes = {n: (max(g["allowed"][0], size_range(model.groups[n])[0]), g["allowed"][1])
                           for n, g in groups.items()}
    model.architecture = manifest["architecture"]
    return model


def upgrade_artifact(path, out=None, builders=None):
    """Rewrite a version 1–2 artifact (whose manifest has no checksum) as the
    current version, after loading it completely; ``out`` defaults to
    ``path`` itself (replaced atomically). Only for files you trust."""
    model = load_artifact(path, builders=builders, legacy=True)
    return save_artifact(model, out or path, allowed_sizes=model.allowed_sizes)


__all__ = ["ArtifactError", "FORMAT", "VERSION", "build_discrete", "check_same_architecture",
           "converted_architecture", "describe_architecture", "load_artifact", "read_manifest", "rebuild",
           "save_artifact", "upgrade_artifact", "zoo_architecture"]
