"""Run one forward pass under capture and return the session's records."""

from __future__ import annotations

import torch
from torch import nn

from .modules import ModuleTracker
from .session import (UNSEEN_FACTORIES, CaptureMode, CaptureSession, active_session,
                      wrap_unseen_factory)


def capture_forward(runner, args, kwargs, save):
    """Run ``runner(*args, **kwargs)`` with every torch call recorded.

    Returns ``(session, tracker)``. Whatever happens, the interception mode,
    the module hooks and the factory stand-ins are gone when this returns or
    raises.
    """
    params, buffers = {}, {}
    if isinstance(runner, nn.Module):
        params = {id(p): name for name, p in runner.named_parameters()}
        buffers = {id(b): name for name, b in runner.named_buffers()}
    session = CaptureSession(params, buffers, save)
    tracker = ModuleTracker(runner, session)
    with active_session(session):
        session.add_inputs(args, kwargs)
        originals = {name: getattr(torch, name) for name in UNSEEN_FACTORIES}
        try:
            tracker.install()
            for name, original in originals.items():
                setattr(torch, name, wrap_unseen_factory(session, name, original))
            with CaptureMode(session):
                output = runner(*args, **kwargs)
        except Exception as exc:
            session.annotate(exc, "a line of the model's own code (not a torch call)")
            raise
        finally:
            for name, original in originals.items():
                setattr(torch, name, original)
            tracker.remove()
    session.add_outputs(output)
    session.finish()
    return session, tracker
