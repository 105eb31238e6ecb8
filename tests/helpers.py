"""Helpers several test files share: running the project's scripts as a
user does (subprocesses), reading training checkpoints, and giving
BatchNorms non-trivial values. (Independent references live in
reference.py; nothing here is a yardstick.)"""
import os
import subprocess

import numpy as np
from mindspore import Tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env():
    """Environment for a script subprocess: quiet MindSpore, unbuffered
    output, and no msrun variables leaking in from the test process."""
    env = dict(os.environ, GLOG_v="3", PYTHONUNBUFFERED="1")
    env.pop("MS_WORKER_NUM", None)
    return env


def run_script(cmd):
    """Run ``cmd`` from the repository root; fail with its output unless it
    exits 0. Returns stdout + stderr."""
    r = subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r.stdout + r.stderr


def checkpoint_weights(path):
    """The network weights of a training checkpoint (position entries dropped)."""
    import mindspore as ms
    from inn_ms.checkpoint import META_KEYS
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if k not in META_KEYS}


def run(net, x):
    """Eval-mode outputs of ``net`` on the numpy array ``x``, as numpy."""
    net.set_train(False)
    return net(Tensor(x)).asnumpy()


def rel_err(a, b):
    """Largest absolute difference of ``a`` from ``b``, relative to ``b``'s largest magnitude."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def randomize_bn(net, rng):
    """Non-trivial BatchNorm statistics and affine parameters (plain or
    integral), so folding, permuting and sampling them is really exercised."""
    for name, p in net.parameters_and_names():
        if name.endswith(("moving_mean", "beta")):
            p.set_data(Tensor(rng.uniform(-0.5, 0.5, p.shape).astype(np.float32)))
        elif name.endswith(("moving_variance", "gamma")):
            p.set_data(Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    return net


def rewrite_artifact(src, dst, manifest=None, weights=None, sign=True):
    """Copy the integral artifact ``src`` to ``dst`` with its manifest
    (a dict) and/or weights (bytes) passed through the given functions.
    ``sign``: store a fresh digest over the edited members, as a tool that
    knows the format would (so the test reaches the checks past the
    digest); False keeps the original digest, as a hand edit would."""
    import json
    import zipfile
    from inn_ms.artifact import DIGEST, MANIFEST, WEIGHTS, _digest
    with zipfile.ZipFile(src) as z:
        m, w = json.loads(z.read(MANIFEST)), z.read(WEIGHTS)
        digest = z.read(DIGEST) if DIGEST in z.namelist() else None
    m = manifest(m) if manifest else m
    w = weights(w) if weights else w
    text = json.dumps(m).encode("utf-8")
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr(MANIFEST, text)
        z.writestr(WEIGHTS, w)
        if sign:
            z.writestr(DIGEST, _digest(text, w))
        elif digest is not None:
            z.writestr(DIGEST, digest)


def save_torch_state_dict(net, path):
    """A torch module's state_dict as ``path`` (a ``pathlib.Path``) in three
    orders of the same tensors: ``.pth`` in module order, ``.safetensors``
    as the format sorts it, ``.npz`` in reverse-sorted order."""
    import torch
    sd = net.state_dict()
    if path.suffix == ".pth":
        torch.save(sd, path)
    elif path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        np.savez(path, **{k: sd[k].numpy() for k in sorted(sd, reverse=True)})
    return str(path)


def randomize_torch_bn(*bns):
    """Non-trivial statistics and affine parameters for torch BatchNorms (a
    torch seed set by the caller makes them repeatable)."""
    import torch
    with torch.no_grad():
        for bn in bns:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)


def tiny_mnist_artifact(folder):
    """A zoo mnist_cnn of a few channels saved as ``folder/tiny.inn`` (group
    c1 allowed 2..4), and ``folder/calib.npz``: 40 random 12x12 inputs
    labelled by the network itself. Returns ``folder``."""
    from model_zoo import create_model
    from inn_ms.artifact import save_artifact
    from inn_ms.metrics import predict
    m = create_model("mnist_cnn", widths=(4, 6, 8, 8, 12))
    save_artifact(m, str(folder / "tiny.inn"), allowed_sizes={"c1": (2, 4)})
    x = np.random.default_rng(0).standard_normal((40, 1, 12, 12)).astype(np.float32)
    np.savez(folder / "calib.npz", x=x, y=predict(m.discretize(), x).argmax(1))
    return folder


def pynative_accuracy(net, x, y, batches=2):
    """Top-1 accuracy of ``net`` on numpy ``x``, ``y`` taken in PyNative, in
    ``batches`` batches; the execution mode is put back. For tests that
    score a few networks once each: graph mode compiles every network (and
    width) first, about 5 s of CPU for the main job's CNN, more than scoring
    a few hundred digits op by op in large batches."""
    import mindspore as ms
    from inn_ms.metrics import accuracy
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        return accuracy(net, x, y, batch_size=-(-len(x) // batches))
    finally:
        ms.set_context(mode=mode)
