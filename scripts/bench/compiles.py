"""Benchmark: how many times a network is compiled from PyTorch weights to a
pruned MindIR, through the command line a user runs:

    inn-ms convert mnist_torch_cnn --weights <its .safetensors> --input-shape 2,1,28,28 --out m.inn
    inn-ms prune m.inn --keep 0.6 --out m.mindir

A compilation is one call of MindSpore's graph compiler (tracing a network
for its channel groups or its MAC count, exporting it). Both commands run in
this process with the compiler's entry point counted.

    python scripts/bench/compiles.py [--out FOLDER]
"""
import argparse
import collections
import os
import sys
import tempfile

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from mindspore.common import api  # noqa: E402

from inn_ms.cli import main as cli  # noqa: E402


def count_compiles(out):
    """``{command: compilations}`` of the two commands, writing to folder ``out``."""
    counts = collections.Counter()
    compile_graph = api._CellGraphExecutor.compile
    stage = ["-"]

    def counted(self, *args, **kwargs):
        counts[stage[0]] += 1
        return compile_graph(self, *args, **kwargs)

    weights = os.path.join(ROOT, "model_zoo", "checkpoints", "mnist_torch_cnn.safetensors")
    artifact, mindir = os.path.join(out, "m.inn"), os.path.join(out, "m.mindir")
    api._CellGraphExecutor.compile = counted
    try:
        stage[0] = "convert"
        if cli(["convert", "mnist_torch_cnn", "--weights", weights, "--input-shape", "2,1,28,28", "--out",
                artifact]):
            raise SystemExit("inn-ms convert failed")
        stage[0] = "prune"
        if cli(["prune", artifact, "--keep", "0.6", "--out", mindir, "--quiet"]):
            raise SystemExit("inn-ms prune failed")
    finally:
        api._CellGraphExecutor.compile = compile_graph
    return dict(counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for the artifact and the MindIR (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        counts = count_compiles(args.out or tmp)
    print(f"compilations: convert {counts.get('convert', 0)}, prune (load + MACs + export) {counts.get('prune', 0)}, "
          f"total {sum(counts.values())} (target <= 2)")


if __name__ == "__main__":
    main()
