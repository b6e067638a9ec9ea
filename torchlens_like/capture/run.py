"""Run one forward pass under capture and return the session (its nodes) and tracker."""

from __future__ import annotations

from .modules import ModuleTracker
from .session import CaptureMode, CaptureSession, active_session
from .standins import standins


def capture_forward(runner, args, kwargs, save):
    """Run ``runner(*args, **kwargs)`` with every torch call recorded.

    Returns ``(session, tracker)``. Whatever happens, the interception mode,
    the module hooks and the stand-ins are gone when this returns or raises.
    """
    session = CaptureSession(save)
    tracker = ModuleTracker(runner, session)
    session.set_model_tensors(tracker.parameters, tracker.buffers)
    with active_session(session):
        session.add_inputs(args, kwargs)
        mode = CaptureMode(session)
        try:
            tracker.install()
            with standins(), mode:
                output = runner(*args, **kwargs)
        except Exception as exc:
            session.annotate(exc, "a line of the model's own code (not a torch call)")
            raise
        finally:
            tracker.remove()
    session.add_outputs(output)
    del output
    session.finish()
    return session, tracker
