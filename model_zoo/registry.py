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
    ``checkpoint``: a MindSpore ``.ckpt`` to load into it.

    ``"mindcv:<name>"`` builds mindcv's network instead (never downloaded),
    loads ``checkpoint`` (a mindcv checkpoint) into the plain network and,
    with ``integral=True``, converts it for ``input_shape=(1, 3, H, W)``
    (see :mod:`model_zoo.mindcv_bridge`)."""
    if isinstance(name, str) and name.startswith("mindcv:"):
        from model_zoo.mindcv_bridge import create
        return create(name[len("mindcv:"):], num_classes=num_classes, integral=integral, checkpoint=checkpoint,
                      **kwargs)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}, or 'mindcv:<name>' for "
                         f"a mindcv network")
    model = _REGISTRY[name](num_classes=num_classes, integral=integral, **kwargs)
    if integral:  # how to build it again: what an integral artifact records
        from inn_ms.artifact import zoo_architecture
        model.architecture = zoo_architecture(name, num_classes=num_classes, **kwargs)
    if checkpoint is not None:
        load_checkpoint_checked(model, checkpoint)
    return model


def load_checkpoint_checked(model, path):
    """Load a MindSpore ``.ckpt`` into ``model`` after checking every
    parameter is present with the right shape (MindSpore's own loader stops
    half-way on a shape mismatch). Extra entries (optimiser state) are ignored."""
    import mindspore as ms
    from inn_ms.convert.weights import checkpoint_misfit
    ckpt = ms.load_checkpoint(path)
    params = {p.name: p for p in model.get_parameters()}
    missing, mismatched = checkpoint_misfit(params, ckpt)
    if missing or mismatched:
        raise ValueError(f"checkpoint {path} does not fit the model, nothing loaded; "
                         f"missing: {missing}; shape mismatch (checkpoint vs model): {mismatched}")
    ms.load_param_into_net(model, {n: ckpt[n] for n in params}, strict_load=True)
