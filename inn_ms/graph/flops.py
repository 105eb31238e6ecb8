"""Multiply–accumulate counts of a network, read from its traced graph.

Every convolution and matrix product in the compiled graph is counted with
the shapes MindSpore inferred (so strides, padding, groups and flattening
are all accounted for); elementwise ops, pooling and normalisation are left
out, as usual. One multiply–accumulate (MAC) is two FLOPs.
"""
from collections import OrderedDict

import numpy as np

from inn_ms.graph.kinds import CONV_OPS, DENSE_OPS
from inn_ms.graph.mindir import trace


def layer_positions(network, input_shape):
    """``{layer: positions per sample}``: for every convolution the number of
    output pixels, for every dense layer the rows per sample; read once from
    the traced graph. These do not depend on channel counts, so the MACs of
    any width follow from its weight shapes (:func:`macs_from_weights`)."""
    shape = tuple(int(v) for v in input_shape)
    return graph_positions(trace(network, shape), shape[0])


def graph_positions(graph, batch=1):
    """:func:`layer_positions` read from a traced :class:`~inn_ms.graph.mindir.Graph`
    (inputs of batch size ``batch``)."""
    out = OrderedDict()
    for node in graph.nodes:
        if node.op not in CONV_OPS and node.op not in DENSE_OPS:
            continue
        if node.shape is None or isinstance(node.shape, list) or len(node.inputs) < 2:
            continue
        src = graph.source(node.inputs[1])
        if src not in graph.params:
            continue
        layer = graph.params[src].rsplit(".", 1)[0]
        if node.op in CONV_OPS:
            positions = int(np.prod(node.shape[2:]))
        else:
            positions = int(np.prod(node.shape[:-1])) // batch
        out[layer] = out.get(layer, 0) + positions
    return out


def macs_from_weights(network, positions):
    """``(total, per_layer)`` MACs per sample: each layer's weight size times
    its positions (``{layer: positions}`` from :func:`layer_positions`)."""
    per_layer = OrderedDict()
    for path, cell in network.cells_and_names():
        w = getattr(cell, "weight", None)
        if path in positions and w is not None:
            per_layer[path] = positions[path] * int(np.prod(w.shape))
    return int(sum(per_layer.values())), per_layer


def count_macs(network, input_shape):
    """``(total, per_layer)``: MACs per sample for an input of
    ``input_shape`` (its batch size is divided out); ``per_layer`` maps each
    convolution and dense layer (its Cell path) to its MACs."""
    return macs_from_weights(network, layer_positions(network, input_shape))
