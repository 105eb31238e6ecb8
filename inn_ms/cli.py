"""The ``inn-ms`` command line.

Subcommands so far: ``models`` (the zoo), ``info`` (versions, convolution
backend), ``resize`` (build a zoo network, resample it to keep ratios and
report channel counts and parameters), ``convert`` (a discrete architecture
with PyTorch weights → an integral network, saved as a MindSpore
checkpoint). Pruning to MindIR and export join as those features land.
"""
import argparse
import os
import sys


def _models(args):
    from model_zoo import list_models
    for name in list_models():
        print(name)
    return 0


def _info(args):
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms
    import numpy as np
    import inn_ms
    from inn_ms.functional import conv_backend
    print(f"inn_ms {inn_ms.__version__}")
    print(f"mindspore {ms.__version__}, numpy {np.__version__}")
    print(f"device target {ms.get_context('device_target')}, convolution backend {conv_backend()}")
    return 0


def _resize(args):
    os.environ.setdefault("GLOG_v", "3")
    from inn_ms.model import count_parameters
    from model_zoo import create_model
    model = create_model(args.model, num_classes=args.num_classes)
    for keep in args.keep:
        model.sizes_for_keep(keep)  # validate every ratio before printing anything
    full = count_parameters(model.discretize())
    print(f"{'keep':>6} {'params':>10} {'compr.':>7}  sizes")
    for keep in args.keep:
        model.resize(keep=keep)
        n = count_parameters(model.discretize())
        print(f"{keep:>6.2f} {n:>10d} {1 - n / full:>7.1%}  {dict(model.sizes)}")
    return 0


def build_architecture(spec, num_classes):
    """A discrete network from a zoo name or ``module:callable``."""
    if ":" in spec:
        import importlib
        module, _, attr = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import architecture {spec!r}: {e}") from None
        return fn(num_classes=num_classes) if num_classes is not None else fn()
    from model_zoo import create_model
    return create_model(spec, num_classes=num_classes or 10, integral=False)


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"input shape must be integers like 1,3,32,32, got {text!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"input shape must have a batch and a channel axis of size >= 1, got {text!r}")
    return shape


def _convert(args):
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms
    from inn_ms.convert import convert, load_torch_weights
    shape = _shape(args.input_shape)
    if not args.out.endswith(".ckpt"):
        raise ValueError(f"--out must end with .ckpt, got {args.out!r}")
    net = build_architecture(args.arch, args.num_classes)
    if args.weights:
        loaded = load_torch_weights(net, args.weights)
        print(f"loaded {len(loaded)} tensors from {args.weights}")
    model = convert(net, shape, fold_bn=not args.no_fold_bn, permute=not args.no_permute)
    groups = model.conversion["groups"]
    print(f"{'group':<32} {'channels':>8}  total variation before -> after")
    for name, size in model.full_sizes.items():
        r = model.conversion["permutation"].get(name)
        tv = f"{r['tv_before']:.4g} -> {r['tv_after']:.4g}" if r else "not permuted"
        print(f"{name:<32} {size:>8}  {tv}")
    discrete = [n for n, g in groups.groups.items() if not g.continuous]
    print(f"{len(model.groups)} continuous groups; discrete: {', '.join(discrete)}; "
          f"{len(model.conversion['folded_bn'])} BatchNorms folded")
    tmp = args.out[:-len(".ckpt")] + ".partial.ckpt"
    ms.save_checkpoint(model, tmp)
    os.replace(tmp, args.out)
    print(f"integral checkpoint written to {args.out}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="inn-ms", description="Integral Neural Networks for MindSpore")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the zoo networks").set_defaults(func=_models)
    sub.add_parser("info", help="versions and backends").set_defaults(func=_info)
    p = sub.add_parser("resize", help="resample a zoo network to keep ratios and count parameters")
    p.add_argument("model")
    p.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5])
    p.add_argument("--num-classes", type=int, default=10)
    p.set_defaults(func=_resize)
    p = sub.add_parser("convert", help="convert a discrete network with PyTorch weights to an integral one")
    p.add_argument("arch", help="zoo name (its discrete build) or module:callable returning a Cell")
    p.add_argument("--weights", help="PyTorch state_dict: .pth/.pt (needs torch), .safetensors or .npz")
    p.add_argument("--input-shape", required=True, help="example input shape, e.g. 1,3,32,32")
    p.add_argument("--out", required=True, help="integral checkpoint to write (.ckpt)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorms as integral BatchNorms")
    p.add_argument("--no-permute", action="store_true", help="keep the channel order")
    p.set_defaults(func=_convert)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"inn-ms: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
