"""Known architecture builders: the only code a file may ask us to run.

An integral artifact records its architecture by name (``"mnist_cnn"``,
``"mindcv:resnet18"``, ``"mypkg.nets:make_net"``). Loading looks that name
up here and never imports what a file names: a name is built only if

* it is registered (:func:`register_builder`), by the caller or by an
  installed *provider*: a package that declares an entry point in the
  ``inn_ms.builders`` group (this project's ``model_zoo`` does, in
  ``pyproject.toml``). Providers are imported when a name is not known yet;
  they are chosen by what is installed, never by a file, so importing one
  runs no code a file chose,
* it starts with a registered prefix (``mindcv:<name>``, a network of the
  mindcv package), or
* the caller trusts it for this one call: ``builders={name: callable}``, or
  ``builders=["module:function"]`` (the caller names the function, so it may
  be imported; the CLI's ``--trust-builder``).

Anything else is refused with :class:`UntrustedBuilderError` before any
import. This is the library side of the registry: it imports nothing from
the zoo at module level, so a zoo (this one or another) fills it.
"""
import importlib
import importlib.metadata
import logging
import re
from dataclasses import dataclass
from typing import Callable, Optional

logger = logging.getLogger(__name__)

# The entry-point group in which installed packages declare the module whose
# import registers their builders (``[project.entry-points."inn_ms.builders"]``).
PROVIDER_GROUP = "inn_ms.builders"

_CALLABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


class UntrustedBuilderError(ValueError):
    """A file names an architecture builder that nobody registered or trusted."""


TASKS = ("classification", "super_resolution")
# What a network takes: an image to classify; the bicubic-upscaled
# low-resolution image (SRCNN); the low-resolution image itself, upsampled
# inside the network by its ``scale`` (EDSR).
INPUTS = ("image", "upscaled", "low_resolution")


@dataclass(frozen=True)
class Builder:
    """A known builder: ``discrete(**kwargs)`` returns the plain network
    (what a converted architecture starts from); ``integral(**kwargs)``, when
    given, the integral model (what a zoo architecture records).

    Metadata (None: not stated, as for a user's own builder): ``task``, one
    of :data:`TASKS`; ``input``, one of :data:`INPUTS`; ``scale``, the
    default upscaling factor of a ``low_resolution`` network (its ``scale``
    argument); ``input_shape``, ``(C, H, W)`` of an input the network
    takes (a sample, for examples and tests); ``check_kwargs(kwargs)``,
    raises a ValueError naming a keyword argument the builder does not
    take; ``listed``: one of the models ``inn-ms models`` lists."""

    name: str
    discrete: Optional[Callable] = None
    integral: Optional[Callable] = None
    task: Optional[str] = None
    input: Optional[str] = None
    scale: Optional[int] = None
    input_shape: Optional[tuple] = None
    check_kwargs: Optional[Callable] = None
    listed: bool = False

    def upscaling(self, kwargs=None):
        """The factor a ``low_resolution`` network built with ``kwargs``
        upsamples by; None for any other input."""
        if self.input != "low_resolution":
            return None
        return (kwargs or {}).get("scale", self.scale)


_BUILDERS = {}
_PREFIXES = {}


def register_builder(name, discrete=None, integral=None, *, task=None, input=None, scale=None, input_shape=None,
                     check_kwargs=None, listed=False):
    """Make ``name`` loadable: ``discrete(**kwargs)`` builds the plain network,
    ``integral(**kwargs)`` the integral model (either may be None); the
    metadata is :class:`Builder`'s. A later registration of the same name
    replaces the earlier one."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a builder name is a non-empty string, got {name!r}")
    if discrete is None and integral is None:
        raise ValueError(f"register_builder({name!r}): give discrete= and/or integral=")
    _BUILDERS[name] = make_builder(name, discrete, integral, task=task, input=input, scale=scale,
                                   input_shape=input_shape, check_kwargs=check_kwargs, listed=listed)
    return name


def make_builder(name, discrete=None, integral=None, *, task=None, input=None, scale=None, input_shape=None,
                 check_kwargs=None, listed=False):
    """A :class:`Builder`, its metadata checked (what a prefix factory returns)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"builder {name!r}: task must be one of {TASKS}, got {task!r}")
    if input is not None and input not in INPUTS:
        raise ValueError(f"builder {name!r}: input must be one of {INPUTS}, got {input!r}")
    if (task == "classification") != (input == "image") and None not in (task, input):
        raise ValueError(f"builder {name!r}: a {task} network cannot take input {input!r}")
    if input_shape is not None:
        input_shape = tuple(int(v) for v in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"builder {name!r}: input_shape is (C, H, W), got {input_shape!r}")
    return Builder(name, discrete, integral, task, input, scale, input_shape, check_kwargs, bool(listed))


def register_prefix(prefix, factory):
    """Names ``prefix + rest`` resolve to ``factory(rest)``, a :class:`Builder`
    (the factory checks ``rest`` itself, e.g. that mindcv has such a model)."""
    if not isinstance(prefix, str) or not prefix.endswith(":"):
        raise ValueError(f"a builder prefix ends with ':', got {prefix!r}")
    _PREFIXES[prefix] = factory
    return prefix


def registered_builders():
    """Registered names and prefixes (``'mindcv:*'``), sorted."""
    return sorted(_BUILDERS) + sorted(p + "*" for p in _PREFIXES)


def list_models():
    """Names of the registered models marked ``listed`` (a zoo's), sorted."""
    _load_providers()
    return sorted(n for n, b in _BUILDERS.items() if b.listed)


def find_builder(name):
    """The :class:`Builder` registered for ``name`` (or its prefix), or None;
    never imports anything ``name`` names."""
    if not isinstance(name, str) or not name:
        return None
    builder = _lookup(name)
    if builder is None:
        _load_providers()
        builder = _lookup(name)
    return builder


def is_callable_name(name):
    """Whether ``name`` has the form ``module.path:function``."""
    return isinstance(name, str) and bool(_CALLABLE_NAME.match(name))


def providers():
    """The modules installed packages declare as builder providers (entry
    points of the ``inn_ms.builders`` group), sorted by entry-point name."""
    found = importlib.metadata.entry_points()
    if hasattr(found, "select"):
        found = found.select(group=PROVIDER_GROUP)
    else:  # Python 3.9: a dict of groups
        found = found.get(PROVIDER_GROUP, ())
    return [ep.value.partition(":")[0] for ep in sorted(found, key=lambda ep: ep.name)]


def _load_providers():
    """Import every installed provider once (a repeat import is a no-op)."""
    for module in providers():
        try:
            importlib.import_module(module)
        except ImportError as e:  # declared by a package whose module is gone
            logger.warning("builder provider %s could not be imported: %s", module, e)


def _lookup(name):
    if name in _BUILDERS:
        return _BUILDERS[name]
    for prefix, factory in _PREFIXES.items():
        if name.startswith(prefix):
            return factory(name[len(prefix):])
    return None


def _import_trusted(name):
    """The function ``module:attr`` the caller trusted by name."""
    if not _CALLABLE_NAME.match(name):
        raise ValueError(f"a trusted builder is named module:function (e.g. mypkg.nets:make_net), got {name!r}")
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import builder {name!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"builder {name!r} is not callable")
    return fn


def trusted_builders(builders):
    """The caller's ``builders`` (a mapping name → callable, or names of
    ``module:function``) as ``{name: callable or None}`` (None: import the
    named function when it is needed); a malformed entry is refused."""
    if builders is None:
        return {}
    if isinstance(builders, str):
        builders = [builders]
    if isinstance(builders, dict):
        bad = [n for n, fn in builders.items() if not isinstance(n, str) or not callable(fn)]
        if bad:
            raise ValueError(f"builders= maps names to callables; bad entries for {bad}")
        return dict(builders)
    names = list(builders)
    for n in names:
        if not isinstance(n, str) or not _CALLABLE_NAME.match(n):
            raise ValueError(f"a trusted builder is named module:function (e.g. mypkg.nets:make_net), got {n!r}")
    return {n: None for n in names}


def resolve(name, builders=None, kind="discrete"):
    """The function that builds architecture ``name``: ``kind='discrete'``
    returns a plain network, ``'integral'`` an integral model (zoo
    architectures). ``builders``: what the caller trusts for this call
    (module docstring). Raises :class:`UntrustedBuilderError` for anything
    else, before importing anything a file named."""
    if kind not in ("discrete", "integral"):
        raise ValueError(f"kind must be 'discrete' or 'integral', got {kind!r}")
    if not isinstance(name, str) or not name:
        raise UntrustedBuilderError(f"the architecture's builder must be a name (a string), got {name!r}")
    trusted = trusted_builders(builders)
    if trusted.get(name) is not None:  # the caller's own function comes first
        return trusted[name]
    builder = find_builder(name)
    if builder is None and name in trusted:  # named by the caller, known to nobody: import it
        return _import_trusted(name)
    if builder is None:
        how = (f"if you trust it, pass builders=[{name!r}] (CLI: --trust-builder {name})"
               if _CALLABLE_NAME.match(name) else
               "register it with inn_ms.builders.register_builder, or pass builders={name: function}")
        raise UntrustedBuilderError(f"unknown architecture builder {name!r}: a file may only name a registered "
                                    f"builder (the zoo's networks, mindcv:<name>) and this one is not; {how}")
    fn = builder.integral if kind == "integral" else builder.discrete
    if fn is None:
        raise UntrustedBuilderError(f"builder {name!r} has no {kind} form")
    return fn


def build_discrete(builder, kwargs, builders=None):
    """A discrete network from a builder the caller names: a registered name
    (the zoo's, ``mindcv:<name>``) or a ``module:callable``, which is
    imported because the caller asked for it by name (a command line, a
    config). Architectures read from files go through :func:`resolve` with
    the builders the caller trusts."""
    trusted = builders
    if is_callable_name(builder) and builders is None:
        trusted = [builder]
    try:
        fn = resolve(builder, trusted, kind="discrete")
    except UntrustedBuilderError:
        raise ValueError(f"unknown model {builder!r}; known: {registered_builders()}, or a module:function "
                         f"that returns the network") from None
    return fn(**kwargs)


def build(name, integral=True, **kwargs):
    """Registered model ``name`` built with ``kwargs``: the integral model
    (``integral=True``) or the plain network. For names a person gives (a
    command line, a config), with an error listing the known models."""
    builder = find_builder(name)
    if builder is None:
        raise ValueError(f"unknown model {name!r}; known: {list_models()}, or mindcv:<name> for a mindcv network")
    fn = builder.integral if integral else builder.discrete
    if fn is None and integral:
        raise ValueError(f"{name} is a plain network for conversion: build it plain (integral=False) and convert "
                         f"it (inn_ms.convert, inn-ms convert {name})")
    if fn is None:
        raise ValueError(f"{name} has no plain form: build it integral")
    return fn(**kwargs)


# -- architecture specs: how an integral model was built --------------------

def zoo_architecture(name, **kwargs):
    """Architecture spec of an integral zoo network: ``resolve(name,
    kind='integral')(**kwargs)``."""
    return {"kind": "zoo", "name": name, "kwargs": dict(kwargs)}


def converted_architecture(builder, input_shape, builder_kwargs=None, **convert_options):
    """Architecture spec of a converted network: the discrete ``builder`` (a
    zoo name or ``module:callable``) with ``builder_kwargs``, then
    :func:`inn_ms.convert.convert` for ``input_shape`` with the given options
    (``fold_bn``, ``discrete_dims``, ``continuous_dims``, ``quadrature``)."""
    return {"kind": "converted", "builder": builder, "kwargs": dict(builder_kwargs or {}),
            "input_shape": [int(v) for v in input_shape], "convert": dict(convert_options)}


def architecture_builder(architecture):
    """The builder name an architecture spec records (None if it has none)."""
    if not isinstance(architecture, dict):
        return None
    return architecture.get("name") if architecture.get("kind") == "zoo" else architecture.get("builder")


__all__ = ["Builder", "INPUTS", "PROVIDER_GROUP", "TASKS", "UntrustedBuilderError", "architecture_builder",
           "build", "build_discrete", "converted_architecture", "find_builder", "is_callable_name", "list_models",
           "make_builder", "providers", "register_builder", "register_prefix", "registered_builders", "resolve",
           "trusted_builders", "zoo_architecture"]
