"""Evaluate a checkpoint at several widths (same as ``inn-ms eval``): one
table of top-1/top-5 per keep ratio and a PNG of accuracy vs compression.

    python scripts/eval.py --config ascend_configs/mnist_cnn_cpu.yaml \
        --checkpoint outputs/mnist_cnn_cpu/final.ckpt --widths 1.0 0.75 0.5
"""
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_ms.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
