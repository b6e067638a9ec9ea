"""Activations in a form safetensors stores, and back, keeping dtype and memory layout.

safetensors stores dense row-major tensors of its own dtypes. A saved
activation may be laid out otherwise (``channels_last``, a transpose), so it
is stored permuted into the order its strides run in, which makes it dense
and row-major without copying; loading permutes it back, giving the same
shape and strides. A tensor with gaps or overlaps (a slice, ``expand``) is
stored as a contiguous copy and loads contiguous (same values, new strides).
A dtype safetensors lacks (complex128, complex32, ...) is stored as its raw
bytes (``uint8``) and viewed back as the dtype on loading.

Backends whose activations are NumPy arrays (TensorFlow) have them stored
the same way (a dtype torch lacks, such as ``ml_dtypes.bfloat16``, as raw
bytes) and marked ``"array": "numpy"``, so they load as NumPy arrays again.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
from safetensors.torch import _TYPES as SAFETENSORS_DTYPES

from .values import dtype_from_name, dtype_name

STORABLE_DTYPES = frozenset(SAFETENSORS_DTYPES.values())


def to_stored(tensor):
    """``(stored tensor, description)`` for one activation (a JSON-ready dict).

    ``tensor`` is a torch tensor or a NumPy array.

    Examples
    --------
    >>> x = torch.rand(2, 3, 4, 5).to(memory_format=torch.channels_last)
    >>> stored, info = to_stored(x)
    >>> stored.is_contiguous(), info["permutation"]
    (True, [0, 2, 3, 1])
    >>> from_stored(stored, info).stride() == x.stride()
    True
    >>> import numpy as np
    >>> from_stored(*to_stored(np.arange(3, dtype="int16")))
    array([0, 1, 2], dtype=int16)
    """
    if isinstance(tensor, np.ndarray):
        return _array_to_stored(tensor)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"Only tensors and NumPy arrays can be saved, not a "
                        f"{type(tensor).__name__}.")
    tensor = tensor.detach()
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested:
        raise TypeError(f"Only dense (strided) tensors can be saved, not {tensor.layout} ones.")
    info = {"dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape),
            "stride": list(tensor.stride()), "device": str(tensor.device)}
    permutation = _dense_order(tensor)
    if permutation is None:
        stored = tensor.contiguous()
        info["stride"] = list(stored.stride())
        permutation = list(range(tensor.dim()))
    else:
        stored = tensor.permute(permutation)
    info["permutation"] = permutation
    stored = stored.cpu()
    if tensor.dtype not in STORABLE_DTYPES:
        stored = stored.contiguous().reshape(-1).view(torch.uint8)
        info["stored_as"] = "bytes"
    return stored, info


def from_stored(stored, info):
    """The activation :func:`to_stored` described, on the CPU.

    Examples
    --------
    >>> x = torch.rand(3, 4).t()
    >>> restored = from_stored(*to_stored(x))
    >>> torch.equal(restored, x), restored.stride() == x.stride()
    (True, True)
    """
    if info.get("array") == "numpy":
        return _array_from_stored(stored, info)
    dtype = dtype_from_name(info["dtype"])
    permutation = info["permutation"]
    if info.get("stored_as") == "bytes":
        shape = [info["shape"][axis] for axis in permutation]
        stored = stored.view(dtype).reshape(shape)
    inverse = [0] * len(permutation)
    for position, axis in enumerate(permutation):
        inverse[axis] = position
    return stored.permute(inverse)


def _array_to_stored(array):
    if array.dtype.hasobject:
        raise TypeError(f"Only arrays of numbers can be saved, not {array.dtype} ones.")
    array = np.ascontiguousarray(array)
    info = {"dtype": array.dtype.name, "shape": list(array.shape), "array": "numpy"}
    try:
        stored = torch.from_numpy(array)
    except TypeError:
        stored = torch.from_numpy(array.reshape(-1).view(np.uint8))
        info["stored_as"] = "bytes"
    if stored.dtype not in STORABLE_DTYPES:
        stored = stored.reshape(-1).view(torch.uint8)
        info["stored_as"] = "bytes"
    return stored, info


def _array_from_stored(stored, info):
    dtype = _numpy_dtype(info["dtype"])
    if info.get("stored_as") == "bytes":
        return np.frombuffer(stored.numpy().tobytes(), dtype=dtype).reshape(info["shape"])
    return stored.numpy().reshape(info["shape"])


def _numpy_dtype(name):
    """A NumPy dtype by name, also the extra ones of ``ml_dtypes`` (``bfloat16``)."""
    try:
        return np.dtype(name)
    except TypeError:
        try:
            return np.dtype(getattr(importlib.import_module("ml_dtypes"), name))
        except (ImportError, AttributeError):
            raise ValueError(f"Unknown array dtype {name!r} in the saved history (install "
                             "ml_dtypes to read bfloat16 and float8 arrays).") from None


def _dense_order(tensor):
    """Axes ordered by decreasing stride, if that ordering makes the tensor dense, else None."""
    order = sorted(range(tensor.dim()), key=lambda axis: (-tensor.stride(axis), axis))
    expected = 1
    for axis in reversed(order):
        if tensor.shape[axis] != 1 and tensor.stride(axis) != expected:
            return None
        expected *= tensor.shape[axis]
    return order
