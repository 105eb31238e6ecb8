"""Benchmark: peak memory of evaluating many widths of an integral network in
one process, graph mode.

The zoo's ``mnist_cnn`` (integral, random weights) is resized to 20 keep
ratios from 1 down to 0.3 and evaluated at each on 1,000 MNIST digits in
batches of 250 (``inn_ms.metrics.predict``'s default), in a fresh process
per setting of ``IntegralModel.max_graphs`` (the compiled graphs it holds
at most; ``None`` holds every width's graph, as before). Prints per
setting: the peak resident memory, its resident memory after importing,
and the seconds for all widths; then the same for the plain networks
(``discretize`` at each width, each a new Cell dropped after use, with and
without ``gc.collect()``: a dropped Cell releases its graph either way).

Measured on this 2-core machine shared with other jobs:

    evaluated                    peak RSS MB   after imports   seconds
    model, max_graphs=None              4948             451      45.4
    model, max_graphs=4 (default)       1826             451      48.1
    model, max_graphs=2                 1254             451      45.8
    discretize() per width               902             451      35.4
    discretize(), no gc.collect          902             451      34.3

    python scripts/bench/widths_memory.py [--widths 20] [--settings none,4,2]
"""
import argparse

from procmem import run_child

CHILD = r"""
import gc, json, sys, time
import numpy as np
import mindspore as ms
from inn_ms.data import mnist_subset
from inn_ms.metrics import predict
from inn_ms.model import count_parameters
from model_zoo import create_model
from procmem import status_mb

setting, widths = sys.argv[1], int(sys.argv[2])
ms.set_context(mode=ms.GRAPH_MODE)
ms.set_seed(0)
_, _, x, _ = mnist_subset(100, 1000, seed=0)
model = create_model("mnist_cnn")
params = count_parameters(model.discretize())
base = status_mb("VmRSS")
t = time.perf_counter()
for keep in np.linspace(1.0, 0.3, widths):
    model.resize(keep=float(keep))
    if setting.startswith("discretize"):
        plain = model.discretize()
        predict(plain, x)
        del plain
        if setting == "discretize":
            gc.collect()
    else:
        model.max_graphs = None if setting == "none" else int(setting)
        predict(model, x)
print(json.dumps({"params": params, "base": base, "peak": status_mb("VmHWM"), "seconds": time.perf_counter() - t}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, default=20)
    parser.add_argument("--settings", default="none,4,2,discretize,discretize-nogc",
                        help="comma-separated: max_graphs values (none = hold all), 'discretize' (a plain network per "
                             "width, gc.collect() after each) or 'discretize-nogc'")
    args = parser.parse_args(argv)
    print(f"mnist_cnn, {args.widths} widths (keep 1 -> 0.3), 1,000 images in batches of 250, graph mode")
    print(f"{'evaluated':28s} {'peak RSS MB':>11s} {'after imports':>13s} {'seconds':>8s}")
    for setting in args.settings.split(","):
        label = {"discretize": "discretize() per width", "discretize-nogc": "discretize(), no gc.collect"}.get(
            setting, f"model, max_graphs={setting}")
        r = run_child(CHILD, setting, args.widths)
        if "error" in r:
            print(f"{label:28s} failed: {r['error'][:80]}", flush=True)
            continue
        print(f"{label:28s} {r['peak']:11.0f} {r['base']:13.0f} {r['seconds']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
