"""The integral artifact: one file that lets a device resample a network.

A ``.inn`` file is a zip archive of two members:

* ``manifest.json`` — format name and version, the architecture (a zoo
  network and its arguments, or a discrete builder plus the conversion
  options that turned it integral), every channel group with its full size,
  the size it was saved at and the sizes allowed, the quadrature and the
  resampling rule of each group, the parametrization (Keys cubic kernel, control grid sizes per
  layer) and the SHA-256 of the weights;
* ``weights.ckpt`` — the continuous parameters (control values, biases,
  BatchNorm statistics) as a MindSpore checkpoint.

Loading rebuilds the architecture with inn_ms alone (no PyTorch, no training
code), checks the groups and every parameter against the manifest, and
loads the weights. Writes are atomic (temporary file, then rename); a
truncated, corrupt or newer-version file is refused with a clear message.
"""
import hashlib
import json
import logging
import os
import tempfile
import zipfile

import inn_ms
from inn_ms.convert.weights import checkpoint_misfit, network_parameters
from inn_ms.layers.base import IntegralLayer

logger = logging.getLogger(__name__)

FORMAT = "inn_ms-integral"
VERSION = 2  # the newest version read; 2 adds a group's "resampling" rule (inn_ms.resampling)
KERNEL = "keys(a=-0.75), edge-clamped"


class ArtifactError(ValueError):
    """An integral artifact that cannot be read or does not fit its manifest."""


def zoo_architecture(name, **kwargs):
    """Architecture spec of an integral zoo network ``create_model(name, integral=True, **kwargs)``."""
    return {"kind": "zoo", "name": name, "kwargs": dict(kwargs)}


def converted_architecture(builder, input_shape, builder_kwargs=None, **convert_options):
    """Architecture spec of a converted network: the discrete ``builder`` (a
    zoo name or ``module:callable``) with ``builder_kwargs``, then
    :func:`inn_ms.convert.convert` for ``input_shape`` with the given options
    (``fold_bn``, ``discrete_dims``, ``continuous_dims``, ``quadrature``)."""
    return {"kind": "converted", "builder": builder, "kwargs": dict(builder_kwargs or {}),
            "input_shape": [int(v) for v in input_shape], "convert": dict(convert_options)}


def build_discrete(builder, kwargs):
    """A discrete network from a zoo name (``mindcv:<name>`` included) or
    ``module:callable``."""
    if ":" in builder and not builder.startswith("mindcv:"):
        import importlib
        module, _, attr = builder.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import architecture {builder!r}: {e}") from None
        return fn(**kwargs)
    from model_zoo import create_model
    return create_model(builder, integral=False, **kwargs)


def rebuild(architecture):
    """The integral model an architecture spec describes, with fresh weights."""
    kind = architecture.get("kind")
    if kind == "zoo":
        from model_zoo import create_model
        return create_model(architecture["name"], integral=True, **architecture.get("kwargs", {}))
    if kind == "converted":
        from inn_ms.convert import convert
        net = build_discrete(architecture["builder"], architecture.get("kwargs", {}))
        options = dict(architecture.get("convert", {}))
        return convert(net, tuple(architecture["input_shape"]), permute=False, verify=False, **options)
    raise ArtifactError(f"unknown architecture kind {kind!r} (expected 'zoo' or 'converted')")


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
        low, high = allowed_sizes.get(name, (p.quadrature.min_points, p.max_size))
        if not 1 <= low <= high <= p.max_size:
            raise ValueError(f"allowed sizes of group {name!r} must satisfy 1 <= low <= high <= {p.max_size}, "
                             f"got ({low}, {high})")
        groups[name] = {"full_size": int(p.max_size), "size": int(p.size), "allowed": [int(low), int(high)],
                        "quadrature": p.quadrature.name}
        if p.resampling != "point":
            groups[name]["resampling"] = p.resampling
    layers = {}
    for path, layer in model.network.cells_and_names():
        if isinstance(layer, IntegralLayer):
            layers[path] = {"type": type(layer).__name__, "control": [int(s) for s in layer.weight.shape[:2]]
                            if hasattr(layer, "weight") else [int(layer.num_features)]}
    # Version 1 readers know only point sampling: a file that needs another
    # rule says version 2, so they refuse it instead of sampling it wrongly.
    version = 2 if any("resampling" in g for g in groups.values()) else 1
    return {"format": FORMAT, "version": version, "inn_ms_version": inn_ms.__version__,
            "architecture": architecture, "groups": groups,
            "parametrization": {"kernel": KERNEL, "layers": layers}}


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
    unknown = [g for g in (allowed_sizes or {}) if g not in model.groups]
    if unknown:
        raise ValueError(f"allowed_sizes names unknown group(s) {unknown}; groups are {list(model.groups)}")
    manifest = _manifest(model, architecture, dict(allowed_sizes or {}))
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        ckpt = os.path.join(tmp, "weights.ckpt")
        # Keyed by path in the Cell tree: a Parameter's own name changes when
        # its Cell is attached to another parent (a train step, a loss cell).
        ms.save_checkpoint([{"name": path, "data": p} for path, p in network_parameters(model).items()], ckpt)
        with open(ckpt, "rb") as f:
            weights = f.read()
        manifest["weights_sha256"] = hashlib.sha256(weights).hexdigest()
        partial = os.path.join(tmp, "artifact.inn")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
            z.writestr("weights.ckpt", weights)
        os.replace(partial, path)
    logger.info("saved integral artifact %s (%d groups)", path, len(manifest["groups"]))
    return manifest


def read_manifest(path):
    """The manifest of artifact ``path``, checked for format and version."""
    manifest, _ = _read(path, weights=False)
    return manifest


def _read(path, weights=True):
    if not os.path.isfile(path):
        raise ArtifactError(f"no integral artifact at {path!r}")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "manifest.json" not in names or "weights.ckpt" not in names:
                raise ArtifactError(f"{path!r} is a zip archive but not an integral artifact "
                                    f"(needs manifest.json and weights.ckpt, has {sorted(names)})")
            manifest = json.loads(z.read("manifest.json").decode("utf-8"))
            data = z.read("weights.ckpt") if weights else None
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeDecodeError,
            json.JSONDecodeError) as e:
        raise ArtifactError(f"cannot read integral artifact {path!r} (corrupt or truncated?): "
                            f"{type(e).__name__}: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path!r} is not an inn_ms integral artifact (format {manifest.get('format')!r})"
                            if isinstance(manifest, dict) else f"{path!r}: manifest is not an object")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise ArtifactError(f"{path!r}: invalid format version {version!r}")
    if version > VERSION:
        raise ArtifactError(f"{path!r} has artifact format version {version}, newer than this inn_ms "
                            f"({inn_ms.__version__}) reads (up to {VERSION}): upgrade inn_ms")
    if data is not None and hashlib.sha256(data).hexdigest() != manifest.get("weights_sha256"):
        raise ArtifactError(f"{path!r}: the weights do not match the manifest's checksum (corrupt file)")
    return manifest, data


def load_artifact(path):
    """The :class:`~inn_ms.model.IntegralModel` saved in artifact ``path``,
    at the sizes it was saved at. Carries ``allowed_sizes`` (group →
    ``(low, high)``) and ``architecture``."""
    import mindspore as ms

    manifest, data = _read(path)
    try:
        model = rebuild(manifest["architecture"])
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path!r}: cannot rebuild the architecture {manifest.get('architecture')!r}: "
                            f"{e}") from e
    groups = manifest.get("groups", {})
    found = {n: p.max_size for n, p in model.groups.items()}
    expected = {n: g["full_size"] for n, g in groups.items()}
    if found != expected:
        raise ArtifactError(f"{path!r}: the rebuilt network's channel groups {found} differ from the "
                            f"artifact's {expected}")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "weights.ckpt")
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
    model.resize(sizes={n: int(g["size"]) for n, g in groups.items()})
    model.allowed_sizes = {n: tuple(g["allowed"]) for n, g in groups.items()}
    model.architecture = manifest["architecture"]
    return model


__all__ = ["ArtifactError", "FORMAT", "VERSION", "build_discrete", "converted_architecture", "load_artifact",
           "read_manifest", "rebuild", "save_artifact", "zoo_architecture"]
