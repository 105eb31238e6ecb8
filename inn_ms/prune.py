"""Pruning an integral network to a target width: the plain network and a report.

:func:`prune` resamples every channel group (one keep ratio, sizes per
group, or the widest network within a parameter or MAC budget), optionally
repairs it (:mod:`inn_ms.repair`), builds the plain thinner network (real
smaller ``nn.Conv2d``/``nn.Dense``) and reports widths, parameters, MACs
and time. Writing it out is :func:`inn_ms.export.export_mindir`'s job.
"""
import logging
import time
from collections import OrderedDict

from inn_ms.graph.flops import layer_positions, macs_from_weights
from inn_ms.model import count_parameters
from inn_ms.repair import calibration_images, check_repair, output_maps, repair as refit
from inn_ms.resampling import check_rule

logger = logging.getLogger(__name__)


def check_shape(input_shape):
    """``input_shape`` as a tuple of ints, with a batch and a channel axis of size >= 1."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"input shape must have a batch and a channel axis of size >= 1, got {input_shape!r}")
    return shape


def macs_of(network, input_shape, positions=None):
    """Multiply–accumulates per sample of a plain network (see
    :mod:`inn_ms.graph.flops`); ``positions`` from an earlier trace of the
    same architecture at any width saves tracing again."""
    shape = check_shape(input_shape)
    if positions is None:
        positions = layer_positions(network, (1,) + shape[1:])
    return macs_from_weights(network, positions)[0]


def model_positions(model, plain, input_shape):
    """Per-layer output positions of ``model``'s plain networks for
    ``input_shape`` (they do not depend on the width): those its conversion
    recorded for that sample shape, else traced once per model and shape."""
    shape = (1,) + check_shape(input_shape)[1:]
    cache = model.__dict__.setdefault("_positions_cache", {})
    recorded = (getattr(model, "conversion", None) or {}).get("positions")
    if shape not in cache and recorded and tuple(recorded["input_shape"]) == shape[1:]:
        cache[shape] = dict(recorded["layers"])
    if shape not in cache:
        cache[shape] = layer_positions(plain, shape)
    return cache[shape]


def _within(model, sizes):
    for name, n in sizes.items():
        low, high = model.allowed_range(name)
        if not low <= n <= high:
            raise ValueError(f"size {n} of group {name!r} is outside its allowed range [{low}, {high}]")


def _check_multiple(model, target, multiple_of, shrink_all):
    """Refuse sizes that are not the multiples asked for, instead of keeping
    them quietly. A group may stay at a full size that is no multiple only
    where it was not asked to shrink (``shrink_all``: a keep ratio below 1
    or a budget short of full width asks every group to)."""
    if multiple_of == 1:
        return
    full = model.full_sizes
    bad = [(g, n) for g, n in target.items() if n % multiple_of and (shrink_all or n != full[g])]
    if bad and shrink_all:
        raise ValueError(f"no multiple of {multiple_of} fits below the full size of group(s) "
                         f"{', '.join(f'{g!r} (full size {full[g]})' for g, _ in bad)}: give sizes per group, "
                         f"or a smaller multiple_of")
    if bad:
        g, n = bad[0]
        raise ValueError(f"size {n} of group {g!r} is not a multiple of {multiple_of} (multiple_of); "
                         f"give multiples, or a smaller multiple_of")


def sizes_for_budget(model, params=None, macs=None, input_shape=None, multiple_of=1, tolerance=1e-3):
    """Per-group sizes of the largest single keep ratio whose plain network
    has at most ``params`` parameters and/or ``macs`` MACs per sample
    (``input_shape`` needed for MACs). Bisection on the keep ratio."""
    if params is None and macs is None:
        raise ValueError("sizes_for_budget: give params= and/or macs=")
    if macs is not None and input_shape is None:
        raise ValueError("sizes_for_budget: a MAC budget needs input_shape=")
    def fits(keep):
        model.resize(keep=keep, multiple_of=multiple_of)
        plain = model.discretize()
        ok = params is None or count_parameters(plain) <= params
        return ok and (macs is None or macs_of(plain, input_shape, model_positions(model, plain, input_shape)) <= macs)

    with model.at_sizes():
        if fits(1.0):
            return model.sizes_for_keep(1.0, multiple_of)
        low, high = 1e-3, 1.0
        if not fits(low):
            raise ValueError(f"no width meets the budget (params <= {params}, MACs <= {macs}): even the "
                             f"narrowest network is larger")
        while high - low > tolerance:
            mid = (low + high) / 2
            low, high = (mid, high) if fits(mid) else (low, mid)
        return model.sizes_for_keep(low, multiple_of)


def prune(model, keep=None, sizes=None, params=None, macs=None, input_shape=None, multiple_of=1,
          resampling=None, repair="none", calib=None, calib_count=128, seed=0, progress=False):
    """The plain network at a target width and a report.

    Give one of ``keep`` (a ratio in (0, 1]), ``sizes`` (group → size; other
    groups stay at full size) or a budget (``params`` and/or ``macs``). Sizes
    are checked against the model's ``allowed_sizes`` (from its artifact)
    before anything is built. The model is returned to its sizes afterwards.

    ``resampling``: the rule to sample with (:mod:`inn_ms.resampling`;
    None: each group's own). ``repair`` (:mod:`inn_ms.repair`): ``"none"``,
    ``"calib"`` (refit on ``calib``, unlabelled images, the first
    ``calib_count``) or ``"datafree"`` (on ``calib_count`` images
    synthesized from the network's statistics with ``seed``; needs
    ``input_shape``). Either way the result is an ordinary plain network.
    """
    chosen = [k for k, v in (("keep", keep), ("sizes", sizes), ("budget", params if params is not None else macs))
              if v is not None]
    if len(chosen) != 1:
        raise ValueError(f"prune: give exactly one of keep=, sizes= or a budget (params=/macs=), got {chosen}")
    check_repair(repair)
    if resampling is not None:
        check_rule(resampling, "prune")
    if input_shape is not None:
        check_shape(input_shape)
    t0 = time.perf_counter()
    if repair == "none" and calib is not None:
        raise ValueError("calibration images were given but repair is 'none': choose repair='calib'")
    if keep is not None:
        target = model.sizes_for_keep(keep, multiple_of)
    elif sizes is not None:
        unknown = [g for g in sizes if g not in model.groups]
        if unknown:
            raise ValueError(f"prune: unknown group(s) {unknown}; groups are {list(model.groups)}")
        target = OrderedDict(model.full_sizes)
        target.update({g: n for g, n in sizes.items()})
    else:
        target = sizes_for_budget(model, params, macs, input_shape, multiple_of)
    _within(model, target)
    _check_multiple(model, target, multiple_of, shrink_all=sizes is None and (
        (keep is not None and keep < 1) or dict(target) != dict(model.full_sizes)))
    repaired = repair != "none" and dict(target) != dict(model.full_sizes)  # full width: nothing to repair
    # Checked (and synthesized) only when needed; bad images are refused either way.
    images = calibration_images(model, repair, calib, calib_count, input_shape, seed, progress) \
        if repaired or repair == "calib" else None
    with model.at_sizes(target, resampling=resampling):
        plain = model.discretize()
        if repaired:
            refit(model, plain, images, maps=output_maps(model), progress=progress)
        rules = model.resampling
    report = {"sizes": dict(target), "params": count_parameters(plain), "full_params": model.full_parameters(),
              "resampling": rules, "repair": repair, "repaired": repaired,
              "calib_images": int(len(images)) if repaired else 0}
    if input_shape is not None:
        positions = model_positions(model, plain, input_shape)
        report["macs"] = macs_of(plain, input_shape, positions)
        with model.at_sizes(model.full_sizes):
            report["full_macs"] = macs_of(model.discretize(), input_shape, positions)
    report["seconds"] = time.perf_counter() - t0
    logger.info("pruned to %s: %d parameters", dict(target), report["params"])
    return plain, report
