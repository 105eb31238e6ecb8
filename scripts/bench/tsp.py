"""Benchmark: channel-permutation solver used by DNN -> INN conversion
(inn_ms/convert/tsp.py), on the channel group of a conv layer.

A group of C channels is a C x C x 3 x 3 conv weight (rows of 9C values)
plus the consumer conv's input-axis slice (C rows of 9C values). Two kinds of
weights are measured:

- random: i.i.d. Gaussian weights. No order is better than another by much,
  so little total-variation (TV) reduction is possible; this is the timing case.
- structured: every row is a smooth function of a hidden 1-D coordinate
  plus Gaussian noise (std = --noise x signal std), rows shuffled. The
  hidden order's TV is printed as a reference for what is reachable, and
  |corr| between each channel's place in the found path and in the hidden
  order (1 = hidden order recovered, up to reversal; with strong noise a
  path may fold back on itself and still have as low a TV).

Times are the best of --repeats runs (the machine may be shared: the load
average is printed). distance_matrix uses its default thread count unless
--workers is given.

    python scripts/bench/tsp.py [--sizes 64 128 256 512] [--repeats 3] [--noise 0.5] [--workers N]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("GLOG_v", "3")

from inn_ms.convert.tsp import distance_matrix, solve_path, total_variation  # noqa: E402


def random_group(c, rng):
    w = rng.normal(size=(c, c, 3, 3)).astype(np.float32)
    consumer = rng.normal(size=(c, c, 3, 3)).astype(np.float32)
    return [w, np.moveaxis(consumer, 1, 0)], None


def smooth_rows(t, cols, rng, noise):
    """Rows = sum of two low-frequency sinusoids of t per column, plus noise."""
    f = rng.uniform(0.3, 1.5, size=(2, cols))
    ph = rng.uniform(0, 2 * np.pi, size=(2, cols))
    amp = rng.uniform(0.5, 1.0, size=(2, cols))
    sig = sum(amp[k] * np.sin(2 * np.pi * f[k] * t[:, None] + ph[k]) for k in range(2))
    return sig + noise * sig.std() * rng.normal(size=sig.shape)


def structured_group(c, rng, noise):
    t = np.sort(rng.uniform(size=c))                   # hidden coordinate, in order
    w = smooth_rows(t, 9 * c, rng, noise).reshape(c, c, 3, 3).astype(np.float32)
    consumer_in = smooth_rows(t, 9 * c, rng, noise).reshape(c, c, 3, 3).astype(np.float32)
    shuffle = rng.permutation(c)                        # the trained net's arbitrary order
    return [w[shuffle], consumer_in[shuffle]], np.argsort(shuffle)


def best_time(fn, repeats):
    out, best = None, float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def run(c, kind, args, rng):
    tensors, hidden = random_group(c, rng) if kind == "random" else structured_group(c, rng, args.noise)
    dist, t_dist = best_time(lambda: distance_matrix(tensors, workers=args.workers), args.repeats)
    order, t_solve = best_time(lambda: solve_path(dist), args.repeats)
    tv0, tv1 = total_variation(tensors), total_variation(tensors, order)
    row = dict(c=c, kind=kind, t_dist=t_dist, t_solve=t_solve, tv0=tv0, tv1=tv1,
               red=100.0 * (1.0 - tv1 / tv0))
    line = (f"{kind:>10}  C={c:<4d} distance {t_dist * 1e3:7.1f} ms  solve {t_solve * 1e3:7.1f} ms  "
            f"total {(t_dist + t_solve) * 1e3:7.1f} ms   TV {tv0:9.2f} -> {tv1:9.2f}  ({row['red']:5.1f}% lower)")
    if hidden is not None:
        tvh = total_variation(tensors, hidden)
        pos = np.empty(c)
        pos[order] = np.arange(c)
        rho = abs(np.corrcoef(pos[hidden], np.arange(c))[0, 1])
        row["red_hidden"] = 100.0 * (1.0 - tvh / tv0)
        line += f"   hidden order TV {tvh:9.2f} ({row['red_hidden']:5.1f}% lower), |corr| with hidden {rho:.3f}"
    print(line, flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description="channel-permutation (TSP path) solver benchmark")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best is kept)")
    ap.add_argument("--noise", type=float, default=0.5, help="structured weights: noise std / signal std")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="distance_matrix threads (default: library's)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    print(f"group = CxCx3x3 conv weight + consumer input slice (2 x C rows of 9C values); "
          f"best of {args.repeats} runs; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"distance threads {args.workers or 'default'}")
    print("random = i.i.d. Gaussian (no structure: timing case); "
          f"structured = smooth in a hidden 1-D coordinate + noise {args.noise}x signal, shuffled\n")
    rows = [run(c, kind, args, rng) for c in args.sizes for kind in ("random", "structured")]

    big = max(args.sizes)
    t_big = max(r["t_dist"] + r["t_solve"] for r in rows if r["c"] == big)
    red_big = min(r["red"] for r in rows if r["c"] == big and r["kind"] == "structured")
    ok = t_big < 1.0 and red_big >= 20.0
    print(f"\nC={big}: total {t_big:.2f} s (target < 1 s), structured TV reduction {red_big:.1f}% "
          f"(target >= 20%): {'MET' if ok else 'NOT MET'}"
          + ("" if big == 512 else "  [targets are stated for C=512]"))


if __name__ == "__main__":
    main()
