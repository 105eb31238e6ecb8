"""mindcv networks in the zoo: ``create_model("mindcv:<name>", ...)``.

Builds mindcv's network with random weights (``pretrained=False``: nothing
is ever downloaded), loads the user's mindcv checkpoint if one is given,
and either returns it plain (``integral=False``) or converts it with
:func:`inn_ms.convert.convert` (``integral=True``): channel groups found
from its graph, BatchNorm folded, channels permuted, exact at full size.
"""
import difflib

PREFIX = "mindcv:"
# Keyword arguments passed on to inn_ms.convert.convert.
CONVERT_OPTIONS = ("fold_bn", "permute", "discrete_dims", "continuous_dims", "quadrature", "verify", "tolerance",
                   "solver")


def _mindcv():
    try:
        import mindcv
    except ImportError as e:
        raise ValueError(f"mindcv models need the mindcv package (pip install mindcv): {e}") from None
    return mindcv


def check_name(name):
    """Raise a ValueError naming close matches if mindcv has no model ``name``."""
    _mindcv()
    from mindcv.models.registry import is_model, list_models
    if not name or not is_model(name):
        close = difflib.get_close_matches(str(name), list_models(), n=5)
        hint = f"; did you mean {close}?" if close else "; see mindcv.list_models()"
        raise ValueError(f"mindcv has no model {name!r}{hint}")


def build_plain(name, num_classes=1000, in_channels=3, **kwargs):
    """mindcv's network ``name`` with random weights (never downloaded), in
    inference mode. Also the builder a converted model's artifact records."""
    mindcv = _mindcv()
    check_name(name)
    net = mindcv.create_model(name, num_classes=num_classes, pretrained=False, in_channels=in_channels, **kwargs)
    net.set_train(False)
    return net


def create(name, num_classes=1000, integral=True, checkpoint=None, input_shape=None, in_channels=3, **kwargs):
    """mindcv's ``name`` (plain, or converted to an integral network for
    inputs of ``input_shape``, default ``(1, in_channels, 224, 224)``, the
    size mindcv's ImageNet networks are built for). ``checkpoint``: a
    mindcv ``.ckpt`` of the same architecture, loaded before conversion.
    Other keyword arguments: options of :func:`inn_ms.convert.convert`
    (``fold_bn``, ``permute``, ``quadrature``, …)."""
    from inn_ms.convert.weights import load_mindspore_weights
    unknown = sorted(k for k in kwargs if k not in CONVERT_OPTIONS)
    if unknown:
        raise ValueError(f"mindcv:{name}: unexpected arguments {unknown}; conversion options are "
                         f"{list(CONVERT_OPTIONS)}")
    if not integral and kwargs:
        raise ValueError(f"mindcv:{name}: conversion options {sorted(kwargs)} need integral=True")
    if input_shape is not None and not integral:
        raise ValueError(f"mindcv:{name}: input_shape is for the conversion (integral=True)")
    shape = tuple(input_shape) if input_shape is not None else (1, in_channels, 224, 224)
    if len(shape) != 4 or shape[1] != in_channels or min(shape) < 1:
        raise ValueError(f"mindcv:{name}: input_shape must be (N, {in_channels}, H, W), got {input_shape!r}")
    net = build_plain(name, num_classes=num_classes, in_channels=in_channels)
    if checkpoint is not None:
        load_mindspore_weights(net, checkpoint)
    if not integral:
        return net
    from inn_ms.convert import convert
    return convert(net, shape, builder=f"{__name__}:build_plain",
                   builder_kwargs={"name": name, "num_classes": num_classes, "in_channels": in_channels}, **kwargs)
