"""Model state that every entry point saves, sets and puts back.

Public helpers shared by the entry points that run a model
(:mod:`torchlens_like.api`) and by the readers that re-run recorded calls
(:mod:`torchlens_like.validate`): the global random generators, a module's
buffers, and the normalisation of ``input_args`` / ``input_kwargs``.

This module is a foundation of the package: it imports nothing from it.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import torch
from torch import nn


def snapshot_rng():
    """Return the state of Python's, NumPy's and torch's (CPU and CUDA) generators.

    Examples
    --------
    >>> import torch
    >>> state = snapshot_rng(); a = torch.rand(1)
    >>> restore_rng(state); bool(torch.rand(1) == a)
    True
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state):
    """Put back a state taken by :func:`snapshot_rng`.

    Examples
    --------
    >>> import random
    >>> state = snapshot_rng(); a = random.random()
    >>> restore_rng(state); random.random() == a
    True
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed):
    """Seed Python's, NumPy's and torch's generators (all devices) with ``seed``.

    Examples
    --------
    >>> import torch
    >>> seed_all(3); a = torch.rand(1); seed_all(3)
    >>> bool(torch.rand(1) == a)
    True
    """
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def storage_address(tensor):
    """The address of ``tensor``'s memory (its views share it); None for a tensor without storage.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(4)
    >>> storage_address(x[2:]) == storage_address(x)
    True
    >>> storage_address(x.clone()) == storage_address(x)
    False
    """
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def tensor_version(tensor):
    """``tensor._version``, or None for a tensor without a version counter (inference mode).

    Examples
    --------
    >>> import torch
    >>> tensor_version(torch.ones(1)), tensor_version(torch.ones(1).add_(1))
    (0, 1)
    >>> with torch.inference_mode():
    ...     tensor_version(torch.ones(1)) is None
    True
    """
    try:
        return tensor._version
    except RuntimeError:
        return None


def copy_buffers(model):
    """``[(buffer, copy of its value, (module, name)), ...]`` for every buffer binding of ``model``.

    Each registered buffer is kept with the module and name it is bound to,
    so that :func:`restore_buffers` puts back a buffer the forward replaced
    with a new tensor (``self.buf = x ** 2``) as well as one it wrote into.
    A callable that is not a module has no buffers.

    Examples
    --------
    >>> import torch
    >>> norm = torch.nn.BatchNorm1d(2); saved = copy_buffers(norm)
    >>> _ = norm(torch.rand(4, 2)); restore_buffers(saved)
    >>> norm.running_mean.tolist(), int(norm.num_batches_tracked)
    ([0.0, 0.0], 0)
    >>> before = norm.running_var; norm.running_var = torch.zeros(2); restore_buffers(saved)
    >>> norm.running_var is before
    True
    """
    if not isinstance(model, nn.Module):
        return []
    copies = {}
    with torch.no_grad():
        return [(buffer, copies.setdefault(id(buffer), buffer.detach().clone()), (module, name))
                for module in model.modules() for name, buffer in module._buffers.items()
                if buffer is not None]


def copy_tensors(tensors):
    """``[(tensor, copy of its value, None), ...]``: the state of tensors a forward may write into.

    For the caller's input tensors (a forward may write into its input, e.g.
    ``x += 1``); put back with :func:`restore_buffers`.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(2); saved = copy_tensors([x])
    >>> _ = x.add_(1); restore_buffers(saved); x.tolist()
    [0.0, 0.0]
    """
    with torch.no_grad():
        return [(tensor, tensor.detach().clone(), None) for tensor in tensors]


def restore_buffers(saved):
    """Put back what :func:`copy_buffers` or :func:`copy_tensors` took: bindings, then values.

    A buffer the forward rebound to a new tensor is bound to its original
    tensor again; tensors still holding their value are not written.
    """
    with torch.no_grad():
        for tensor, value, binding in saved:
            if binding is not None and binding[0]._buffers.get(binding[1]) is not tensor:
                binding[0]._buffers[binding[1]] = tensor
            if not torch.equal(tensor, value):
                tensor.copy_(value)


def normalize_inputs(input_args, input_kwargs):
    """``(args tuple, kwargs dict)`` from the ``input_args`` / ``input_kwargs`` of an entry point.

    ``input_args`` is a tensor (one argument) or a tuple/list of positional
    arguments; a named tuple is one argument; None is no positional argument
    (one ``None`` argument is ``[None]``).

    Examples
    --------
    >>> import torch
    >>> args, kwargs = normalize_inputs(torch.ones(1), None)
    >>> len(args), kwargs
    (1, {})
    >>> normalize_inputs([1, 2], {"k": 3})
    ((1, 2), {'k': 3})
    >>> normalize_inputs(None, {"input_ids": 3}), normalize_inputs([None], None)
    (((), {'input_ids': 3}), ((None,), {}))
    """
    if input_args is None:
        args = ()
    elif isinstance(input_args, (tuple, list)) and not hasattr(input_args, "_fields"):
        args = tuple(input_args)
    else:
        args = (input_args,)
    if input_kwargs is None:
        kwargs = {}
    elif isinstance(input_kwargs, dict):
        kwargs = dict(input_kwargs)
    else:
        raise TypeError(f"input_kwargs must be a dict of keyword arguments or None, got "
                        f"{type(input_kwargs).__name__}.")
    return args, kwargs


_thread = threading.local()


def active_pass():
    """The capture state of the forward pass this thread is logging, or None.

    Every capture backend registers its pass here for the duration of the
    forward (:func:`set_active_pass`), so that any entry point or reader can
    refuse to run inside a pass being logged, whichever backend logs it.

    Examples
    --------
    >>> active_pass() is None
    True
    """
    return getattr(_thread, "capture", None)


def set_active_pass(capture):
    """Mark this thread as logging the pass ``capture`` (None when it ends)."""
    _thread.capture = capture


def refuse_inside_logged_pass(what):
    """Raise ``RuntimeError`` when this thread is inside a logged forward pass.

    Examples
    --------
    >>> refuse_inside_logged_pass("log_forward_pass")
    """
    if active_pass() is not None:
        raise RuntimeError(
            f"{what} cannot run inside a logged forward pass: this forward pass is already being "
            "logged. Call it outside the model's forward (the outer log is unaffected).")


AUTOCAST_DEVICES = ("cpu", "cuda")
"""Device types whose autocast state is recorded per call."""

_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None)


def autocast_state():
    """``((device_type, dtype), ...)`` for each device type autocast is on for, or None.

    Examples
    --------
    >>> import torch
    >>> autocast_state() is None
    True
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     autocast_state()
    (('cpu', torch.bfloat16),)
    """
    if _any_autocast is not None and not _any_autocast():
        return None
    enabled = tuple((device, torch.get_autocast_dtype(device)) for device in AUTOCAST_DEVICES
                    if torch.is_autocast_enabled(device))
    return enabled or None
