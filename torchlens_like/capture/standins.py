"""Attributes of torch replaced while any thread is logging a pass.

Two kinds, each acting only for the thread whose pass is being logged (any
other thread gets the original behaviour through the same object):

* ``torch.from_numpy``, ``torch.frombuffer`` and ``torch.from_dlpack`` are not
  routed through torch-function modes, so stand-ins record their outputs as
  internally generated tensors.
* ``torch.overrides.has_torch_function`` is what ``nn.MultiheadAttention`` and
  ``nn.TransformerEncoderLayer`` consult before taking their fused fast path.
  An active mode would make it answer True and send the model down the slow
  path, changing the numbers; the stand-in answers as if the capture mode were
  not there, so the logged pass computes exactly what a plain forward does
  (the fused kernel then appears as one op).

The stand-ins find the logging session of the calling thread themselves, so
passes logged in several threads at once share one installation: the first
:func:`standins` to enter installs them, the last to leave puts the originals
back, error or not.
"""

from __future__ import annotations

import contextlib
import threading
import time

import torch

from .session import current_session

_UNSEEN_FACTORIES = ("from_numpy", "frombuffer", "from_dlpack")
_lock = threading.Lock()
_installed = {"holders": 0, "originals": []}


def _factory_standin(name, original):
    def factory(*args, **kwargs):
        session = current_session()
        if session is None:
            return original(*args, **kwargs)
        start = time.perf_counter()
        out = original(*args, **kwargs)
        session.record_factory(original, name, args, kwargs, out, time.perf_counter() - start)
        return out

    factory.__name__ = name
    factory.__doc__ = original.__doc__
    factory.__wrapped__ = original
    return factory


def _has_torch_function_standin(original):
    def has_torch_function(args):
        session = current_session()
        if session is not None and session.active and _capture_mode_on_top(session):
            with torch.overrides._pop_mode_temporarily():
                return original(args)
        return original(args)

    has_torch_function.__doc__ = original.__doc__
    has_torch_function.__wrapped__ = original
    return has_torch_function


def _capture_mode_on_top(session):
    depth = torch._C._len_torch_function_stack()
    if depth == 0:
        return False
    top = torch._C._get_function_stack_at(depth - 1)
    return getattr(top, "session", None) is session


def _install():
    originals = [(torch, name, getattr(torch, name)) for name in _UNSEEN_FACTORIES]
    originals.append((torch.overrides, "has_torch_function",
                      torch.overrides.has_torch_function))
    try:
        for owner, name, original in originals:
            if owner is torch.overrides:
                setattr(owner, name, _has_torch_function_standin(original))
            else:
                setattr(owner, name, _factory_standin(name, original))
    except BaseException:
        _restore(originals)
        raise
    return originals


def _restore(originals):
    for owner, name, original in originals:
        setattr(owner, name, original)


@contextlib.contextmanager
def standins():
    """Have the stand-ins installed inside; the originals are back once no thread needs them.

    Examples
    --------
    >>> import torch
    >>> original = torch.from_numpy
    >>> with standins():
    ...     torch.from_numpy is original
    False
    >>> torch.from_numpy is original
    True
    """
    with _lock:
        if _installed["holders"] == 0:
            _installed["originals"] = _install()
        _installed["holders"] += 1
    try:
        yield
    finally:
        with _lock:
            _installed["holders"] -= 1
            if _installed["holders"] == 0:
                _restore(_installed["originals"])
                _installed["originals"] = []
