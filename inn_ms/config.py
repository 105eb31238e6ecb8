"""Run configurations: one YAML file per model and device.

A config says what to build (zoo model and its arguments, built integral or
converted from a discrete network), where to run it (device, graph or
PyNative mode, mixed precision), what to train on (data set and paths) and
how (batch size, epochs, optimiser, learning-rate schedule, random-width
distribution), and where outputs go. :func:`load_config` reads a file,
applies ``key.sub=value`` overrides (values parsed as YAML, so ``3`` is an
int and ``[1, 0.5]`` a list), fills defaults and checks every key, so a
typo or a bad value fails before anything is built, with the key named.

The task — ``classification`` or ``super_resolution`` — follows from the
model's registration (:func:`inn_ms.builders.find_builder`: the zoo states
each entry's task and input); the optional top-level ``task`` key states it
(it must agree with the registration) and is what decides for a model name
registered without a task (default there: from ``data.name``). Keys of the other task's data
sets, ``num_classes`` for a super-resolution network or a loss of the other
task are refused naming the key.
"""
import copy
import difflib
import os

import yaml

from inn_ms.builders import TASKS, find_builder

_MISSING = object()


class ConfigError(ValueError):
    """A config file, key or value that cannot be used."""


class _Field:
    """One leaf: a default (or required) and a check returning the clean value."""

    def __init__(self, check, default=_MISSING, doc=""):
        self.check, self.default, self.doc = check, default, doc


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(low=None, optional=False):
    def check(v, key):
        if v is None and optional:
            return None
        if not _is_int(v) or (low is not None and v < low):
            raise ConfigError(f"{key} must be an int{f' >= {low}' if low is not None else ''}"
                              f"{' or null' if optional else ''}, got {v!r}")
        return v
    return check


def _float(low=None, high=None, low_open=False, optional=False):
    def check(v, key):
        if v is None and optional:
            return None
        if isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                v = float(v)
            except ValueError:
                pass
        ok = _is_num(v) and (low is None or (v > low if low_open else v >= low)) and (high is None or v <= high)
        if not ok:
            rng = f" in {'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]" if low is not None else ""
            raise ConfigError(f"{key} must be a number{rng}{' or null' if optional else ''}, got {v!r}")
        return float(v)
    return check


def _bool(v, key):
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, got {v!r}")
    return v


def _sandwich(v, key):
    if isinstance(v, bool) or (isinstance(v, str) and v.lower() in ("full", "both")):
        return v.lower() if isinstance(v, str) else v
    raise ConfigError(f"{key} must be true, false, 'full' or 'both', got {v!r}")


def _str(optional=False):
    def check(v, key):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key} must be a non-empty string{' or null' if optional else ''}, got {v!r}")
        return v
    return check


def _choice(*options, fold=str.lower):
    def check(v, key):
        for o in options:
            if isinstance(v, str) and fold(v) == fold(o):
                return o
        raise ConfigError(f"{key} must be one of {list(options)}, got {v!r}")
    return check


def _auto_or(check):
    """The word ``auto`` or null (kept as None: computed later; a resolved
    config records it as null), or a value ``check`` accepts."""
    def check_auto(v, key):
        if v is None or (isinstance(v, str) and v.lower() == "auto"):
            return None
        try:
            return check(v, key)
        except ConfigError as e:
            raise ConfigError(f"{e} (or auto)") from None
    return check_auto


def _mapping(v, key):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{key} must be a mapping of argument names to values, got {v!r}")
    return dict(v)


def _list(item, min_len=0):
    def check(v, key):
        if not isinstance(v, (list, tuple)) or len(v) < min_len:
            raise ConfigError(f"{key} must be a list of at least {min_len} item(s), got {v!r}")
        return [item(x, f"{key}[{i}]") for i, x in enumerate(v)]
    return check


DEVICES = ("CPU", "GPU", "Ascend")
CLASSIFICATION_DATASETS = ("mnist_subset", "digits", "cifar10", "imagefolder")
SR_DATASETS = ("skimage_photos", "paired")
DATASETS = CLASSIFICATION_DATASETS + SR_DATASETS
# data keys that only one task reads (the other refuses them when set)
_CLASSIFICATION_DATA_KEYS = ("root", "train_dir", "val_dir", "image_size")
_SR_DATA_KEYS = ("scale", "patch_size", "lr_dir", "hr_dir", "val_lr_dir", "val_hr_dir", "max_side")

_WIDTHS = {
    "low": _Field(_float(0, 1, low_open=True), 0.5, "smallest keep ratio (or per-group fraction) drawn"),
    "high": _Field(_float(0, 1, low_open=True), 1.0, "largest keep ratio drawn"),
    "levels": _Field(_int(1), 5, "keep ratios evenly spaced in [low, high] (per_group: false)"),
    "distribution": _Field(_choice("uniform", "normal"), "uniform", "normal favours the full width"),
    "per_group": _Field(_bool, False, "every group draws its own size (many more graphs to compile)"),
    "multiple_of": _Field(_int(1), 1, "round channel counts to a multiple (16: Ascend cube alignment)"),
}

SCHEMA = {
    "task": _Field(_choice("auto", *TASKS), "auto", "auto: from the zoo entry (or, for a name not in the zoo, "
                                                    "from data.name)"),
    "model": {
        "name": _Field(_str(), doc="zoo name (inn-ms models)"),
        "num_classes": _Field(_int(1, optional=True), None, "classifiers only (null: 10)"),
        "kwargs": _Field(_mapping, {}, "keyword arguments of the zoo builder"),
        "convert": _Field(None, None, "null: build the integral zoo network; a mapping: build the discrete "
                                      "network and convert it"),
        "checkpoint": _Field(_str(optional=True), None, "start from: a MindSpore .ckpt of this network's integral "
                                                        "weights, or an integral artifact .inn (e.g. written by "
                                                        "inn-ms convert --config), which then defines the network"),
    },
    "device": {
        "target": _Field(_choice(*DEVICES), "CPU"),
        "mode": _Field(_choice("graph", "pynative"), "graph"),
        "amp_level": _Field(_choice("O0", "O1", "O2", "O3", fold=str.upper), "O0",
                            "mixed precision: O0 float32, O2 float16 except BatchNorm, O3 float16"),
        "loss_scale": _Field(_float(0, low_open=True, optional=True), None,
                             "static loss scale (null: 1, or 1024 with O2/O3)"),
        "conv_backend": _Field(_choice("auto", "native", "matmul"), "auto",
                               "convolution op: auto picks unfold+matmul on CPU, Conv2D elsewhere"),
    },
    "data": {
        "name": _Field(_choice(*DATASETS)),
        "root": _Field(_str(optional=True), None, "cifar10: folder of the *.bin batches; imagefolder: folder "
                                                  "holding train/ and val/ (see train_dir, val_dir)"),
        "train_dir": _Field(_str(optional=True), None, "imagefolder: training images (default root/train)"),
        "val_dir": _Field(_str(optional=True), None, "imagefolder: validation images (default root/val)"),
        "n_train": _Field(_int(1, optional=True), None, "use only the first n training samples"),
        "n_test": _Field(_int(1, optional=True), None, "use only the first n evaluation samples"),
        "image_size": _Field(_int(1, optional=True), None, "side of the network input (null: the data set's)"),
        "augment": _Field(_bool, True, "random crop and flip for training (cifar10, imagefolder)"),
        "num_workers": _Field(_int(1), 1, "parallel workers of the data pipeline (super resolution: threads "
                                          "reading the samples of a batch)"),
        "scale": _Field(_int(2, optional=True), None, "super resolution: upscaling factor (null: the model's "
                                                      "model.kwargs.scale, e.g. edsr)"),
        "patch_size": _Field(_int(1, optional=True), None, "super resolution: training patch side in network-input "
                                                           "pixels (null: 33 for bicubic-upscaled input, 48 for LR)"),
        "lr_dir": _Field(_str(optional=True), None, "paired: training low-resolution images"),
        "hr_dir": _Field(_str(optional=True), None, "paired: training high-resolution images (same file names)"),
        "val_lr_dir": _Field(_str(optional=True), None, "paired: evaluation low-resolution images"),
        "val_hr_dir": _Field(_str(optional=True), None, "paired: evaluation high-resolution images"),
        "max_side": _Field(_int(1, optional=True), None, "skimage_photos: centre-crop photos to at most this side"),
    },
    "train": {
        "epochs": _Field(_int(1), 1),
        "batch_size": _Field(_int(1), 32, "per device"),
        "max_steps": _Field(_int(1, optional=True), None, "stop after this many batches in all (short runs)"),
        "seed": _Field(_int(0), 0, "weights, data order and widths; the same on every rank"),
        "sandwich": _Field(_sandwich, False, "steps every batch gets before the sampled one: false, true (full "
                                              "width) or both (full and smallest width)"),
        "elastic": _Field(_bool, False, "one compiled train step for every width, sizes given at run time "
                                        "(inn_ms.train.ElasticTrainStep): one graph's memory and compile, every "
                                        "step at the full width's compute; per_group widths then cost no compiles"),
        "label_smoothing": _Field(_float(0, 1), 0.0),
        "loss": _Field(_choice("auto", "cross_entropy", "l1", "mse"), "auto",
                       "auto: cross_entropy (classification), l1 (super resolution)"),
        "save_every_steps": _Field(_int(1, optional=True), None, "also checkpoint every n batches"),
        "keep_checkpoints": _Field(_int(1), 2, "checkpoints kept in output_dir (oldest removed)"),
        "optimizer": {
            "name": _Field(_choice("adam", "adamw", "momentum", "sgd"), "adam"),
            "lr": _Field(_float(0, low_open=True), 1e-3, "peak learning rate"),
            "weight_decay": _Field(_float(0), 0.0),
            "momentum": _Field(_float(0, 1), 0.9, "momentum / sgd"),
            "nesterov": _Field(_bool, False),
        },
        "lr_schedule": {
            "name": _Field(_choice("constant", "cosine", "step"), "cosine"),
            "warmup_epochs": _Field(_float(0), 0.0, "linear warm-up from min_lr"),
            "min_lr": _Field(_float(0), 0.0),
            "milestones": _Field(_list(_int(1)), [], "step: epochs at which the rate is multiplied by gamma"),
            "gamma": _Field(_float(0, low_open=True), 0.1),
        },
        "widths": _Field(None, {}, "random-width distribution (inn_ms.train.WidthSampler); null: full width only"),
        "resampling": _Field(_choice("auto", "point", "antialiased"), "auto",
                             "rule every group samples with in training, kept by the trained model and its "
                             "artifact (inn_ms.resampling); auto: each group's own"),
    },
    "eval": {
        "widths": _Field(_list(_float(0, 1, low_open=True), 1), [1.0, 0.75, 0.5], "keep ratios to evaluate"),
        "resampling": _Field(_choice("auto", "point", "antialiased"), "auto",
                             "rule sampling smaller widths (inn_ms.resampling); auto: each group's own"),
        "repair": _Field(_choice("none", "calib", "datafree"), "none",
                         "refit each width's layers (inn_ms.repair) on unlabelled training images (calib) or on "
                         "images synthesized from the BatchNorm statistics (datafree)"),
        "calib": _Field(_int(1), 128, "repair: the number of calibration images"),
        "batch_size": _Field(_int(1), 256),
        "tile": _Field(_int(1, optional=True), 96, "super resolution: images run in tiles of this many input "
                                                   "pixels a side (null: whole images)"),
        "tile_margin": _Field(_auto_or(_int(0)), "auto", "super resolution: tile overlap in input pixels; auto: the "
                                                        "network's receptive-field radius, so tiled results equal "
                                                        "whole images"),
    },
    "output_dir": _Field(_str(), "outputs/run"),
    "distributed": _Field(_bool, False, "data parallel over the workers started by msrun"),
}

_CONVERT = {
    "input_shape": _Field(_list(_int(1), 2), doc="example input shape, e.g. [1, 1, 28, 28]"),
    "weights": _Field(_str(optional=True), None, "PyTorch state_dict (.pth/.pt, .safetensors, .npz) loaded into "
                                                 "the discrete network before converting (null: the builder's "
                                                 "own weights)"),
    "fold_bn": _Field(_bool, True),
    "permute": _Field(_bool, True),
    "quadrature": _Field(_str(), "trapezoid"),
}


def _unknown(key, options):
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(options), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {key!r}{hint}; allowed here: {sorted(options)}")


def _validate(raw, schema, prefix):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    for key in raw:
        if key not in schema:
            raise _unknown(prefix + str(key), schema)
    out = {}
    for key, spec in schema.items():
        path = prefix + key
        if isinstance(spec, dict):
            out[key] = _validate(raw.get(key), spec, path + ".")
            continue
        value = raw.get(key, _MISSING)
        if value is _MISSING:
            if spec.default is _MISSING:
                raise ConfigError(f"missing required key {path!r}" + (f" ({spec.doc})" if spec.doc else ""))
            value = copy.deepcopy(spec.default)
        if path == "model.convert":
            out[key] = None if value is None else _validate(value, _CONVERT, path + ".")
        elif path == "train.widths":
            out[key] = None if value is None else _validate(value, _WIDTHS, path + ".")
        else:
            out[key] = spec.check(value, path)
    return out


def validate(raw):
    """A complete, checked config from a parsed YAML mapping: a new mapping
    with defaults and the values derived from the model (task, loss,
    classes, scale, patch size) filled in; ``raw`` itself is never changed."""
    cfg = _validate(raw, SCHEMA, "")
    w = cfg["train"]["widths"]
    if w is not None and w["low"] > w["high"]:
        raise ConfigError(f"train.widths.low ({w['low']}) must be <= train.widths.high ({w['high']})")
    if cfg["train"]["elastic"] and cfg["device"]["amp_level"] != "O0":
        # Not measured: the elastic copy of a network cast to float16 was never checked against it.
        raise ConfigError(f"train.elastic is supported with device.amp_level O0 only, got "
                          f"{cfg['device']['amp_level']}")
    d = cfg["data"]
    _resolve_task(cfg)
    if d["name"] == "cifar10" and not d["root"]:
        raise ConfigError("data.root is required for data.name cifar10 (the folder of data_batch_*.bin)")
    if d["name"] == "imagefolder" and not (d["root"] or d["train_dir"]):
        raise ConfigError("data.root or data.train_dir is required for data.name imagefolder")
    return cfg


def _resolve_task(cfg):
    """Fill ``task`` and the values that follow from it (loss, classes, scale,
    patch size) into ``cfg`` — :func:`validate`'s own copy — and refuse keys
    and values of the other task."""
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    builder = find_builder(m["name"])
    zoo = builder.task if builder is not None else None
    if cfg["task"] != "auto" and zoo is not None and cfg["task"] != zoo:
        raise ConfigError(f"task is {cfg['task']}, but model.name {m['name']!r} is a {zoo} network")
    task = cfg["task"] = zoo or (cfg["task"] if cfg["task"] != "auto" else
                                 "super_resolution" if d["name"] in SR_DATASETS else "classification")
    what = f"model.name {m['name']!r} ({task.replace('_', ' ')})"
    if builder is not None and builder.check_kwargs is not None:
        try:
            builder.check_kwargs(m["kwargs"])
        except ValueError as e:
            raise ConfigError(f"model.kwargs: {e}") from None
    if task == "classification":
        if d["name"] in SR_DATASETS:
            raise ConfigError(f"data.name {d['name']!r} is a super-resolution data set; {what} needs one of "
                              f"{list(CLASSIFICATION_DATASETS)}")
        for key in _SR_DATA_KEYS:
            if d[key] is not None:
                raise ConfigError(f"data.{key} applies to super resolution only, not to {what}")
        if t["loss"] in ("l1", "mse"):
            raise ConfigError(f"train.loss {t['loss']} is a super-resolution loss; {what} trains with cross_entropy")
        t["loss"] = "cross_entropy"
        if m["num_classes"] is None:
            m["num_classes"] = 10
        return
    if m["num_classes"] is not None:
        raise ConfigError(f"model.num_classes does not apply to {what}: it maps images to images; remove the key")
    if d["name"] not in SR_DATASETS:
        raise ConfigError(f"data.name {d['name']!r} is a classification data set; {what} needs one of "
                          f"{list(SR_DATASETS)}")
    for key in _CLASSIFICATION_DATA_KEYS:
        if d[key] is not None:
            raise ConfigError(f"data.{key} applies to classification only, not to {what}")
    if t["loss"] == "cross_entropy":
        raise ConfigError(f"train.loss cross_entropy is a classification loss; {what} needs l1 or mse")
    if t["label_smoothing"]:
        raise ConfigError(f"train.label_smoothing applies to classification only, not to {what}")
    if t["loss"] == "auto":
        t["loss"] = "l1"
    own = builder.upscaling(m["kwargs"]) if builder is not None else None
    if d["scale"] is None:
        if own is None:
            raise ConfigError(f"data.scale is required for {what} (the upscaling factor; the network takes the "
                              f"bicubic-upscaled image)")
        d["scale"] = own
    elif own is not None and d["scale"] != own:
        raise ConfigError(f"data.scale is {d['scale']}, but {what} is built for x{own} (model.kwargs.scale)")
    if d["patch_size"] is None:
        d["patch_size"] = 48 if own is not None else 33
    if d["name"] == "paired":
        for key in ("lr_dir", "hr_dir", "val_lr_dir", "val_hr_dir"):
            if not d[key]:
                raise ConfigError(f"data.{key} is required for data.name paired (folders of matching file names)")
    else:
        for key in ("lr_dir", "hr_dir", "val_lr_dir", "val_hr_dir"):
            if d[key] is not None:
                raise ConfigError(f"data.{key} applies to data.name paired only, not {d['name']}")
    if d["name"] == "paired" and d["max_side"] is not None:
        raise ConfigError("data.max_side applies to data.name skimage_photos only, not paired")


def parse_override(text):
    """``'a.b=value'`` → ``(['a', 'b'], value)``, the value parsed as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"an override must look like key.sub=value, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({e})") from None
    return key.split("."), parsed


def apply_overrides(raw, overrides):
    """Apply ``key.sub=value`` strings to a parsed (not yet validated) config."""
    raw = copy.deepcopy(raw) if raw is not None else {}
    for text in overrides or ():
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[:i + 1])} is {child!r}, not a mapping")
            node = child
        node[path[-1]] = value
    return raw


def load_config(path, overrides=()):
    """Read the YAML config ``path``, apply ``overrides`` (``key.sub=value``
    strings) and validate. Relative data paths stay relative to the working
    directory."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    with open(path) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path!r} is not valid YAML: {e}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level")
    try:
        return validate(apply_overrides(raw, overrides))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def dump_config(cfg):
    """The config as YAML text (what a run records in its output folder)."""
    return yaml.safe_dump(cfg, sort_keys=False)
