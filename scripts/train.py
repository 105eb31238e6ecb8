"""Train a zoo network from a YAML config with random widths (same as
``inn-ms train``): progress, loss and accuracy per epoch, an atomic
checkpoint per epoch, automatic resume from the newest one in output_dir.

    python scripts/train.py --config ascend_configs/mnist_cnn_cpu.yaml --set train.epochs=3

Under msrun with ``--set distributed=true``: data-parallel training
(scripts/run_distribute_train.sh).
"""
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_ms.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
