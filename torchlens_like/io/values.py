"""Non-tensor values (call arguments, positions, metadata) as JSON, and back.

JSON has lists, dicts with string keys, strings, numbers, booleans and null.
Everything else a recorded call can hold is written as a one-key object
naming its type: ``{"tuple": [...]}``, ``{"slice": [start, stop, step]}``,
``{"dtype": "float32"}``, ``{"device": "cuda:0"}``,
``{"torch": "channels_last"}`` (a memory format or layout), ``{"layer": "conv2d_1_2"}`` (a reference to
another layer; ``{"slot": ...}`` inside call arguments), ``{"param": "fc.weight"}``, ``{"const": "tensor(2, 3)"}`` (a constant
tensor's slot, named), ``{"tensor": [shape, dtype]}`` (any other tensor, kept
by shape only) and ``{"repr": "..."}`` for any other
object (read back as its text: loading never runs code). Dicts whose keys
are not all strings become ``{"items": [[key, value], ...]}``. Plain
one-key dicts are written as ``{"dict": {...}}`` so they cannot be mistaken
for a tagged value.
"""

from __future__ import annotations

import math

import torch

from ..graph import ArgSlot, LayerEntry


class Unreadable(str):
    """The text of a value that could not be stored as data (its ``repr``)."""

    def __repr__(self):
        return str(self)


def dtype_name(dtype):
    """``torch.float32`` -> ``"float32"``.

    Examples
    --------
    >>> dtype_name(torch.bfloat16)
    'bfloat16'
    """
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name):
    """``"float32"`` -> ``torch.float32``; a clear error for anything else.

    Examples
    --------
    >>> dtype_from_name("int64")
    torch.int64
    """
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"Unknown tensor dtype {name!r} in the saved history.")
    return dtype


def encode(value, param_names=None):
    """A JSON-ready form of ``value`` (see the module docstring).

    Examples
    --------
    >>> encode((1, slice(None, 2), torch.float16, {"dim": -1}))
    {'tuple': [1, {'slice': [None, 2, None]}, {'dtype': 'float16'}, {'dict': {'dim': -1}}]}
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, ArgSlot):
        if value.kind == "layer":
            return {"slot": value.ref.layer_label}
        if value.kind == "param":
            return {"param": value.name}
        return {"const": value.name}
    if isinstance(value, LayerEntry):
        return {"layer": value.layer_label}
    if isinstance(value, torch.dtype):
        return {"dtype": dtype_name(value)}
    if isinstance(value, torch.Tensor):
        return {"tensor": [list(value.shape), dtype_name(value.dtype)]}
    if isinstance(value, slice):
        return {"slice": [encode(value.start), encode(value.stop), encode(value.step)]}
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            encoded = {k: encode(v) for k, v in value.items()}
            return {"dict": encoded} if len(encoded) == 1 else encoded
        return {"items": [[encode(k), encode(v)] for k, v in value.items()]}
    if value is Ellipsis:
        return {"ellipsis": None}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, (torch.memory_format, torch.layout)):
        return {"torch": dtype_name(value)}
    return {"repr": repr(value)}


def decode(value, layers=None, params=None):
    """The value :func:`encode` wrote; ``layers`` maps labels to loaded layers.

    ``{"layer": label}`` becomes the layer itself, ``{"slot": label}`` an
    :class:`~torchlens_like.graph.ArgSlot` pointing to it; ``{"param": name}``
    and ``{"tensor": ...}`` become placeholders whose tensors are shape-only
    (``device="meta"``, from ``params``: ``{address: tensor}``).

    Examples
    --------
    >>> decode({'tuple': [1, {'slice': [None, 2, None]}, {'dtype': 'float16'}]})
    (1, slice(None, 2, None), torch.float16)
    """
    if isinstance(value, list):
        return [decode(v, layers, params) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: decode(v, layers, params) for k, v in value.items()}
    (tag, body), = value.items()
    reader = _READERS.get(tag)
    if reader is None:
        return {tag: decode(body, layers, params)}
    return reader(body, layers, params)


def _read_tensor(body, layers, params):
    shape, dtype = body
    return torch.empty(shape, dtype=dtype_from_name(dtype), device="meta")


def _read_param(body, layers, params):
    return ArgSlot("param", (params or {}).get(body), body)


def _read_layer(body, layers, params):
    return layers[body]


_READERS = {
    "tuple": lambda body, layers, params: tuple(decode(v, layers, params) for v in body),
    "slice": lambda body, layers, params: slice(*body),
    "dtype": lambda body, layers, params: dtype_from_name(body),
    "device": lambda body, layers, params: torch.device(body),
    "torch": lambda body, layers, params: _torch_constant(body),
    "float": lambda body, layers, params: float(body),
    "ellipsis": lambda body, layers, params: Ellipsis,
    "repr": lambda body, layers, params: Unreadable(body),
    "dict": lambda body, layers, params: {k: decode(v, layers, params) for k, v in body.items()},
    "items": lambda body, layers, params: {
        _hashable(decode(k, layers, params)): decode(v, layers, params) for k, v in body},
    "layer": _read_layer,
    "slot": lambda body, layers, params: ArgSlot("layer", layers[body]),
    "param": _read_param,
    "tensor": _read_tensor,
    "const": lambda body, layers, params: ArgSlot("const", None, body),
}


def _torch_constant(name):
    value = getattr(torch, name, None)
    if not isinstance(value, (torch.memory_format, torch.layout)):
        raise ValueError(f"Unknown torch memory format or layout {name!r} in the saved history.")
    return value


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
