"""Export every evaluation width of a config's run as MindIR (same as
``inn-ms export``): the run's ``output_dir/model.inn`` pruned to each
``eval.widths`` ratio, and with ``--elastic`` the one MindIR whose width is
a run-time input.

    python scripts/export.py --config ascend_configs/mnist_torch_cnn_cpu.yaml --elastic
"""
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_ms.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
