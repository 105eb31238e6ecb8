"""Model registry in the mindcv style: ``create_model(name, ...)`` and
``list_models()``. Entries register themselves with :func:`register_model`.

An entry whose function has no ``num_classes`` argument (the
super-resolution networks) has no classes: ``create_model`` refuses a
``num_classes`` for it instead of silently ignoring it, and does not record
one in the artifact's architecture.

Every entry is also registered as a known builder in
:mod:`inn_ms.builders`, so an integral artifact that names it can be loaded
(and one that names anything else is refused); so are ``mindcv:<name>`` and
the mindcv bridge's plain builder that converted mindcv artifacts record."""
import functools
import inspect

from inn_ms.builders import Builder, register_builder, register_prefix

_REGISTRY = {}


def register_model(fn):
    """Decorator: make ``fn(num_classes=..., integral=..., **kw)`` available by its name."""
    name = fn.__name__
    _REGISTRY[name] = fn
    register_builder(name, discrete=functools.partial(create_model, name, integral=False),
                     integral=functools.partial(create_model, name, integral=True))
    return fn


def _mindcv_builder(rest):
    name = "mindcv:" + rest
    return Builder(name, discrete=functools.partial(create_model, name, integral=False),
                   integral=functools.partial(create_model, name, integral=True))


def _mindcv_plain(**kwargs):
    from model_zoo.mindcv_bridge import build_plain
    return build_plain(**kwargs)


register_prefix("mindcv:", _mindcv_builder)
# What a converted mindcv network's architecture records (mindcv_bridge.create).
register_builder("model_zoo.mindcv_bridge:build_plain", discrete=_mindcv_plain)


def list_models():
    """Names of the registered networks, sorted."""
    return sorted(_REGISTRY)


def has_classes(name):
    """Whether zoo network ``name`` takes ``num_classes`` (classifiers do,
    super-resolution networks do not)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}, or 'mindcv:<name>' for "
                         f"a mindcv network")
    return "num_classes" in inspect.signature(_REGISTRY[name]).parameters


# Options of the integral layers that every zoo builder takes (the plain networks for conversion accept
# and drop them).
_FACTORY_OPTIONS = ("quadrature", "control_ratio")
# Arguments create_model passes itself, never through a config's model.kwargs.
_RESERVED = {"integral": "decided by model.convert (null: built integral)",
             "num_classes": "set model.num_classes instead", "checkpoint": "set model.checkpoint instead"}


def check_kwargs(name, kwargs):
    """Raise a ValueError naming the first key of ``kwargs`` that zoo
    builder ``name`` does not take, with the closest argument it does take;
    before anything is built (a config's ``model.kwargs``)."""
    import difflib
    has_classes(name)  # unknown names are refused there
    params = inspect.signature(_REGISTRY[name]).parameters
    taken = [p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL) and p not in _RESERVED]
    if any(v.kind == v.VAR_KEYWORD for v in params.values()):
        taken += [p for p in _FACTORY_OPTIONS if p not in taken]
    for key in kwargs:
        if key in _RESERVED:
            raise ValueError(f"{key!r} is not a builder argument here: {_RESERVED[key]}")
        if key not in taken:
            close = difflib.get_close_matches(str(key), taken, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name} takes no argument {key!r}{hint}; it takes {sorted(taken)}")


def sr_scale(name, kwargs=None):
    """For a super-resolution network that upsamples by itself (its builder
    takes ``scale``, as ``edsr``): the scale it is built with from
    ``kwargs``, or the builder's default. None for a network that takes the
    bicubic-upscaled image (``srcnn``) or has classes."""
    if has_classes(name):
        return None
    param = inspect.signature(_REGISTRY[name]).parameters.get("scale")
    if param is None:
        return None
    return (kwargs or {}).get("scale", param.default)


def create_model(name, num_classes=None, integral=True, checkpoint=None, **kwargs):
    """Build a zoo network; ``integral=True`` returns an
    :class:`inn_ms.model.IntegralModel`, ``False`` the plain network.
    ``num_classes``: classifiers only (default 10); a network without classes
    (super resolution) refuses it. ``checkpoint``: a MindSpore ``.ckpt`` to
    load into it.

    ``"mindcv:<name>"`` builds mindcv's network instead (never downloaded),
    loads ``checkpoint`` (a mindcv checkpoint) into the plain network and,
    with ``integral=True``, converts it for ``input_shape=(1, 3, H, W)``
    (see :mod:`model_zoo.mindcv_bridge`)."""
    if isinstance(name, str) and name.startswith("mindcv:"):
        from model_zoo.mindcv_bridge import create
        return create(name[len("mindcv:"):], num_classes=10 if num_classes is None else num_classes,
                      integral=integral, checkpoint=checkpoint, **kwargs)
    if has_classes(name):
        kwargs = {"num_classes": 10 if num_classes is None else num_classes, **kwargs}
    elif num_classes is not None:
        raise ValueError(f"model {name!r} has no classes (it maps images to images), so num_classes "
                         f"does not apply; got num_classes={num_classes!r}")
    model = _REGISTRY[name](integral=integral, **kwargs)
    if integral:  # how to build it again: what an integral artifact records
        from inn_ms.artifact import zoo_architecture
        model.architecture = zoo_architecture(name, **kwargs)
    if checkpoint is not None:
        load_checkpoint_checked(model, checkpoint)
    return model


def load_checkpoint_checked(model, path):
    """Load a MindSpore ``.ckpt`` into ``model`` after checking every
    parameter is present with the right shape (MindSpore's own loader stops
    half-way on a shape mismatch) and every value is valid (finite; BatchNorm
    variances non-negative). Extra entries (optimiser state) are ignored."""
    import mindspore as ms
    from inn_ms.convert.weights import check_values, checkpoint_misfit
    ckpt = ms.load_checkpoint(path)
    params = {p.name: p for p in model.get_parameters()}
    check_values({n: ckpt[n] for n in params if n in ckpt}, f"checkpoint {path}")
    missing, mismatched = checkpoint_misfit(params, ckpt)
    if missing or mismatched:
        raise ValueError(f"checkpoint {path} does not fit the model, nothing loaded; "
                         f"missing: {missing}; shape mismatch (checkpoint vs model): {mismatched}")
    ms.load_param_into_net(model, {n: ckpt[n] for n in params}, strict_load=True)
