"""Data-parallel training with msrun on CPU: two workers launched by
scripts/run_distribute_train.sh end with identical weights, equal to one
process trained on the combined batches (same seed, same widths)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import checkpoint_weights as _weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "ascend_configs", "mnist_cnn_cpu.yaml")
MSRUN = os.path.join(os.path.dirname(sys.executable), "msrun")
# 128 digits, 2 epochs: 4 global batches of 32 per epoch (16 per rank), widths drawn per step.
SETTINGS = ["train.epochs=2", "train.keep_checkpoints=1"]


def _env():
    env = dict(os.environ, GLOG_v="3")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _sets(*extra):
    out = []
    for s in SETTINGS + list(extra):
        out += ["--set", s]
    return out




@pytest.mark.skipif(not (os.path.exists(MSRUN) or shutil.which("msrun")), reason="msrun not installed")
def test_two_workers_equal_one_process_on_the_combined_batch(tmp_path):
    dist, single = tmp_path / "dist", tmp_path / "single"
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_distribute_train.sh"), "2", CONFIG,
                        *_sets("train.batch_size=16", f"output_dir={dist}"), "--quiet"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    logs = {p: (dist / "msrun_logs" / p).read_text() for p in ("worker_0.log", "worker_1.log")
            if (dist / "msrun_logs" / p).exists()}
    assert r.returncode == 0, r.stderr[-3000:] + "".join(v[-3000:] for v in logs.values())
    assert "rank 0 of 2" in logs["worker_0.log"] and "rank 1 of 2" in logs["worker_1.log"]
    assert "trained mnist_cnn to step 8 (4 steps per epoch, 2 rank(s))" in logs["worker_0.log"]

    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--config", CONFIG,
                        *_sets("train.batch_size=32", f"output_dir={single}"), "--quiet"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "trained mnist_cnn to step 8 (4 steps per epoch, 1 rank(s))" in r.stdout

    rank0, rank1 = _weights(str(dist / "final.ckpt")), _weights(str(dist / "final_rank1.ckpt"))
    one = _weights(str(single / "final.ckpt"))
    assert rank0.keys() == rank1.keys() == one.keys()
    for k in rank0:
        np.testing.assert_array_equal(rank0[k], rank1[k], err_msg=f"ranks differ in {k}")
    worst = max(float(np.abs(rank0[k] - one[k]).max() / np.abs(one[k]).max()) for k in one)
    print(f"2 ranks vs 1 process on the combined batch: max relative weight difference {worst:.3g}")
    assert worst <= 1e-5, worst
    # The comparison is not vacuous: training moved the weights far more than that.
    import mindspore as ms
    ms.set_seed(0)
    from model_zoo import create_model
    from inn_ms.config import load_config
    from inn_ms.convert.weights import network_parameters
    cfg = load_config(CONFIG)
    initial = {n: p.asnumpy() for n, p in network_parameters(
        create_model("mnist_cnn", **cfg["model"]["kwargs"])).items()}
    moved = max(float(np.abs(initial[k] - one[k]).max() / np.abs(one[k]).max()) for k in one)
    assert moved > 1e-2, moved


def test_distributed_without_a_launcher_is_refused(monkeypatch, tmp_path, capsys):
    from inn_ms.cli import main
    for var in ("MS_WORKER_NUM", "RANK_TABLE_FILE"):
        monkeypatch.delenv(var, raising=False)
    assert main(["train", "--config", CONFIG, "--set", "distributed=true", "--set", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "msrun" in err and "distributed=false" in err
    assert not list(tmp_path.iterdir())
