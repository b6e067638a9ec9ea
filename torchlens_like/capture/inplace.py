"""Which tensors a torch call writes to, and which calls only read facts about a tensor.

Saved activations are detached aliases of the live tensors (no copy). A call
that writes into a tensor would change every saved alias of that tensor's
storage, so the capture copies those aliases just before such a call. A call
writes into a tensor when it is an in-place method (``add_``, ``__setitem__``,
``x += y`` arrives as ``add_``), a functional with ``inplace=True``, a call
given ``out=``, or ``F.batch_norm`` / ``F.instance_norm`` updating running
statistics. Calls nothing here recognises are still caught afterwards by
the tensor version counter (see ``CaptureSession.finish``).
"""

from __future__ import annotations

import inspect

import torch

_NEVER_TENSOR = frozenset({
    "size", "dim", "ndimension", "numel", "nelement", "stride", "storage_offset",
    "element_size", "is_contiguous", "is_floating_point", "is_complex", "is_signed",
    "data_ptr", "item", "tolist", "__len__", "__bool__", "__int__", "__float__", "__index__",
    "__format__", "__repr__", "__str__", "__hash__", "__reduce_ex__", "__array__",
    "shape", "dtype", "device", "layout", "is_cuda", "is_sparse", "is_quantized", "is_meta",
    "is_leaf", "requires_grad", "ndim", "names", "_version", "grad_fn", "__contains__",
    "get_device", "untyped_storage", "is_nested", "is_inference", "has_names",
})

_NO_WRITES = ()
_traits = {}


def function_name(func):
    """Readable name of an intercepted callable (property getters included).

    Examples
    --------
    >>> import torch
    >>> function_name(torch.Tensor.add_), function_name(torch.Tensor.T.__get__)
    ('add_', 'T')
    """
    name = getattr(func, "__name__", None)
    if name == "__get__":
        owner = getattr(func, "__self__", None)
        name = getattr(owner, "__name__", name)
    return name if isinstance(name, str) else type(func).__name__


def call_traits(func):
    """``(name, writes, no_tensor)`` for an intercepted callable, cached.

    ``writes(args, kwargs)`` returns the tensors the call writes into (None
    when it never writes; ``out=`` is handled by the caller); ``no_tensor``
    whether it only reads facts about a tensor (``size``, ``shape``,
    ``item``...) and never returns one, so it is passed straight through.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(2)
    >>> name, writes, no_tensor = call_traits(torch.Tensor.add_)
    >>> name, writes((x, 1), {})[0] is x, no_tensor
    ('add_', True, False)
    >>> call_traits(torch.add)[1] is None, call_traits(torch.Tensor.size)[2]
    (True, True)
    """
    try:
        return _traits[func]
    except KeyError:
        pass
    except TypeError:
        return _compute_traits(func)
    traits = _traits[func] = _compute_traits(func)
    return traits


def _compute_traits(func):
    name = function_name(func)
    return name, _rule_for(func, name), name in _NEVER_TENSOR


def _first_tensor(args, kwargs):
    if args and isinstance(args[0], torch.Tensor):
        return (args[0],)
    value = kwargs.get("input", kwargs.get("self")) if kwargs else None
    return (value,) if isinstance(value, torch.Tensor) else _NO_WRITES


# Functionals that update running statistics (arguments 1 and 2) when a flag is set.
_STATISTICS_WRITERS = {"batch_norm": (5, "training"), "instance_norm": (5, "use_input_stats")}


def _running_statistics(position, keyword):
    def writes(args, kwargs):
        flag = kwargs[keyword] if kwargs and keyword in kwargs else (
            args[position] if len(args) > position else False)
        if not flag:
            return _NO_WRITES
        stats = list(args[1:3]) + [kwargs.get(k) for k in ("running_mean", "running_var")
                                   if kwargs]
        return tuple(t for t in stats if isinstance(t, torch.Tensor))

    return writes


def _rule_for(func, name):
    if inspect.isfunction(func) and name in _STATISTICS_WRITERS:
        return _running_statistics(*_STATISTICS_WRITERS[name])
    if name.endswith("_") and not name.endswith("__"):
        return _first_tensor
    if name == "__setitem__" or (name.startswith("__i") and name.endswith("__")
                                 and name not in ("__index__", "__init__", "__iter__")):
        return _first_tensor
    position = _inplace_position(func)
    if position is None:
        return None

    def by_inplace_flag(args, kwargs):
        flag = kwargs.get("inplace") if kwargs and "inplace" in kwargs else (
            args[position] if len(args) > position else False)
        return _first_tensor(args, kwargs) if flag is True else _NO_WRITES

    return by_inplace_flag


def _inplace_position(func):
    if not inspect.isfunction(func):
        return None
    try:
        parameters = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None
    return parameters.index("inplace") if "inplace" in parameters else None
