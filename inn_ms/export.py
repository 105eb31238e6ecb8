"""Exporting a plain network as MindIR and running one back.

:func:`export_mindir` writes a plain network (:func:`inn_ms.prune.prune`
makes one from an integral network) as MindIR with a dynamic batch
dimension, atomically;
:func:`load_mindir` runs it back with ``ms.load`` + ``nn.GraphCell``, which is
the MindIR runtime on these machines (DESIGN.md §8).

Exported convolutions use MindSpore's own ``Conv2D`` by default
(``backend="native"``), the portable choice for Ascend and MindSpore Lite;
``backend="matmul"`` keeps the project's unfold + matmul convolution, many
times faster on CPU runtimes (inn_ms.functional).
"""
import logging
import os

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from inn_ms.cells import renew_graph_identity
from inn_ms.fileio import atomic_write
from inn_ms.graph.mindir import read_header, trace
from inn_ms.prune import check_shape as _check_shape

logger = logging.getLogger(__name__)


INFO_KEY = "inn_ms"  # the MindIR's user_info entry with what inn_ms records about it (JSON)


def export_mindir(network, path, input_shape, dynamic_batch=True, backend="native", extra_inputs=(),
                  input_names=None, info=None, runtime_state=None):
    """Write ``network`` (a plain Cell) to ``path`` (``.mindir``) for inputs of
    ``input_shape``; with ``dynamic_batch`` the batch axis is free;
    ``extra_inputs``: example tensors of further inputs (fixed shapes). The
    file appears only when complete. Returns ``path``.

    The MindIR records (in its ``user_info``, as JSON under ``"inn_ms"``)
    the inputs' names (``input_names``, default ``x``, ``input1``, …) and
    ``info``, a JSON object of more facts for the runner
    (:class:`MindIRGraph`); MindSpore itself records each input's shape and
    type, which the runner checks calls against.

    ``runtime_state(name)``, if given, marks Parameters that are run-time
    state (the elastic network's sampled weights, filled on the first
    call): they are written without data, so they cost nothing in the file.
    ``ms.load`` gives them uninitialised buffers of their declared shapes;
    the graph must write them before reading them."""
    import json
    if not str(path).endswith(".mindir"):
        raise ValueError(f"a MindIR file's name ends with .mindir, got {path!r}")
    if backend not in ("native", "matmul"):
        raise ValueError(f"backend must be 'native' or 'matmul', got {backend!r}")
    shape = _check_shape(input_shape)
    names = list(input_names) if input_names is not None else \
        ["x"] + [f"input{k + 1}" for k in range(len(extra_inputs))]
    if len(names) != 1 + len(extra_inputs):
        raise ValueError(f"input_names: {len(names)} names for {1 + len(extra_inputs)} inputs")
    record = json.dumps({"format": "inn_ms-mindir", "version": 1, "inputs": names, **(info or {})})
    spec = Tensor(shape=[None] + list(shape[1:]), dtype=ms.float32) if dynamic_batch \
        else Tensor(np.zeros(shape, np.float32))
    cells = [c for _, c in network.cells_and_names() if hasattr(c, "conv_backend")]
    saved = [c.conv_backend for c in cells]
    was_training = network.training

    def record_info(proto):
        proto.user_info[INFO_KEY] = record

    try:
        for c in cells:
            c.conv_backend = backend
        network.set_train(False)
        renew_graph_identity(network)
        with atomic_write(path) as tmp:
            ms.export(network, spec, *extra_inputs, file_name=tmp, file_format="MINDIR", custom_func=record_info)
            if runtime_state is not None:
                _drop_data(tmp, runtime_state)
    finally:
        for c, b in zip(cells, saved):
            c.conv_backend = b
        network.set_train(was_training)
    return path


def _drop_data(path, runtime_state):
    """Rewrite the MindIR at ``path`` with the data of the Parameters that
    ``runtime_state`` names removed (``ms.export`` fills every Parameter's
    data after ``custom_func`` runs, so this is done on the written file)."""
    from mindspore.train.mind_ir_pb2 import ModelProto
    model = ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    dropped = 0
    for p in model.graph.parameter:
        if runtime_state(p.name[p.name.find(":") + 1:]):
            if p.HasField("external_data"):
                raise ValueError(f"{path}: parameter {p.name!r} is stored outside the MindIR (a model over 1 GB); "
                                 f"run-time state can only be dropped from a single-file MindIR")
            dropped += len(p.raw_data)
            p.ClearField("raw_data")
    if dropped:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())


class MindIRGraph:
    """A MindIR file run with ``ms.load`` + ``nn.GraphCell``, called like the
    network it holds. A file with a free (dynamic) axis gets one GraphCell
    per input shape: a GraphCell compiles again when the shape changes,
    which MindSpore 2.10 cannot do for a graph with control flow (the
    elastic MindIR fails with "actor already exists"), and compiling for
    the dynamic shape instead runs 2–4× slower kernels (measured).

    Every call is checked against the inputs the MindIR declares (count,
    type ``mindspore.Tensor``, dtype, rank, fixed axes, free axes >= 1),
    and the sizes given to an elastic MindIR against each group's allowed
    range, so a bad call gets one line naming the input instead of a
    MindSpore error (or, for a wrong channel count, wrong numbers)."""

    def __init__(self, path):
        import json
        self.path = path
        try:
            self.input_specs, user_info = read_header(path)
            first = nn.GraphCell(ms.load(path))
        except Exception as e:  # protobuf's DecodeError is not a RuntimeError
            raise ValueError(f"cannot load MindIR {path!r} (corrupt or truncated?): "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        try:
            self.info = json.loads(user_info.get(INFO_KEY, "{}"))
        except json.JSONDecodeError:
            self.info = {}
        names = self.info.get("inputs") if isinstance(self.info, dict) else None
        self.input_names = list(names) if isinstance(names, list) and len(names) == len(self.input_specs) \
            else [f"input {k}" for k in range(len(self.input_specs))]
        self.elastic = _elastic_groups(self.info, self.input_specs)
        self.dynamic = any(d < 0 for shape, _ in self.input_specs for d in shape)
        self._first = first
        self._by_shape = {}

    def _graph_for(self, inputs):
        if not self.dynamic:
            return self._first
        key = tuple(tuple(getattr(x, "shape", ())) for x in inputs)
        if key not in self._by_shape:
            self._by_shape[key] = self._first if not self._by_shape else nn.GraphCell(ms.load(self.path))
        return self._by_shape[key]

    def set_train(self, mode=True):
        """Like ``Cell.set_train``, so code written for Cells runs a MindIR
        too; a MindIR graph is fixed as exported (inference), so this
        changes nothing and refuses ``mode=True``."""
        if mode:
            raise ValueError(f"{self.path}: a loaded MindIR runs as exported (inference); it cannot train")
        return self

    def check_inputs(self, *inputs):
        """Raise a ValueError naming the first input that does not fit the
        MindIR's declared inputs (or an elastic size outside its range)."""
        if len(inputs) != len(self.input_specs):
            raise ValueError(f"{self.path}: the MindIR takes {len(self.input_specs)} input(s) "
                             f"({', '.join(self.input_names)}), got {len(inputs)}")
        for name, x, (shape, dtype) in zip(self.input_names, inputs, self.input_specs):
            want = "(" + ", ".join("N" if d < 0 else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
            kind = _dtype_name(dtype)
            if not isinstance(x, Tensor):
                raise ValueError(f"{self.path}: input {name!r} must be a mindspore.Tensor of {kind} and shape "
                                 f"{want}, got {type(x).__module__}.{type(x).__qualname__} "
                                 f"(wrap it: mindspore.Tensor(array))")
            if x.dtype != dtype:
                raise ValueError(f"{self.path}: input {name!r} must be {kind}, got {_dtype_name(x.dtype)}")
            got = tuple(x.shape)
            if len(got) != len(shape):
                raise ValueError(f"{self.path}: input {name!r} must have rank {len(shape)} {want}, got shape {got}")
            for axis, (d, g) in enumerate(zip(shape, got)):
                if d >= 0 and g != d:
                    raise ValueError(f"{self.path}: input {name!r} must have shape {want}, got {got} "
                                     f"(axis {axis}: {g} instead of {d})")
                if d < 0 and g < 1:
                    raise ValueError(f"{self.path}: input {name!r} has {g} entries on its free axis {axis} "
                                     f"(shape {got}); it needs at least 1")
        if self.elastic is not None:
            k, groups = self.elastic
            sizes = inputs[k].asnumpy()
            for (group, low, high), n in zip(groups, sizes):
                if not low <= n <= high:
                    raise ValueError(f"{self.path}: size {int(n)} of group {group!r} is outside its range "
                                     f"[{low}, {high}]")

    def __call__(self, *inputs):
        self.check_inputs(*inputs)
        return self._graph_for(inputs)(*inputs)


def _dtype_name(dtype):
    return str(dtype).lower()


def _elastic_groups(info, specs):
    """``(index of the sizes input, [(group, low, high), ...])`` recorded by
    :func:`inn_ms.elastic.export_elastic`, or None for a plain MindIR."""
    e = info.get("elastic") if isinstance(info, dict) else None
    if not isinstance(e, dict):
        return None
    try:
        k = int(e["sizes_input"])
        groups = [(str(g["name"]), int(g["low"]), int(g["high"])) for g in e["groups"]]
    except (KeyError, TypeError, ValueError):
        return None
    if not 0 <= k < len(specs) or specs[k][0] != (len(groups),):
        return None
    return k, groups


def load_mindir(path):
    """A callable running the MindIR file ``path`` (:class:`MindIRGraph`)."""
    if not os.path.isfile(path):
        raise ValueError(f"no MindIR file at {path!r}")
    return MindIRGraph(path)


def check_input_shape(network, input_shape):
    """Raise a ValueError unless the plain ``network`` compiles for one
    sample of ``input_shape`` (e.g. too small an image for its poolings);
    the check ``prune`` gets from tracing, for exports that do not trace."""
    shape = _check_shape(input_shape)
    try:
        trace(network, (1,) + shape[1:])
    except ValueError as e:
        raise ValueError(f"input shape {shape} does not fit the network: {e}") from None
    return shape
