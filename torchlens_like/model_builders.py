"""Functions known to build models, so that one passed where a model goes is refused.

``log_forward_pass(torchvision.models.resnet18, x)`` (the builder, not called)
would otherwise run the builder with the input as its first argument and fail
deep inside the library (``Boolean value of Tensor with more than one value is
ambiguous``). Plain functions stay valid models; a function is taken for a
model builder when it is, by identity, in torchvision's or timm's model
registry or registered here (the library's model zoo registers its builders),
or when its return annotation is an ``nn.Module`` class.

Design decisions
----------------
* The registries of torchvision and timm are read only when those libraries
  are already imported: a function from a library that is not imported cannot
  be one of its builders, and the check must not import them.
* The builders of each registry are gathered once and gathered again only
  when the registry's size changes (models registered later).
"""

from __future__ import annotations

import inspect
import sys
import typing

_REGISTERED = {}
_GATHERED = {}


def register_builder(function):
    """Mark ``function`` as a model builder (refused as a model, with a hint to call it).

    Examples
    --------
    >>> def build():
    ...     return None
    >>> register_builder(build); is_model_builder(build)
    True
    >>> unregister_builder(build); is_model_builder(build)
    False
    """
    _REGISTERED[id(function)] = function


def unregister_builder(function):
    """Forget a function marked with :func:`register_builder`."""
    _REGISTERED.pop(id(function), None)


def is_model_builder(candidate):
    """Whether ``candidate`` is a function known to build models rather than a model.

    Examples
    --------
    >>> import torchvision
    >>> is_model_builder(torchvision.models.resnet18), is_model_builder(lambda x: x * 2)
    (True, False)
    """
    if not inspect.isfunction(candidate):
        return False
    if _REGISTERED.get(id(candidate)) is candidate or _returns_module(candidate):
        return True
    return any(id(candidate) in builders for builders in _library_builders())


def _returns_module(function):
    try:
        returned = typing.get_type_hints(function).get("return")
    except Exception:  # annotations that do not resolve say nothing either way
        return False
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(returned, type) and issubclass(returned,
                                                                           torch.nn.Module)


def _library_builders():
    for library, size, builders in (("torchvision", _torchvision_size, _torchvision_builders),
                                    ("timm", _timm_size, _timm_builders)):
        if library not in sys.modules:
            continue
        known = size()
        cached = _GATHERED.get(library)
        if cached is None or cached[0] != known:
            cached = _GATHERED[library] = (known, {id(f) for f in builders()})
        yield cached[1]


def _torchvision_size():
    import torchvision.models

    return len(torchvision.models.list_models())


def _torchvision_builders():
    import torchvision.models

    return [torchvision.models.get_model_builder(name)
            for name in torchvision.models.list_models()]


def _timm_size():
    import timm

    return len(timm.list_models())


def _timm_builders():
    import timm
    import timm.models

    return [timm.models.model_entrypoint(name) for name in timm.list_models()]
