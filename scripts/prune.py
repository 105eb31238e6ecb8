"""Prune an integral artifact to one width and export it as MindIR (same as
``inn-ms prune``): a keep ratio, per-group sizes, or a parameter / MAC
budget; no fine-tuning.

    python scripts/prune.py --config ascend_configs/mnist_torch_cnn_cpu.yaml --keep 0.5
    python scripts/prune.py outputs/m.inn --params 100000 --out outputs/m_100k.mindir
"""
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_ms.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["prune", *sys.argv[1:]]))
