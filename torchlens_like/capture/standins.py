"""Attributes of torch replaced for the duration of one logged pass.

Two kinds, each acting only in the logging thread (other threads get the
original behaviour through the same object):

* ``torch.from_numpy``, ``torch.frombuffer`` and ``torch.from_dlpack`` are not
  routed through torch-function modes, so stand-ins record their outputs as
  internally generated tensors.
* ``torch.overrides.has_torch_function`` is what ``nn.MultiheadAttention`` and
  ``nn.TransformerEncoderLayer`` consult before taking their fused fast path.
  An active mode would make it answer True and send the model down the slow
  path, changing the numbers; the stand-in answers as if the capture mode were
  not there, so the logged pass computes exactly what a plain forward does
  (the fused kernel then appears as one op).

Everything is put back by :func:`standins` on exit, error or not.
"""

from __future__ import annotations

import contextlib
import threading
import time

import torch

_UNSEEN_FACTORIES = ("from_numpy", "frombuffer", "from_dlpack")


def _factory_standin(session, name, original):
    def factory(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        session.record_factory(original, name, args, kwargs, out, time.perf_counter() - start)
        return out

    factory.__name__ = name
    factory.__doc__ = original.__doc__
    factory.__wrapped__ = original
    return factory


def _has_torch_function_standin(session, mode, original):
    def has_torch_function(args):
        if (session.active and threading.get_ident() == session.thread
                and torch._C._len_torch_function_stack() > 0
                and torch._C._get_function_stack_at(
                    torch._C._len_torch_function_stack() - 1) is mode):
            with torch.overrides._pop_mode_temporarily():
                return original(args)
        return original(args)

    has_torch_function.__doc__ = original.__doc__
    has_torch_function.__wrapped__ = original
    return has_torch_function


@contextlib.contextmanager
def standins(session, mode):
    """Install the stand-ins for one pass; restore the originals on exit.

    Examples
    --------
    >>> import torch
    >>> from torchlens_like.capture.session import CaptureSession, CaptureMode
    >>> session = CaptureSession(); original = torch.from_numpy
    >>> with standins(session, CaptureMode(session)):
    ...     torch.from_numpy is original
    False
    >>> torch.from_numpy is original
    True
    """
    replaced = [(torch, name, getattr(torch, name)) for name in _UNSEEN_FACTORIES]
    replaced.append((torch.overrides, "has_torch_function", torch.overrides.has_torch_function))
    try:
        for owner, name, original in replaced:
            if owner is torch.overrides:
                setattr(owner, name, _has_torch_function_standin(session, mode, original))
            else:
                setattr(owner, name, _factory_standin(session, name, original))
        yield
    finally:
        for owner, name, original in replaced:
            setattr(owner, name, original)
