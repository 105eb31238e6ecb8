"""The ``inn-ms`` command line.

Subcommands: ``models`` (the zoo), ``info`` (versions, convolution backend),
``resize`` (build a zoo network, resample it to keep ratios and report
channel counts and parameters), ``convert`` (a discrete architecture with
PyTorch weights → an integral artifact ``.inn`` or a checkpoint), ``prune``
(an artifact → a MindIR at a keep ratio, per-group sizes or a budget),
``elastic`` (an artifact → one MindIR whose channel counts are an input),
``latency-table`` (an artifact's per-layer latencies measured on this
machine through the MindIR runtime), ``search`` (per-group widths
maximising accuracy under a MACs, parameter or latency budget, or a front
of budgets against uniform keep),
``export`` (a config's run → MindIR at each of its evaluation widths),
``train`` (a YAML config → random-width training with checkpoints and
resume; data parallel under msrun) and ``eval`` (a checkpoint → top-1/top-5,
or PSNR/SSIM beside bicubic for super resolution, at several widths, a
table and a plot).

``convert``, ``prune``, ``export``, ``train`` and ``eval`` read the same YAML
config (``--config``, with ``--set key=value`` overrides), so one file
drives a model from PyTorch weights to MindIR; ``convert`` and ``prune``
also work from arguments alone.

A bad input ends the command with one line on stderr, ``inn-ms: error: ...``:
exit code 2 for a request that cannot be honoured (``ValueError``), 1 for a
file that cannot be read or written (``OSError``: the path and the reason).
Output paths are checked before any long work, and a write that fails
leaves no temporary file behind (:mod:`inn_ms.fileio`).
"""
import argparse
import os
import sys


def _models(args):
    from inn_ms.builders import list_models
    for name in list_models():
        print(name)
    return 0


def _info(args):
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms
    import numpy as np
    from inn_ms._version import __version__
    from inn_ms.functional import conv_backend
    print(f"inn_ms {__version__}")
    print(f"mindspore {ms.__version__}, numpy {np.__version__}")
    print(f"device target {ms.get_context('device_target')}, convolution backend {conv_backend()}")
    return 0


def _resize(args):
    os.environ.setdefault("GLOG_v", "3")
    from inn_ms.builders import build
    from inn_ms.model import count_parameters
    model = build(args.model, num_classes=args.num_classes)
    for keep in args.keep:
        model.sizes_for_keep(keep)  # validate every ratio before printing anything
    full = count_parameters(model.discretize())
    print(f"{'keep':>6} {'params':>10} {'compr.':>7}  sizes")
    for keep in args.keep:
        model.resize(keep=keep)
        n = count_parameters(model.discretize())
        print(f"{keep:>6.2f} {n:>10d} {1 - n / full:>7.1%}  {dict(model.sizes)}")
    return 0


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"input shape must be integers like 1,3,32,32, got {text!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"input shape must have a batch and a channel axis of size >= 1, got {text!r}")
    return shape


def _run_config(args):
    """The config of ``--config`` with ``--set`` overrides, for a command that
    runs in one process (never distributed)."""
    from inn_ms.config import load_config
    return load_config(args.config, list(args.set) + ["distributed=false"])


def _convert_plan(args):
    """What to convert, from the command line or from ``--config``:
    ``(arch, builder kwargs, weights, input shape, convert options, out)``.
    Everything is checked before anything is built."""
    if args.config is None:
        if args.arch is None:
            raise ValueError("give an architecture (a zoo name or module:callable) or --config")
        if args.input_shape is None:
            raise ValueError("--input-shape is needed (e.g. 1,3,32,32), or take it from --config")
        if args.out is None:
            raise ValueError("--out is needed (a .inn artifact or .ckpt), or --config (default output_dir/converted.inn)")
        kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
        options = {"fold_bn": not args.no_fold_bn, "permute": not args.no_permute}
        return args.arch, kwargs, args.weights, _shape(args.input_shape), options, args.out
    if args.arch is not None:
        raise ValueError(f"give either an architecture ({args.arch!r}) or --config, not both")
    if args.num_classes is not None:
        raise ValueError("--num-classes comes from the config with --config (--set model.num_classes=N)")
    cfg = _run_config(args)
    m, c = cfg["model"], cfg["model"]["convert"]
    if c is None:
        raise ValueError(f"{args.config}: model.convert is null, so the config builds the integral network "
                         f"directly and there is nothing to convert; set model.convert "
                         f"(e.g. --set 'model.convert={{input_shape: [1, 3, 32, 32]}}')")
    kwargs = dict(m["kwargs"], **({} if m["num_classes"] is None else {"num_classes": m["num_classes"]}))
    options = {"fold_bn": c["fold_bn"] and not args.no_fold_bn, "permute": c["permute"] and not args.no_permute,
               "quadrature": c["quadrature"]}
    shape = _shape(args.input_shape) if args.input_shape else tuple(c["input_shape"])
    out = args.out or os.path.join(cfg["output_dir"], "converted.inn")
    return m["name"], kwargs, args.weights or c["weights"], shape, options, out


def _convert(args):
    os.environ.setdefault("GLOG_v", "3")
    arch, kwargs, weights, shape, options, out = _convert_plan(args)
    if not out.endswith((".inn", ".ckpt")):
        raise ValueError(f"--out must end with .inn (integral artifact) or .ckpt (weights only), got {out!r}")
    if weights and not os.path.isfile(weights):
        raise ValueError(f"no checkpoint file {weights!r} (the PyTorch weights to convert)")
    from inn_ms.fileio import check_output
    check_output(out)
    from inn_ms.artifact import save_artifact
    from inn_ms.builders import build_discrete
    from inn_ms.convert import convert, load_torch_weights
    net = build_discrete(arch, kwargs)
    if weights:
        loaded = load_torch_weights(net, weights)
        print(f"loaded {len(loaded)} tensors from {weights}")
    model = convert(net, shape, builder=arch, builder_kwargs=kwargs, **options)
    groups = model.conversion["groups"]
    print(f"{'group':<32} {'channels':>8}  total variation before -> after")
    for name, size in model.full_sizes.items():
        r = model.conversion["permutation"].get(name)
        tv = f"{r['tv_before']:.4g} -> {r['tv_after']:.4g}" if r else "not permuted"
        print(f"{name:<32} {size:>8}  {tv}")
    discrete = [n for n, g in groups.groups.items() if not g.continuous]
    print(f"{len(model.groups)} continuous groups; discrete: {', '.join(discrete) or 'none'}; "
          f"{len(model.conversion['folded_bn'])} BatchNorms folded")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.endswith(".inn"):
        save_artifact(model, out)
        print(f"integral artifact written to {out}")
        return 0
    from inn_ms.checkpoint import write_mindspore_checkpoint
    write_mindspore_checkpoint(out, model)
    print(f"integral checkpoint written to {out}")
    return 0


def _sizes_arg(text):
    sizes = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--sizes takes group=size pairs separated by commas, got {text!r}")
        if name.strip() in sizes:
            raise ValueError(f"--sizes names group {name.strip()!r} twice: give each group once")
        try:
            sizes[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"--sizes: size of group {name.strip()!r} must be an int, got {value!r}") from None
    return sizes


def _trusted(args, cfg=None):
    """The builders ``--trust-builder`` names, each checked to be a
    module:function name, and a config's own ``model.name`` when it is one
    (``train``/``convert`` with that config import it anyway); None: only
    the known builders."""
    from inn_ms.builders import is_callable_name, trusted_builders
    names = list(args.trust_builder)
    trusted_builders(names)
    if cfg is not None and is_callable_name(cfg["model"]["name"]):
        names.append(cfg["model"]["name"])
    return names or None


def _add_trust_option(p):
    p.add_argument("--trust-builder", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="let the artifact's architecture be built by this function (imported and called); "
                        "without it only the zoo's networks and mindcv:<name> are built (repeatable)")


def _artifact_input_shape(args, manifest, cfg=None):
    """``--input-shape``, or else the shape the artifact's conversion
    recorded, or else (with a classification config) one sample of the
    config's evaluation data."""
    if args.input_shape:
        return _shape(args.input_shape)
    recorded = manifest["architecture"].get("input_shape")
    if recorded:
        return tuple(recorded)
    if cfg is None:
        raise ValueError("--input-shape is needed: the artifact does not record one")
    from inn_ms.tasks import task_for
    shape = task_for(cfg).input_shape()
    if shape is None:
        raise ValueError("--input-shape is needed for a super-resolution network (the image size to export for)")
    return shape


def _config_artifact(args, cfg):
    """The artifact to read: the one named, or else that of the run ``cfg``
    describes (``output_dir/model.inn``)."""
    if cfg is None:
        if args.artifact is None:
            raise ValueError("give an integral artifact (.inn) or --config (its run's output_dir/model.inn)")
        path = args.artifact
    else:
        path = args.artifact or os.path.join(cfg["output_dir"], "model.inn")
    if not os.path.isfile(path):
        hint = ": train with this config first, or give the artifact" if cfg is not None else ""
        raise ValueError(f"no integral artifact at {path!r}{hint}")
    return path


def _multiple_of(args, cfg):
    """``--multiple-of``, or the config's training ``train.widths.multiple_of``
    (the widths the network was trained at), or 1."""
    if args.multiple_of is not None:
        if args.multiple_of < 1:
            raise ValueError(f"--multiple-of must be >= 1, got {args.multiple_of}")
        return args.multiple_of
    widths = cfg["train"]["widths"] if cfg is not None else None
    return widths["multiple_of"] if widths else 1


def _prune_out(args, cfg, sizes):
    """``--out``, or with ``--config`` a name in ``output_dir/mindir/`` that
    says the target."""
    if args.out is None:
        if cfg is None:
            raise ValueError("--out is needed (the .mindir to write), or --config (default output_dir/mindir/)")
        tag = (f"keep{int(round(args.keep * 100)):03d}" if args.keep is not None else
               f"params{args.params}" if args.params is not None else
               f"macs{args.macs}" if args.macs is not None else
               f"flops{args.flops}" if args.flops is not None else
               "sizes_" + "_".join(str(v) for v in sizes.values()))
        return os.path.join(cfg["output_dir"], "mindir", f"{cfg['model']['name'].replace(':', '_')}_{tag}.mindir")
    if not args.out.endswith(".mindir"):
        raise ValueError(f"--out must end with .mindir, got {args.out!r}")
    return args.out


def _repair_options(args, cfg):
    """``(resampling, repair, count)`` from the command line, else the
    config's ``eval`` keys, else the defaults (each group's rule, no repair,
    128 images)."""
    e = cfg["eval"] if cfg is not None else {}
    resampling = args.resample or e.get("resampling", "auto")
    repair = args.repair or e.get("repair", "none")
    count = args.calib if args.calib is not None else e.get("calib", 128)
    if count < 1:
        raise ValueError(f"--calib must be >= 1, got {count}")
    if getattr(args, "calib_data", None) and repair != "calib":
        raise ValueError("--calib-data is read only with --repair calib")
    return (None if resampling == "auto" else resampling), repair, count


def _calibration(args, cfg, repair, count):
    """Unlabelled calibration images for ``--repair calib``: ``--calib-data``
    (a .npy array N x C x H x W), else the config's training data."""
    if repair != "calib":
        return None
    path = getattr(args, "calib_data", None)
    if path:
        if not path.endswith(".npy") or not os.path.isfile(path):
            raise ValueError(f"--calib-data must be an existing .npy file of images, got {path!r}")
        import numpy as np
        try:
            images = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"--calib-data {path!r}: not a plain numpy array ({e})") from None
        return images[:count]
    if cfg is None:
        raise ValueError("--repair calib needs images: --calib-data FILE.npy, or --config (its training data)")
    from inn_ms.tasks import task_for
    return task_for(cfg).calibration_images(count)


def _prune(args):
    os.environ.setdefault("GLOG_v", "3")
    import time
    from inn_ms.artifact import load_artifact, read_manifest
    from inn_ms.export import export_mindir
    from inn_ms.prune import prune
    t0 = time.perf_counter()
    if args.keep is not None and not 0 < args.keep <= 1:
        raise ValueError(f"keep ratio must be in (0, 1], got {args.keep}")
    sizes = _sizes_arg(args.sizes) if args.sizes else None
    cfg = _run_config(args) if args.config else None
    multiple_of = _multiple_of(args, cfg)
    out = _prune_out(args, cfg, sizes)
    from inn_ms.fileio import check_output
    check_output(out)
    path = _config_artifact(args, cfg)
    manifest = read_manifest(path)
    shape = _artifact_input_shape(args, manifest, cfg)
    if sizes:
        unknown = [g for g in sizes if g not in manifest["groups"]]
        if unknown:
            raise ValueError(f"unknown group(s) {unknown}; groups are {list(manifest['groups'])}")
    resampling, repair, count = _repair_options(args, cfg)
    calib = _calibration(args, cfg, repair, count)
    model = load_artifact(path, builders=_trusted(args, cfg))
    macs = args.macs if args.flops is None else args.flops // 2
    plain, report = prune(model, keep=args.keep, sizes=sizes, params=args.params, macs=macs,
                          input_shape=shape, multiple_of=multiple_of, resampling=resampling, repair=repair,
                          calib=calib, calib_count=count, progress=not args.quiet)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    export_mindir(plain, out, shape, dynamic_batch=not args.static_batch, backend=args.backend)
    seconds = time.perf_counter() - t0
    print(f"{'group':<32} {'channels':>8} {'of':>6}")
    for name, n in report["sizes"].items():
        print(f"{name:<32} {n:>8} {model.full_sizes[name]:>6}")
    print(f"parameters {report['params']} of {report['full_params']} "
          f"({1 - report['params'] / report['full_params']:.1%} fewer)")
    if report.get("macs") is not None:
        full_macs = report["full_macs"]
        print(f"MACs per sample {report['macs']} of {full_macs} ({1 - report['macs'] / full_macs:.1%} fewer; "
              f"FLOPs {2 * report['macs']})")
    rules = report["resampling"]
    rules = rules if isinstance(rules, str) else ", ".join(f"{g} {r}" for g, r in rules.items())
    repaired = (f"repaired on {report['calib_images']} {'synthesized' if repair == 'datafree' else 'calibration'} "
                f"images" if report["repaired"] else "no repair" if repair == "none" else "full width: no repair")
    print(f"resampling: {rules}; {repaired}")
    print(f"MindIR written to {out} ({'dynamic' if not args.static_batch else 'static'} batch, "
          f"{args.backend} convolution) in {seconds:.2f} s")
    return 0


def _latency_table(args):
    """Measure a latency table of an artifact on this machine and check its prediction."""
    os.environ.setdefault("GLOG_v", "3")
    import tempfile
    import time
    import numpy as np
    from inn_ms.artifact import load_artifact, read_manifest
    from inn_ms.fileio import check_output
    from inn_ms.latency import check_table, measure_table, save_table
    if not args.out.endswith(".json"):
        raise ValueError(f"--out must end with .json, got {args.out!r}")
    for name in ("count", "repeats", "warmup", "number"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.check < 0 or args.fit < 0:
        raise ValueError(f"--check and --fit must be >= 0, got {args.check} and {args.fit}")
    check_output(args.out)
    if not os.path.isfile(args.artifact):
        raise ValueError(f"no integral artifact at {args.artifact!r}")
    shape = _artifact_input_shape(args, read_manifest(args.artifact))
    multiple_of = _multiple_of(args, None)
    if args.keeps and any(not 0 < k <= 1 for k in args.keeps):
        raise ValueError(f"--keeps: keep ratios must be in (0, 1], got {args.keeps}")
    model = load_artifact(args.artifact, builders=_trusted(args))
    grid = None if not args.keeps else \
        {g: sorted({model.sizes_for_keep(k, multiple_of)[g] for k in args.keeps}) for g in model.groups}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        table = measure_table(model, shape, scratch, multiple_of=multiple_of, count=args.count, candidates=grid,
                              backend=args.backend,
                              warmup=args.warmup, repeats=args.repeats, number=args.number, statistic=args.statistic,
                              fit=args.fit, progress=not args.quiet)
        rng = np.random.default_rng(0)
        groups = table["groups"]
        checks = [{g: s[int(rng.integers(len(s)))] for g, s in groups.items()} for _ in range(args.check)]
        checks += [{g: s[len(s) // 2] for g, s in groups.items()}] if args.check else []
        table["check"] = check_table(model, table, checks, scratch, progress=not args.quiet)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_table(table, args.out)
    entries = sum(len(layer["entries"]) for layer in table["layers"].values())
    print(f"latency table of {args.artifact}: input {tuple(shape)}, {table['backend']} convolution, "
          f"{entries} layer timings over {len(table['layers'])} layers in {time.perf_counter() - t0:.1f} s")
    print(f"{table['timing']['statistic']} times: full width {1e3 * table['full'][0]:.3f} ms (IQR {1e3 * table['full'][1]:.3f}), smallest "
          f"{1e3 * table['smallest'][0]:.3f} ms, call overhead {1e3 * table['overhead']:.3f} ms")
    for g, sizes in groups.items():
        print(f"  {g:<32} {', '.join(str(n) for n in sizes)}")
    if table["check"]:
        print(f"{'predicted ms':>12} {'measured ms':>12} {'IQR':>7} {'error':>7}  sizes")
        for r in table["check"]:
            print(f"{1e3 * r['predicted']:>12.3f} {1e3 * r['measured']:>12.3f} {1e3 * r['iqr']:>7.3f} "
                  f"{r['error']:>+7.1%}  {','.join(str(n) for n in r['sizes'].values())}")
        worst = max(abs(r["error"]) for r in table["check"])
        print(f"largest prediction error {worst:.1%} of the measured latency")
    print(f"table written to {args.out}")
    return 0


def _search_data(args, cfg, count):
    """``(x, y, metric)``: labelled calibration samples, from ``--calib-data``
    (``.npz`` with ``x`` and ``y`` labels, or ``x`` and ``target`` images) or a
    classification config's training data (the first ``count``)."""
    import numpy as np
    path = args.calib_data
    if path:
        if not path.endswith(".npz") or not os.path.isfile(path):
            raise ValueError(f"--calib-data must be an existing .npz file (x and y, or x and target), got {path!r}")
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except ValueError as e:
            raise ValueError(f"--calib-data {path!r}: not plain numpy arrays ({e})") from None
        if "x" not in arrays or ("y" in arrays) == ("target" in arrays):
            raise ValueError(f"--calib-data {path!r} must hold x and one of y (labels) or target (images), "
                             f"has {sorted(arrays)}")
        if "y" in arrays:
            return arrays["x"][:count], arrays["y"][:count], "top1"
        return arrays["x"][:count], arrays["target"][:count], "psnr"
    if cfg is None:
        raise ValueError("search needs labelled calibration samples: --calib-data FILE.npz, or --config "
                         "(its training data)")
    from inn_ms.tasks import task_for
    task = task_for(cfg)
    if task.name != "classification":
        raise ValueError(f"search on a {task.name.replace('_', '-')} config needs --calib-data FILE.npz "
                         f"(x inputs and target images)")
    source = task.train_source()
    n = min(count, source.size)
    xs, ys = zip(*source.batches(range(n), n, drop_remainder=False))
    return np.concatenate(xs), np.concatenate(ys), "top1"


def _search(args):
    """Per-group widths for a budget (or a front of budgets) from an artifact."""
    os.environ.setdefault("GLOG_v", "3")
    import tempfile
    from inn_ms.artifact import load_artifact, read_manifest
    from inn_ms.fileio import check_output, write_json
    from inn_ms.latency import check_table, load_table, measure_network
    from inn_ms.search import (KINDS, accuracy_score, front, parse_budget, plot_front, prune_command, psnr_score,
                               search)
    if args.calib < 1:
        raise ValueError(f"--calib must be >= 1, got {args.calib}")
    if not args.tolerance >= 0 or args.repair_count < 1:
        raise ValueError(f"--tolerance must be >= 0 and --repair-count >= 1, got {args.tolerance} and "
                         f"{args.repair_count}")
    if args.front:
        kind = args.budget.partition("=")[0].strip()
        if kind not in KINDS:
            raise ValueError(f"--budget with --front names the cost to compare at: macs, params or latency, "
                             f"got {args.budget!r}")
        budget = None
        keeps = args.keeps
        if any(not 0 < k <= 1 for k in keeps):
            raise ValueError(f"--keeps: keep ratios must be in (0, 1], got {keeps}")
    else:
        kind, value = parse_budget(args.budget)
        budget = (kind, value)
    if kind == "latency" and args.table is None:
        raise ValueError("a latency budget needs --table T.json (inn-ms latency-table)")
    table = load_table(args.table) if args.table else None
    out = args.out
    if out is not None and not out.endswith(".json"):
        raise ValueError(f"--out must end with .json, got {out!r}")
    if args.front and out is None:
        raise ValueError("--front needs --out FRONT.json (a PNG is written beside it)")
    if args.mindir is not None and (args.front or not args.mindir.endswith(".mindir")):
        raise ValueError("--mindir takes a .mindir path, and only without --front")
    for path in [p for p in (out, out and out[:-5] + ".png" if args.front else None, args.mindir) if p]:
        check_output(path)
    cfg = _run_config(args) if args.config else None
    path = _config_artifact(args, cfg)
    shape = _artifact_input_shape(args, read_manifest(path), cfg)
    multiple_of = _multiple_of(args, cfg)
    x, y, metric = _search_data(args, cfg, args.calib)
    score = accuracy_score(x, y) if metric == "top1" else psnr_score(x, y)
    model = load_artifact(path, builders=_trusted(args, cfg))
    options = {"method": args.method, "multiple_of": multiple_of, "count": args.count, "resampling": args.resample,
               "seed": args.seed, "mode": args.mode, "tolerance": args.tolerance, "repair": args.repair,
               "calib": x if args.repair == "calib" else None, "calib_count": args.repair_count}
    unit = {"macs": "MACs", "params": "parameters", "latency": "s"}[kind]
    if args.front:
        with tempfile.TemporaryDirectory() as scratch:
            rows = front(model, kind, score, keeps, shape, table=table, folder=scratch if table else None,
                         progress=not args.quiet, **options)
        scale = 100 if metric == "top1" else 1
        lat = table is not None
        print(f"{'keep':>6} {'uniform':>8} {'searched':>8} {'MACs u':>10} {'MACs s':>10}"
              + (f" {'ms u':>7} {'ms s':>7}" if lat else "") + "  searched sizes")
        for r in rows:
            u, s_ = r["uniform"], r["searched"]
            print(f"{r['keep']:>6.3f} {scale * u['score']:>8.2f} {scale * s_['score']:>8.2f} {u['macs']:>10d} "
                  f"{s_['macs']:>10d}" + (f" {1e3 * u['latency']:>7.3f} {1e3 * s_['latency']:>7.3f}" if lat else "")
                  + "  " + ",".join(str(n) for n in s_["sizes"].values()))
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        write_json(out, {"artifact": path, "kind": kind, "metric": metric, "calib": len(x), "rows": rows})
        plot_front(rows, out[:-5] + ".png")
        print(f"front at equal {kind}: {out}, plot {out[:-5]}.png")
        return 0
    with tempfile.TemporaryDirectory() as scratch:  # a latency budget is checked on the measured network
        result = search(model, budget, score, input_shape=shape, table=table, progress=not args.quiet,
                        folder=scratch if table is not None else None, **options)
        sizes = result["sizes"]
        if table is not None and "measured_latency" not in result:
            result["measured_latency"], result["measured_latency_iqr"] = measure_network(model, sizes, table,
                                                                                         scratch)
    result["prune_command"] = prune_command(path, sizes, args.mindir or "pruned.mindir", args.resample, shape,
                                            args.repair, args.repair_count)
    print(f"{'group':<32} {'channels':>8} {'of':>6}")
    for g, n in sizes.items():
        print(f"{g:<32} {n:>8} {model.full_sizes[g]:>6}")
    scale = 100 if metric == "top1" else 1
    what = "top-1 %" if metric == "top1" else "PSNR dB"
    print(f"{kind} {result['cost']:.6g} {unit} within the budget {budget[1]:.6g} ({args.method}, "
          f"{result['evaluations']} evaluations, {result['seconds']:.1f} s)")
    print(f"{what} on {len(x)} calibration samples: {scale * result['score']:.2f}"
          + (f" (uniform keep at the same budget: {scale * result['uniform']['score']:.2f})"
             if result["uniform"] else ""))
    print(f"parameters {result['params']}, MACs per sample {result['macs']}")
    if table is not None:
        predicted = result["predicted_latency"]
        predicted = "not in the table's sizes" if predicted is None else f"{1e3 * predicted:.3f} ms"
        print(f"latency predicted {predicted}, measured "
              f"{1e3 * result['measured_latency']:.3f} ms (IQR {1e3 * result['measured_latency_iqr']:.3f})")
        if result.get("rounds"):
            print(f"the table underpredicted: measured within the budget after {result['rounds']} round(s) "
                  f"searching under {1e3 * result['predicted_budget']:.3f} ms predicted")
    print(result["prune_command"])
    if args.mindir:
        from inn_ms.export import export_mindir
        from inn_ms.prune import prune
        plain, _ = prune(model, sizes=sizes, input_shape=shape, resampling=args.resample, repair=args.repair,
                         calib=options["calib"], calib_count=args.repair_count)
        os.makedirs(os.path.dirname(os.path.abspath(args.mindir)), exist_ok=True)
        export_mindir(plain, args.mindir, shape)
        print(f"MindIR written to {args.mindir}")
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        write_json(out, {"artifact": path, "calib": len(x), **result})
        print(f"result written to {out}")
    return 0


def _elastic(args):
    os.environ.setdefault("GLOG_v", "3")
    import time
    from inn_ms.artifact import load_artifact, read_manifest
    from inn_ms.elastic import elastic_ranges, export_elastic
    t0 = time.perf_counter()
    if not args.out.endswith(".mindir"):
        raise ValueError(f"--out must end with .mindir, got {args.out!r}")
    from inn_ms.fileio import check_output
    check_output(args.out)
    manifest = read_manifest(args.artifact)
    shape = _artifact_input_shape(args, manifest)
    model = load_artifact(args.artifact, builders=_trusted(args))
    export_elastic(model, args.out, shape, dynamic_batch=not args.static_batch, backend=args.backend,
                   buckets=args.buckets)
    print(f"elastic MindIR written to {args.out} in {time.perf_counter() - t0:.2f} s "
          f"(branches at {', '.join(f'{f:g}' for f in sorted(set(args.buckets) | {1.0}))} of full width); "
          f"inputs: x, and sizes "
          f"(int32, one channel count per group, in this order):")
    for name, (low, high) in zip(model.groups, elastic_ranges(model)):
        print(f"  {name:<32} {low}..{high}")
    return 0


def _train(args):
    os.environ.setdefault("GLOG_v", "3")
    import logging
    from inn_ms.config import load_config
    from inn_ms.runner import train
    cfg = load_config(args.config, args.set)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("inn_ms").setLevel(logging.INFO)
    resume = None if args.no_resume else (args.resume or "auto")
    result = train(cfg, resume=resume, progress=not args.quiet)
    if result["rank"] == 0:
        last = result["history"][-1] if result["history"] else {}
        top1 = f", full-width top-1 {100 * last['top1']:.2f}%" if "top1" in last else \
            f", full-width PSNR {last['psnr']:.2f} dB" if "psnr" in last else ""
        print(f"trained {cfg['model']['name']} to step {result['step']} "
              f"({result['steps_per_epoch']} steps per epoch, {result['world']} rank(s)){top1}")
        print(f"weights {result['final']}, artifact {os.path.join(cfg['output_dir'], 'model.inn')}")
    return 0


def _eval(args):
    os.environ.setdefault("GLOG_v", "3")
    from inn_ms.checkpoint import load_checkpoint
    from inn_ms.runner import build_model, setup_device
    from inn_ms.tasks import task_for
    cfg = _run_config(args)
    multiple_of = _multiple_of(args, cfg)
    args.widths = args.widths or cfg["eval"]["widths"]
    for keep in args.widths:
        if not 0 < keep <= 1:
            raise ValueError(f"--widths: keep ratios must be in (0, 1], got {keep}")
    if not os.path.isfile(args.checkpoint):
        raise ValueError(f"checkpoint {args.checkpoint!r} not found")
    if args.checkpoint.endswith(".inn"):  # an artifact records its network: it must be the config's
        from inn_ms.artifact import check_same_architecture, read_manifest
        m = cfg["model"]
        kwargs = dict(m["kwargs"], **({} if m["num_classes"] is None else {"num_classes": m["num_classes"]}))
        check_same_architecture(read_manifest(args.checkpoint)["architecture"], m["name"], kwargs,
                                what=f"--checkpoint {args.checkpoint!r}")
    from inn_ms.fileio import check_output, write_json
    out = args.out or os.path.join(cfg["output_dir"], "eval")
    check_output(out + ".png")
    check_output(out + ".json")
    setup_device(cfg)
    task = task_for(cfg)
    source = task.eval_source()
    task.check_data([source], progress=not args.quiet)
    if args.checkpoint.endswith(".inn"):
        from inn_ms.artifact import load_artifact
        model = load_artifact(args.checkpoint, builders=_trusted(args, cfg))
    else:
        model = build_model(cfg)
        load_checkpoint(args.checkpoint, model)
    os.makedirs(os.path.dirname(os.path.abspath(out + ".png")), exist_ok=True)
    resampling, repair, count = _repair_options(args, cfg)
    options = {"resampling": resampling, "repair": repair, "calib_count": count}
    if repair == "calib":
        options["calib"] = _calibration(args, cfg, repair, count)
    if repair == "datafree" and task.input_shape(source) is None:
        raise ValueError("--repair datafree on a super-resolution network: the input size to synthesize is "
                         "not fixed; use --repair calib with --calib-data")
    rows = task.evaluate(model, source, args.widths, multiple_of, progress=not args.quiet, **options)
    if resampling is not None or repair != "none":
        print(f"resampling: {resampling or 'each group its own'}; repair: {repair}"
              + (f" on {count} images" if repair != "none" else ""))
    title, *table = task.report(rows, source)
    print(f"{title}, {args.checkpoint}")
    print("\n".join(table))
    task.plot(rows, out + ".png")
    write_json(out + ".json", {"config": args.config, "checkpoint": args.checkpoint, "rows": rows})
    print(f"plot {out}.png, table {out}.json")
    return 0


def _export(args):
    """Every width of a config's run (``eval.widths``) as MindIR, from the
    run's integral artifact: what a training run hands to deployment."""
    os.environ.setdefault("GLOG_v", "3")
    import time
    from inn_ms.artifact import load_artifact, read_manifest
    from inn_ms.elastic import export_elastic
    from inn_ms.export import export_mindir
    from inn_ms.prune import prune
    cfg = _run_config(args)
    widths = args.widths or cfg["eval"]["widths"]
    for keep in widths:
        if not 0 < keep <= 1:
            raise ValueError(f"--widths: keep ratios must be in (0, 1], got {keep}")
    multiple_of = _multiple_of(args, cfg)
    from inn_ms.fileio import check_output, check_output_dir
    folder = check_output_dir(args.out_dir or os.path.join(cfg["output_dir"], "mindir"))
    name = cfg["model"]["name"].replace(":", "_")
    paths = {keep: os.path.join(folder, f"{name}_keep{int(round(keep * 100)):03d}.mindir") for keep in widths}
    for path in list(paths.values()) + ([os.path.join(folder, f"{name}_elastic.mindir")] if args.elastic else []):
        check_output(path)
    artifact = _config_artifact(args, cfg)
    shape = _artifact_input_shape(args, read_manifest(artifact), cfg)
    resampling, repair, count = _repair_options(args, cfg)
    calib = _calibration(args, cfg, repair, count)
    model = load_artifact(artifact, builders=_trusted(args, cfg))
    os.makedirs(folder, exist_ok=True)
    print(f"{name}: {artifact}, input {shape}, {args.backend} convolution, dynamic batch")
    print(f"{'keep':>6} {'params':>10} {'MACs':>12} {'export s':>9}  file")
    for keep in widths:
        t0 = time.perf_counter()
        plain, report = prune(model, keep=keep, input_shape=shape, multiple_of=multiple_of, resampling=resampling,
                              repair=repair, calib=calib, calib_count=count)
        path = paths[keep]
        export_mindir(plain, path, shape, backend=args.backend)
        print(f"{keep:>6.2f} {report['params']:>10d} {report['macs']:>12d} {time.perf_counter() - t0:>9.2f}  {path}")
    if repair != "none":
        print(f"each width repaired on {count} {'synthesized' if repair == 'datafree' else 'calibration'} images")
    if args.elastic:
        if repair != "none":
            raise ValueError("the elastic MindIR samples its weights at run time and cannot carry per-width "
                             "repairs: export it without --repair (or eval.repair: none)")
        if resampling is not None:
            model.set_resampling(resampling)
        path = export_elastic(model, os.path.join(folder, f"{name}_elastic.mindir"), shape, backend=args.backend)
        print(f"elastic (width a run-time input): {path}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="inn-ms", description="Integral Neural Networks for MindSpore")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the zoo networks").set_defaults(func=_models)
    sub.add_parser("info", help="versions and backends").set_defaults(func=_info)
    p = sub.add_parser("resize", help="resample a zoo network to keep ratios and count parameters")
    p.add_argument("model")
    p.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5])
    p.add_argument("--num-classes", type=int, default=None)
    p.set_defaults(func=_resize)
    p = sub.add_parser("convert", help="convert a discrete network with PyTorch weights to an integral one")
    p.add_argument("arch", nargs="?", help="zoo name (its discrete build) or module:callable returning a Cell "
                                           "(or --config)")
    p.add_argument("--config", help="YAML config whose model and model.convert say what to convert "
                                    "(writes output_dir/converted.inn unless --out)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--weights", help="PyTorch state_dict: .pth/.pt (needs torch), .safetensors or .npz "
                                     "(default with --config: model.convert.weights)")
    p.add_argument("--input-shape", help="example input shape, e.g. 1,3,32,32 (default with --config: "
                                         "model.convert.input_shape)")
    p.add_argument("--out", help="integral artifact (.inn) or checkpoint (.ckpt) to write")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorms as integral BatchNorms")
    p.add_argument("--no-permute", action="store_true", help="keep the channel order")
    p.set_defaults(func=_convert)
    p = sub.add_parser("prune", help="resample an integral artifact to a target width and export MindIR")
    p.add_argument("artifact", nargs="?", help="integral artifact (.inn), or --config")
    p.add_argument("--config", help="YAML config of a run: its output_dir/model.inn (unless an artifact is "
                                    "given), input shape, multiple_of and output folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--keep", type=float, help="one keep ratio in (0, 1] for every group")
    target.add_argument("--sizes", help="group=size pairs, e.g. conv1=16,fc1=64 (others stay full)")
    target.add_argument("--params", type=int, help="largest width with at most this many parameters")
    target.add_argument("--macs", type=int, help="largest width with at most this many MACs per sample")
    target.add_argument("--flops", type=int, help="largest width with at most this many FLOPs per sample "
                                                  "(2 per multiply-accumulate)")
    p.add_argument("--out", help="MindIR file to write (.mindir; default with --config: output_dir/mindir/)")
    p.add_argument("--input-shape", help="input shape (default: the one the artifact records, or with --config "
                                         "one sample of the evaluation data)")
    p.add_argument("--multiple-of", type=int, default=None,
                   help="round sizes to a multiple, e.g. 16 on Ascend (default: the config's "
                        "train.widths.multiple_of, else 1)")
    p.add_argument("--backend", choices=["native", "matmul"], default="native",
                   help="convolution in the MindIR: MindSpore's Conv2D, or unfold + matmul (fast on CPU)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size to the input shape's")
    p.add_argument("--resample", choices=["point", "antialiased"], default=None,
                   help="rule sampling the smaller width (default: eval.resampling of --config, else the "
                        "artifact's own)")
    p.add_argument("--repair", choices=["none", "calib", "datafree"], default=None,
                   help="refit the pruned layers on unlabelled images: calib (--calib-data or the config's "
                        "training data) or datafree (synthesized from the BatchNorm statistics); default "
                        "eval.repair of --config, else none")
    p.add_argument("--calib", type=int, default=None, help="number of calibration images (default 128)")
    p.add_argument("--calib-data", help="calibration images for --repair calib: a .npy array N x C x H x W")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_trust_option(p)
    p.set_defaults(func=_prune)
    p = sub.add_parser("elastic", help="export an artifact as one MindIR whose channel counts are a run-time input")
    p.add_argument("artifact", help="integral artifact (.inn)")
    p.add_argument("--out", required=True, help="MindIR file to write (.mindir)")
    p.add_argument("--input-shape", help="input shape (default: the one the artifact records)")
    p.add_argument("--backend", choices=["native", "matmul"], default="native",
                   help="convolution in the MindIR: MindSpore's Conv2D, or unfold + matmul (fast on CPU)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size to the input shape's")
    p.add_argument("--buckets", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0],
                   help="fractions of full width with a static-shape branch each; a call runs the "
                        "narrowest one holding its sizes (more: less wasted compute, larger file)")
    _add_trust_option(p)
    p.set_defaults(func=_elastic)
    p = sub.add_parser("latency-table", help="measure per-layer latencies of an artifact on this machine "
                                             "(MindIR runtime) and check the prediction")
    p.add_argument("artifact", help="integral artifact (.inn)")
    p.add_argument("--out", required=True, help="table to write (.json)")
    p.add_argument("--input-shape", help="input shape timed, batch included (default: the artifact's)")
    p.add_argument("--multiple-of", type=int, default=None, help="candidate sizes are multiples of this (Ascend: 16)")
    p.add_argument("--count", type=int, default=5, help="candidate sizes per group (default 5)")
    p.add_argument("--keeps", type=float, nargs="+", default=None,
                   help="instead of --count: each group at the sizes of these uniform keep ratios (as search "
                        "--front compares with)")
    p.add_argument("--backend", choices=["native", "matmul"], default="native",
                   help="convolution in the timed MindIRs (as prune will export them)")
    p.add_argument("--warmup", type=int, default=3, help="calls before timing (default 3)")
    p.add_argument("--repeats", type=int, default=15, help="timed runs; the median is kept (default 15)")
    p.add_argument("--number", type=int, default=5, help="calls per timed run (default 5)")
    p.add_argument("--statistic", choices=["median", "min"], default="median",
                   help="each time: the median of the runs, or the fastest (steadier beside other jobs)")
    p.add_argument("--fit", type=int, default=0, metavar="K",
                   help="also time the whole network at K random sizes and predict by the least-squares fit "
                        "in the layers' sum and activation volume (default 0: the two-end interpolation)")
    p.add_argument("--check", type=int, default=3,
                   help="random candidate sizes (plus the middle ones) at which to time the whole network and "
                        "report the prediction error (default 3; 0: no check)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_trust_option(p)
    p.set_defaults(func=_latency_table)
    p = sub.add_parser("search", help="per-group widths maximising accuracy (or PSNR) under a MACs, parameter or "
                                      "latency budget")
    p.add_argument("artifact", nargs="?", help="integral artifact (.inn), or --config")
    p.add_argument("--budget", required=True,
                   help="macs=X, params=X or latency=X (seconds, or 2.5ms); with --front only the kind")
    p.add_argument("--table", help="latency table (.json from inn-ms latency-table): needed for latency budgets; "
                                   "with it the result's latency is also measured")
    p.add_argument("--calib", type=int, default=500, help="calibration samples scored (default 500)")
    p.add_argument("--calib-data", help=".npz with x and y (labels: top-1) or x and target (images: PSNR)")
    p.add_argument("--config", help="YAML config of a run: its artifact, input shape, multiple_of and, for "
                                    "classification, its training data as calibration samples")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--method", choices=["greedy", "evolution"], default="greedy")
    p.add_argument("--seed", type=int, default=0, help="seed of the evolutionary search")
    p.add_argument("--count", type=int, default=8, help="candidate sizes per group for MACs/parameter budgets")
    p.add_argument("--multiple-of", type=int, default=None, help="sizes are multiples of this (Ascend: 16)")
    p.add_argument("--input-shape", help="input shape (default: the artifact's, or the config's data)")
    p.add_argument("--resample", choices=["point", "antialiased"], default=None,
                   help="rule sampling the smaller widths (default: the artifact's own)")
    p.add_argument("--front", action="store_true",
                   help="compare uniform keep ratios (--keeps) with searched widths at equal cost: JSON + PNG")
    p.add_argument("--keeps", type=float, nargs="+", default=[1.0, 0.875, 0.75, 0.625, 0.5],
                   help="uniform keep ratios of --front")
    p.add_argument("--out", help="result (.json); with --front also a .png beside it")
    p.add_argument("--mindir", help="also write the pruned MindIR of the result here")
    p.add_argument("--repair", choices=["none", "calib", "datafree"], default="none",
                   help="score every width after this repair, as prune --repair would make it (calib: refit on the "
                        "calibration samples' images; slower: a discretized network and a refit per width)")
    p.add_argument("--repair-count", type=int, default=128, help="images the repair fits on (default 128)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="a latency result is measured and must run within budget x (1 + this) (default 0.05; "
                        "at equal latency with --front: within the uniform network's measured time x (1 + this))")
    p.add_argument("--mode", choices=["auto", "elastic", "graph", "pynative"], default="auto",
                   help="how each candidate width is scored: elastic (one compiled graph for every width), "
                        "graph (a discretized network compiled per width), pynative (no compile: tiny networks, "
                        "few samples); auto (default): elastic where the network allows it, else graph")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_trust_option(p)
    p.set_defaults(func=_search)
    p = sub.add_parser("train", help="train a zoo network from a YAML config with random widths")
    p.add_argument("--config", required=True, help="YAML config (ascend_configs/<model>_<device>.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (value parsed as YAML); repeatable")
    p.add_argument("--resume", help="checkpoint to resume from (default: the newest in output_dir, if any)")
    p.add_argument("--no-resume", action="store_true", help="start afresh, removing checkpoints in output_dir")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)
    p = sub.add_parser("eval", help="top-1/top-5 (or PSNR/SSIM) of a checkpoint at several widths, table and plot")
    p.add_argument("--config", required=True, help="YAML config the checkpoint was trained with")
    p.add_argument("--checkpoint", required=True, help="training checkpoint, final.ckpt or model.inn")
    p.add_argument("--widths", type=float, nargs="+", default=None, help="keep ratios (default: eval.widths)")
    p.add_argument("--multiple-of", type=int, default=None,
                   help="round channel counts to a multiple (default: train.widths.multiple_of, else 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", help="path stem of the plot (.png) and table (.json); default output_dir/eval")
    p.add_argument("--resample", choices=["point", "antialiased"], default=None,
                   help="rule sampling the smaller width (default: eval.resampling of --config, else the "
                        "artifact's own)")
    p.add_argument("--repair", choices=["none", "calib", "datafree"], default=None,
                   help="refit the pruned layers on unlabelled images: calib (--calib-data or the config's "
                        "training data) or datafree (synthesized from the BatchNorm statistics); default "
                        "eval.repair of --config, else none")
    p.add_argument("--calib", type=int, default=None, help="number of calibration images (default 128)")
    p.add_argument("--calib-data", help="calibration images for --repair calib: a .npy array N x C x H x W")
    p.add_argument("--quiet", action="store_true")
    _add_trust_option(p)
    p.set_defaults(func=_eval)
    p = sub.add_parser("export", help="export every width of a config's run (eval.widths) as MindIR")
    p.add_argument("--config", required=True, help="YAML config the run was trained with")
    p.add_argument("--artifact", help="integral artifact (default: output_dir/model.inn)")
    p.add_argument("--widths", type=float, nargs="+", default=None, help="keep ratios (default: eval.widths)")
    p.add_argument("--multiple-of", type=int, default=None,
                   help="round channel counts to a multiple (default: train.widths.multiple_of, else 1)")
    p.add_argument("--input-shape", help="input shape (default: the artifact's, or the data set's)")
    p.add_argument("--backend", choices=["native", "matmul"], default="native",
                   help="convolution in the MindIR: MindSpore's Conv2D, or unfold + matmul (fast on CPU)")
    p.add_argument("--elastic", action="store_true", help="also export the elastic MindIR (any width at run time)")
    p.add_argument("--out-dir", help="folder for the MindIR files (default: output_dir/mindir)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--resample", choices=["point", "antialiased"], default=None,
                   help="rule sampling the smaller width (default: eval.resampling of --config, else the "
                        "artifact's own)")
    p.add_argument("--repair", choices=["none", "calib", "datafree"], default=None,
                   help="refit the pruned layers on unlabelled images: calib (--calib-data or the config's "
                        "training data) or datafree (synthesized from the BatchNorm statistics); default "
                        "eval.repair of --config, else none")
    p.add_argument("--calib", type=int, default=None, help="number of calibration images (default 128)")
    p.add_argument("--calib-data", help="calibration images for --repair calib: a .npy array N x C x H x W")
    _add_trust_option(p)
    p.set_defaults(func=_export)
    args = ap.parse_args(argv)
    if args.command not in ("models", "info"):
        import mindspore as ms
        from inn_ms.runner import eager_in_order
        eager_in_order(ms.get_context("device_target"))
    try:
        return args.func(args)
    except ValueError as e:
        print(f"inn-ms: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from inn_ms.fileio import describe_os_error
        print(f"inn-ms: error: {describe_os_error(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
