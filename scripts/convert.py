"""Convert a discrete network with PyTorch weights to an integral one (same
as ``inn-ms convert``): channel groups from the graph, BatchNorm folded,
channels permuted by the TSP solver, the result checked against the
original, written as an integral artifact.

    python scripts/convert.py --config ascend_configs/mnist_torch_cnn_cpu.yaml
    python scripts/convert.py mnist_torch_cnn --weights W.safetensors --input-shape 1,1,28,28 --out m.inn
"""
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_ms.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
