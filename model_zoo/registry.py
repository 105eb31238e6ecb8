"""Model registry in the mindcv style: ``create_model(name, ...)`` and
``list_models()``. Entries register themselves with :func:`register_model`."""

_REGISTRY = {}


def register_model(fn):
    """Decorator: make ``fn(num_classes=..., integral=..., **kw)`` available by its name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models():
    """Names of the registered networks, sorted."""
    return sorted(_REGISTRY)


def create_model(name, num_classes=10, integral=True, checkpoint=None, **kwargs):
    """Build a zoo network; ``integral=True`` returns an
    :class:`inn_ms.model.IntegralModel`, ``False`` the plain network.
    ``checkpoint``: a MindSpore ``.ckpt`` to load into it."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    model = _REGISTRY[name](num_classes=num_classes, integral=integral, **kwargs)
    if checkpoint is not None:
        import mindspore as ms
        not_loaded, _ = ms.load_param_into_net(model, ms.load_checkpoint(checkpoint), strict_load=True)
        if not_loaded:
            raise ValueError(f"checkpoint {checkpoint}: parameters not loaded: {not_loaded}")
    return model
