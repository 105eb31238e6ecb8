"""Benchmark: which temporaries a MindSpore graph keeps, for the elastic
MindIR's resampling step (issue 12 §4: why its memory does not fall).

A graph samples ``n`` weights of 256 × 2304 floats (2.4 MB, a 256 → 256
3×3 convolution's) from an input matrix and returns one scalar, so no
sampled weight needs to outlive its layer. Three patterns per weight:

- ``matmul``: one matmul (the output axis, as the elastic MindIR samples it);
- ``matmul+transpose``: the matmul, then its product transposed (the input
  axis's first step);
- ``sampler``: matmul, transpose, matmul, transpose (both axes, as
  ``inn_ms.sampler.apply_along_axis1`` does it).

Each graph is exported, loaded with ``ms.load`` + ``nn.GraphCell`` and run
twice in a fresh process; printed: the peak resident memory above the
process before loading, at 2 and at 16 weights, and what each further
weight adds, in weight sizes. The ``matmul`` graph is the baseline (the
weight's own data, loaded); what a pattern adds over it per weight are
temporaries the graph keeps instead of reusing them for the next weight.
Measured (MindSpore 2.10, CPU): 2.2, 3.1 and 5.2 weight sizes per weight,
so the sampler's pattern keeps three weight-sized temporaries per layer.

    python scripts/bench/transpose_memory.py
"""
from procmem import run_child

CHILD = r"""
import json, os, sys, tempfile
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from procmem import status_mb

class Sample(nn.Cell):
    def __init__(self, n, kind):
        super().__init__()
        self.kind = kind
        self.ws = ms.ParameterTuple([Parameter(Tensor(np.random.default_rng(k).random((256, 2304), np.float32)),
                                               name=f"w{k}") for k in range(n)])

    def construct(self, a):
        t = 0.0
        for w in self.ws:
            s = ops.matmul(a, w)
            if self.kind != "matmul":
                s = ops.transpose(s.reshape(256, 256, 9), (0, 2, 1))
            if self.kind == "sampler":
                s = ops.transpose(ops.matmul(s.reshape(-1, 256), a).reshape(256, 9, 256), (0, 2, 1))
            t = t + s.sum()
        return t

n, kind = int(sys.argv[1]), sys.argv[2]
a = Tensor(np.eye(256, dtype=np.float32))
path = os.path.join(tempfile.mkdtemp(), "sample.mindir")
ms.export(Sample(n, kind), a, file_name=path, file_format="MINDIR")
base = status_mb("VmRSS")
graph = nn.GraphCell(ms.load(path))
for _ in range(2):
    graph(a).asnumpy()
print(json.dumps({"peak_mb": status_mb("VmHWM") - base}))
"""

WEIGHT_MB = 256 * 2304 * 4 / 2 ** 20


def main():
    print(f"peak resident memory above the process before loading (MB), weights of {WEIGHT_MB:.2f} MB:")
    for kind in ("matmul", "matmul+transpose", "sampler"):
        few, many = (run_child(CHILD, n, kind)["peak_mb"] for n in (2, 16))
        print(f"  {kind:18s} 2 weights {few:5.0f}   16 weights {many:5.0f}   "
              f"each further weight {(many - few) / 14 / WEIGHT_MB:.1f} weight sizes")


if __name__ == "__main__":
    main()
