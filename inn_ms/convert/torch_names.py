"""What a network calls the modules of its PyTorch counterpart, and where it
computes something else.

**Rename tables.** torchvision names the modules of a ResNet or a
MobileNetV2 differently from the zoo and from mindcv (``layer1.0.conv1`` is
the zoo's ``blocks.0.conv1``; ``downsample`` is mindcv's ``down_sample``).
A table maps a PyTorch module path to the network's module path; it is
derived from the network's own structure, never from the order of a
checkpoint's keys, so every file format of the same tensors loads alike.
A network supplies its table with a ``torch_module_map()`` method (the zoo's
ResNets and MobileNetV2 do); mindcv's ResNet and MobileNetV2 are known here
by their class (mindcv is not imported).

**Padding.** PyTorch layers pad symmetrically. MindSpore's
``pad_mode='same'`` with a stride above 1 pads only after the input when
the input size is even, so a strided convolution or pooling padded that way
sees shifted windows: the network then differs from the PyTorch network its
weights come from (mindcv's ResNet max-pool moves ResNet-18 logits by
1.6–2.8 % at 224×224). :func:`padding_differences` names such cells;
:func:`~inn_ms.convert.weights.load_torch_weights` logs a warning with them.
"""
from inn_ms.cells import holds_parameters

__all__ = ["architecture_table", "padding_differences", "torchvision_mobilenet_v2_table"]


def _own_parameter_cells(root, prefix=""):
    """Paths (under ``prefix``) of the Cells below ``root`` that hold
    parameters themselves (convolutions, BatchNorms, dense layers), in
    registration order."""
    out = []
    for path, cell in root.cells_and_names():
        if holds_parameters(cell):
            out.append(f"{prefix}.{path}" if prefix and path else (path or prefix))
    return out


# torchvision's inverted residual: the modules with weights, in order, with
# an expansion (6 of them) and without (4).
_TV_INVERTED = {6: ("conv.0.0", "conv.0.1", "conv.1.0", "conv.1.1", "conv.2", "conv.3"),
                4: ("conv.0.0", "conv.0.1", "conv.1", "conv.2")}


def torchvision_mobilenet_v2_table(stem, blocks, head, classifier):
    """``{torchvision path: network path}`` for a MobileNetV2 given the
    network's paths of: the stem's convolution and BatchNorm, each inverted
    residual's weighted modules in order (6 with an expansion, 4 without),
    the last 1×1 convolution and its BatchNorm, and the classifier."""
    table = {"features.0.0": stem[0], "features.0.1": stem[1]}
    for b, leaves in enumerate(blocks, start=1):
        names = _TV_INVERTED.get(len(leaves))
        if names is None:
            raise ValueError(f"an inverted residual has {len(leaves)} weighted modules, MobileNetV2's have 4 or 6")
        for tv, path in zip(names, leaves):
            table[f"features.{b}.{tv}"] = path
    last = len(blocks) + 1
    table[f"features.{last}.0"], table[f"features.{last}.1"] = head
    table["classifier.1"] = classifier
    return table


def _mindcv_resnet(net):
    """mindcv's ResNet: torchvision's names but ``down_sample`` and ``classifier``."""
    table = {}
    for path in _own_parameter_cells(net):
        tv = path.replace("down_sample", "downsample")
        tv = "fc" if tv == "classifier" else tv
        if tv != path:
            table[tv] = path
    return table


def _mindcv_mobilenet_v2(net):
    """mindcv's MobileNetV2: one flat ``features`` list (stem conv, BN, ReLU6,
    17 inverted residuals with their layers in ``layers``, conv, BN, ReLU6)."""
    stem, blocks, tail = [], [], []
    for name, cell in net.features.name_cells().items():
        path = f"features.{name}"
        if hasattr(cell, "layers"):
            blocks.append(_own_parameter_cells(cell, path))
        elif holds_parameters(cell):
            (tail if blocks else stem).append(path)
    classifier = [p for p in _own_parameter_cells(net.classifier, "classifier")]
    if len(stem) != 2 or len(tail) != 2 or len(classifier) != 1:
        return {}
    return torchvision_mobilenet_v2_table(stem, blocks, tail, classifier[0])


_KNOWN = {"mindcv.models.resnet.ResNet": _mindcv_resnet,
          "mindcv.models.mobilenetv2.MobileNetV2": _mindcv_mobilenet_v2}


def architecture_table(network):
    """``{PyTorch module path: network module path}`` for ``network`` (empty
    when its names are PyTorch's or nothing is known about it)."""
    own = getattr(network, "torch_module_map", None)
    if callable(own):
        return dict(own())
    cls = type(network)
    make = _KNOWN.get(f"{cls.__module__}.{cls.__qualname__}")
    return make(network) if make is not None else {}


def padding_differences(network):
    """Descriptions of the Cells of ``network`` that pad with
    ``pad_mode='same'`` at a stride above 1 (no PyTorch layer does)."""
    out = []
    for path, cell in network.cells_and_names():
        if str(getattr(cell, "pad_mode", "")).lower() != "same":
            continue
        stride = getattr(cell, "stride", 1)
        strides = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,)
        if any(int(s) > 1 for s in strides):
            out.append(f"{path or type(network).__name__} ({type(cell).__name__}, stride {stride})")
    return out
