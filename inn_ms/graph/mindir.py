"""The data-flow graph of a MindSpore Cell, read from its MindIR.

MindSpore's ``rewrite`` loses in-place edges such as ``out += identity``
(DESIGN.md §4); the compiled graph keeps every edge. :func:`trace` compiles
the Cell for an example input, takes the MindIR protobuf of the compiled
graph (without the weights when the private serialiser is available, from a
temporary ``ms.export`` file otherwise) and returns a :class:`Graph` of
primitive nodes: op name, data inputs, output shape, and the MindSpore
parameter behind every weight input.

Tracing runs the network in inference mode (dropout gone, BatchNorm reading
its moving statistics) and with the native convolution primitive (the
project's unfold + matmul backend would hide the ``Conv2D`` node).
"""
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import mindspore as ms
from mindspore import Tensor

from inn_ms.cells import renew_graph_identity

logger = logging.getLogger(__name__)

# Ops that only pass their first input on (state plumbing of the graph).
FORWARDING = {"Load", "Depend", "StopGradient", "Identity"}
SIDE_EFFECT = {"UpdateState", "Constant"}


@dataclass
class Node:
    """One primitive of the graph: ``op`` name, input value names, output
    value name, Cell scope and output shape (a tuple, or a list of tuples
    for tuple outputs, or None)."""

    op: str
    inputs: list
    output: str
    scope: str
    shape: object = None


@dataclass
class Graph:
    """Nodes in execution order, graph inputs and outputs (value names),
    shapes of every named value, and weight values → parameter names."""

    nodes: list
    inputs: list
    outputs: list
    shapes: dict
    params: dict = field(default_factory=dict)
    producer: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)

    def source(self, name):
        """The value behind ``name`` once forwarding ops (``Load``,
        ``Depend``) are looked through."""
        seen = 0
        while name in self.producer and self.producer[name].op in FORWARDING and seen < 10000:
            name = self.producer[name].inputs[0]
            seen += 1
        return name

    def users(self):
        """Value name → nodes that read it (forwarding ops looked through)."""
        out = {}
        for node in self.nodes:
            if node.op in FORWARDING or node.op in SIDE_EFFECT:
                continue
            for name in node.inputs:
                out.setdefault(self.source(name), []).append(node)
        return out


def _shape(attr_list):
    for a in attr_list:
        if a.name != "shape":
            continue
        if len(a.tensors):
            return tuple(int(d) for d in a.tensors[0].dims)
        if len(a.values):
            return [tuple(int(d) for d in v.tensors[0].dims) if len(v.tensors) else None for v in a.values]
    return None


def _constant(attr_list):
    """The int or tuple of ints a ``Constant`` node holds, else None."""
    for a in attr_list:
        if a.name != "value":
            continue
        kind = mind_ir_type_name(a)
        if kind in ("INT8", "INT16", "INT32", "INT64", "UINT8"):
            return int(a.i)
        if kind == "TUPLE" and all(len(v.ints) == 1 for v in a.values):
            return tuple(int(v.ints[0]) for v in a.values)
    return None


def mind_ir_type_name(attr):
    return attr.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[attr.type].name


def _op_name(op_type):
    """``'REF::Conv2D:4'`` → ``'Conv2D'``."""
    return op_type.split("::")[-1].split(":")[0]


def _param_name(value_name):
    """``'123_net_construct_1:conv1.weight'`` → ``'conv1.weight'``."""
    return value_name.split(":", 1)[1] if ":" in value_name else value_name


def _graph_proto(network, inputs):
    """Serialized MindIR of ``network`` compiled for ``inputs``."""
    try:
        from mindspore.train.serialization import _cell_info
        stream, _ = _cell_info(network, True, *inputs)  # incremental: no weights in the stream
        if stream:
            return stream
    except (ImportError, TypeError, AttributeError) as e:  # private API moved: fall back to export
        logger.debug("private MindIR serialiser unavailable (%s); exporting to a file", e)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "graph")
        ms.export(network, *inputs, file_name=path, file_format="MINDIR")
        with open(path + ".mindir", "rb") as f:
            return f.read()


def _as_tensor(x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (tuple, list)) and all(isinstance(v, int) for v in x):
        return Tensor(np.zeros(tuple(x), np.float32))
    return Tensor(np.asarray(x, np.float32))


def trace(network, *example_inputs):
    """The :class:`Graph` of ``network`` for example inputs (tensors, numpy
    arrays, or shapes such as ``(1, 3, 32, 32)``)."""
    from mindspore.train import mind_ir_pb2

    if not example_inputs:
        raise ValueError("trace: give an example input (a tensor, an array or a shape)")
    inputs = [_as_tensor(x) for x in example_inputs]
    was_training = network.training
    backends = [(c, c.conv_backend) for _, c in network.cells_and_names() if hasattr(c, "conv_backend")]
    # A fresh identity: MindSpore caches compiled graphs per Cell and phase,
    # and would hand back the graph of an earlier trace after Cells changed.
    renew_graph_identity(network)
    try:
        network.set_train(False)
        for c, _ in backends:
            c.conv_backend = "native"
        stream = _graph_proto(network, inputs)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ValueError(f"trace: MindSpore could not compile the network for inputs of shape "
                         f"{[tuple(t.shape) for t in inputs]}: {str(e).splitlines()[0]}") from e
    finally:
        for c, b in backends:
            c.conv_backend = b
        network.set_train(was_training)

    model = mind_ir_pb2.ModelProto()
    model.ParseFromString(stream)
    g = model.graph
    if len(model.functions):
        logger.debug("MindIR has %d sub-functions; only the main graph is read", len(model.functions))
    shapes = {}
    for v in g.input:
        shapes[v.name] = tuple(int(d) for d in v.tensor[0].dims) if len(v.tensor) else None
    params = OrderedDict()
    for p in g.parameter:
        shapes[p.name] = tuple(int(d) for d in p.dims)
        params[p.name] = _param_name(p.name)
    nodes, producer, constants = [], {}, {}
    for n in g.node:
        node = Node(_op_name(n.op_type), list(n.input), n.output[0] if len(n.output) else n.name,
                    n.domain, _shape(n.attribute))
        if node.op == "Constant":
            value = _constant(n.attribute)
            if value is not None:
                constants[node.output] = value
        nodes.append(node)
        producer[node.output] = node
        shapes[node.output] = node.shape
    graph = Graph(nodes, [v.name for v in g.input], [v.name for v in g.output], shapes, params, producer, constants)
    # Graph parameters named in the proto but absent from g.parameter (incremental
    # export keeps them as inputs of the top graph): recognise them by name.
    names = {p.name for p in network.get_parameters()}
    for v in g.input:
        pn = _param_name(v.name)
        if pn in names:
            graph.params[v.name] = pn
    graph.inputs = [v for v in graph.inputs if v not in graph.params]
    return graph


_DTYPES = {"FLOAT": ms.float32, "FLOAT16": ms.float16, "DOUBLE": ms.float64, "INT32": ms.int32,
           "INT64": ms.int64, "INT8": ms.int8, "UINT8": ms.uint8, "BOOL": ms.bool_}


def input_specs(path):
    """The inputs of the MindIR file ``path`` as ``(shape, dtype)`` pairs,
    ``-1`` for a free axis (read from the protobuf, no compilation)."""
    return read_header(path)[0]


def read_header(path):
    """``(input specs, user info)`` of the MindIR file ``path``: the inputs as
    in :func:`input_specs` and the ``user_info`` strings stored at export
    (``ms.export(..., custom_func=...)``), read with one parse."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    specs = []
    for v in model.graph.input:
        if not len(v.tensor):
            continue
        t = v.tensor[0]
        name = mind_ir_pb2.TensorProto.DataType.Name(t.data_type)
        if name not in _DTYPES:
            raise ValueError(f"{path}: input {v.name!r} has unsupported type {name}")
        specs.append((tuple(int(d) for d in t.dims), _DTYPES[name]))
    return specs, dict(model.user_info)
