"""Model registry in the mindcv style: ``create_model(name, ...)`` and
``list_models()``. Entries register themselves with :func:`register_model`,
saying what they are for: ``task`` (classification by default) and
``input`` (``image``; super resolution: ``upscaled`` or
``low_resolution``).

A super-resolution entry has no classes: ``create_model`` refuses a
``num_classes`` for it instead of silently ignoring it, and does not record
one in the artifact's architecture.

Every entry is also registered, with that metadata, as a known builder in
:mod:`inn_ms.builders`: the library finds a network's task and input there
(it never imports this package), and an integral artifact that names it can
be loaded (one that names anything else is refused); so are
``mindcv:<name>`` and the mindcv bridge's plain builder that converted
mindcv artifacts record."""
import functools
import inspect

from inn_ms.builders import make_builder, register_builder, register_prefix, zoo_architecture
from inn_ms.convert.weights import load_mindspore_weights

_REGISTRY = {}


_TASKS = {}


def register_model(fn=None, *, task="classification", input="image", input_shape=(3, 32, 32), plain=False):
    """Decorator: make ``fn(integral=..., **kw)`` available by its name, for
    ``task`` on inputs of kind ``input`` (:data:`inn_ms.builders.INPUTS`),
    e.g. of ``input_shape`` ``(C, H, W)``. A classifier takes
    ``num_classes``; a ``low_resolution`` network takes ``scale``.
    ``plain``: a plain network for conversion only (no integral build).
    ``@register_model`` alone registers a classifier of 32×32 RGB images."""
    if fn is None:
        return functools.partial(register_model, task=task, input=input, input_shape=input_shape, plain=plain)
    name = fn.__name__
    params = inspect.signature(fn).parameters
    need = "num_classes" if task == "classification" else "scale" if input == "low_resolution" else None
    if need is not None and need not in params:
        raise ValueError(f"zoo entry {name}: a {task} network on {input} inputs takes {need!r}")
    _REGISTRY[name] = fn
    _TASKS[name] = task
    scale = params["scale"].default if input == "low_resolution" else None
    register_builder(name, discrete=functools.partial(create_model, name, integral=False),
                     integral=None if plain else functools.partial(create_model, name, integral=True), task=task,
                     input=input, scale=scale, input_shape=input_shape,
                     check_kwargs=functools.partial(check_kwargs, name), listed=True)
    return fn


def _mindcv_builder(rest):
    name = "mindcv:" + rest
    return make_builder(name, discrete=functools.partial(create_model, name, integral=False),
                        integral=functools.partial(create_model, name, integral=True), task="classification",
                        input="image")


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
    """Whether zoo network ``name`` is a classifier (takes ``num_classes``;
    super-resolution networks do not)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}, or 'mindcv:<name>' for "
                         f"a mindcv network")
    return _TASKS[name] == "classification"


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
        model.architecture = zoo_architecture(name, **kwargs)
    if checkpoint is not None:
        load_mindspore_weights(model, checkpoint)
    return model
