"""Multiply–accumulate counts of a network, read from its traced graph.

Every convolution and matrix product in the compiled graph is counted with
the shapes MindSpore inferred (so strides, padding, groups and flattening
are all accounted for); elementwise ops, pooling and normalisation are left
out, as usual. One multiply–accumulate (MAC) is two FLOPs.
"""
from collections import OrderedDict

import numpy as np

from inn_ms.graph.channels import CONV_OPS, DENSE_OPS
from inn_ms.graph.mindir import trace


def count_macs(network, input_shape):
    """``(total, per_layer)``: MACs per sample for an input of
    ``input_shape`` (its batch size is divided out); ``per_layer`` maps the
    layer owning each weight (its parameter name without the suffix) to its
    MACs."""
    shape = tuple(int(v) for v in input_shape)
    graph = trace(network, shape)
    batch = shape[0]
    per_layer = OrderedDict()
    for node in graph.nodes:
        if node.op not in CONV_OPS and node.op not in DENSE_OPS:
            continue
        if node.shape is None or isinstance(node.shape, list) or len(node.inputs) < 2:
            continue
        w = graph.shapes.get(graph.source(node.inputs[1]))
        if w is None:
            continue
        out = int(np.prod(node.shape))
        if node.op in CONV_OPS:  # each output element: (C_in / groups) · kh · kw products
            macs = out * int(np.prod(w[1:]))
        else:  # (rows, out) = (rows, in) · (in, out): each output element takes `in` products
            x = graph.shapes.get(graph.source(node.inputs[0]))
            inner = x[-1] if x is not None else (w[1] if len(w) > 1 else w[0])
            macs = out * int(inner)
        src = graph.source(node.inputs[1])
        name = graph.params.get(src, src)
        layer = name.rsplit(".", 1)[0]
        per_layer[layer] = per_layer.get(layer, 0) + macs // batch
    return int(sum(per_layer.values())), per_layer
