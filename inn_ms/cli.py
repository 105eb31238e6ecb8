"""The ``inn-ms`` command line.

Subcommands so far: ``models`` (the zoo), ``info`` (versions, convolution
backend), ``resize`` (build a zoo network, resample it to keep ratios and
report channel counts and parameters). Conversion, pruning to MindIR and
export join as those features land.
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
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"inn-ms: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
