"""Evidence for super resolution: SRCNN ×3 trained briefly as an integral
network with random widths on skimage's bundled photos, then evaluated on
held-out photos at full width and resampled to smaller widths with no
fine-tuning, beside bicubic upscaling.

    python scripts/evidence_srcnn.py            # defaults: the README's table
    python scripts/evidence_srcnn.py --help
"""
import argparse
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import mindspore as ms  # noqa: E402
from mindspore import nn  # noqa: E402

from inn_ms.data.sr import TEST_PHOTOS, TRAIN_PHOTOS, random_patches, sr_photos  # noqa: E402
from inn_ms.tasks import evaluate_super_resolution, sr_table  # noqa: E402
from inn_ms.train import RandomWidthTrainer, WidthSampler, steps_per_batch  # noqa: E402
from model_zoo import create_model  # noqa: E402


def train_srcnn(train_pairs, args, progress=True):
    """The integral SRCNN trained with random widths on random patches."""
    rng = np.random.default_rng(args.seed)
    x, y = random_patches(train_pairs, args.steps * args.batch_size, args.patch, args.scale, rng)
    model = create_model("srcnn", kernels=args.kernels, widths=args.widths, residual=not args.plain,
                         control_ratio=args.control_ratio, offset=args.offset, last_scale=args.last_scale)
    lr = nn.cosine_decay_lr(args.lr * 0.1, args.lr, args.steps * steps_per_batch(args.sandwich), 1, 1)
    lr = [args.lr] * len(lr) if args.constant_lr else lr
    opt = nn.Adam(model.trainable_params(), learning_rate=lr)
    sampler = None if args.low >= 1 else WidthSampler(model, low=args.low, levels=args.levels)
    trainer = RandomWidthTrainer(model, nn.MSELoss(), opt, sampler, seed=args.seed, sandwich=args.sandwich)
    history = trainer.fit(x, y, epochs=1, batch_size=args.batch_size, progress=progress)
    return model, history


# Defaults of the two formulations (None on the command line: these). The
# plain network carries the whole image through its channels, so a width
# change costs it the quadrature error of its weight functions in full (see
# README, "Super resolution"): it needs smoother functions (a coarser
# control grid), a centred input and a quiet start to meet the targets.
RESIDUAL_DEFAULTS = {"lr": 1e-3, "control_ratio": 0.5, "offset": 0.0, "last_scale": 0.01}
PLAIN_DEFAULTS = {"lr": 3e-3, "control_ratio": 0.25, "offset": 0.5, "last_scale": 0.01}


def resolve_defaults(args):
    """Fill the options left unset with the defaults of ``--plain`` or the residual network."""
    for k, v in (PLAIN_DEFAULTS if args.plain else RESIDUAL_DEFAULTS).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--kernels", type=lambda s: tuple(int(v) for v in s.split(",")), default=(9, 1, 5))
    ap.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")), default=(64, 32))
    ap.add_argument("--plain", action="store_true",
                    help="the paper's SRCNN (no global residual); its defaults: " +
                    ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in PLAIN_DEFAULTS.items()))
    ap.add_argument("--offset", type=float, default=None,
                    help="constant subtracted from the input and added to the output "
                         "(default 0; --plain: 0.5)")
    ap.add_argument("--last-scale", type=float, default=None,
                    help="initial scale of the last layer's weights, bias 0 (default 0.01; 1: plain He init)")
    ap.add_argument("--steps", type=int, default=2000, help="training batches")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch", type=int, default=33, help="training patch side (HR pixels)")
    ap.add_argument("--lr", type=float, default=None,
                    help="Adam peak learning rate, cosine decay to 10 %% (default 1e-3; --plain: 3e-3)")
    ap.add_argument("--constant-lr", action="store_true")
    ap.add_argument("--control-ratio", type=float, default=None,
                    help="control grid size / channel count (default 0.5; --plain: 0.25)")
    ap.add_argument("--low", type=float, default=0.5, help="narrowest keep ratio trained (1: full width only)")
    ap.add_argument("--levels", type=int, default=3, help="keep ratios trained, evenly spaced in [low, 1]")
    ap.add_argument("--sandwich", action="store_true", help="also a full-width step on every batch")
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    ap.add_argument("--save", default=None, metavar="M.inn",
                    help="also save the trained integral network as an artifact (scripts/bench/search.py --task sr)")
    ap.add_argument("--quiet", action="store_true")
    args = resolve_defaults(ap.parse_args(argv))
    if args.save and not args.save.endswith(".inn"):
        ap.error(f"--save takes an artifact path ending with .inn, got {args.save!r}")

    ms.set_seed(args.seed)
    ms.set_context(mode=ms.GRAPH_MODE)
    t0 = time.time()
    train_pairs, test_pairs = sr_photos(args.scale)
    print(f"SRCNN{'' if args.plain else ' (global residual)'} x{args.scale} {'-'.join(map(str, args.kernels))}, widths {args.widths}, Y channel; "
          f"train photos: {', '.join(TRAIN_PHOTOS)}; test photos: {', '.join(TEST_PHOTOS)}")
    model, history = train_srcnn(train_pairs, args, progress=not args.quiet)
    t_train = time.time() - t0
    trained = "full width only" if args.low >= 1 else \
        f"random widths, keep ratios {np.round(np.linspace(args.low, 1, args.levels), 3).tolist()}"
    print(f"trained {args.steps} steps x {args.batch_size} patches of {args.patch}^2 ({trained}"
          f"{', sandwich' if args.sandwich else ''}), control ratio {args.control_ratio}, "
          f"Adam {args.lr:g}{' constant' if args.constant_lr else ' cosine'}"
          f"{f', offset {args.offset:g}' if args.offset else ''}, last layer at {args.last_scale:g}: "
          f"{t_train:.0f} s, final loss {history[-1]:.5f}")

    if args.save:
        from inn_ms.artifact import save_artifact
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        save_artifact(model, args.save)
        print(f"trained network saved: {args.save}")
    # PyNative (one pass per tile shape), every width of the model itself, bicubic first
    rows = evaluate_super_resolution(model, test_pairs, args.scale, args.keep)
    print(f"\nheld-out photos, Y channel, border {args.scale} px; PSNR dB / SSIM (no fine-tuning at any width)")
    print("\n".join(sr_table(rows)))
    total = time.time() - t0
    print(f"\nwhole run {total:.0f} s (training {t_train:.0f} s)")
    if args.json:
        out = {"args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
               "rows": rows, "train_seconds": t_train,
               "total_seconds": total, "loss_history": history}
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        from inn_ms.fileio import write_json
        write_json(args.json, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
