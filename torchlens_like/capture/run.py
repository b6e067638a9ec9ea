"""Run one forward pass under capture and return the session (its nodes) and tracker."""

from __future__ import annotations

from .modules import ModuleTracker
from .session import CaptureMode, CaptureSession, ForwardStopped, active_session
from .standins import standins


def capture_forward(runner, args, kwargs, save, stop_when_saved=False):
    """Run ``runner(*args, **kwargs)`` with every torch call recorded.

    Returns ``(session, tracker)``. Whatever happens, the interception mode,
    the module hooks and the stand-ins are gone when this returns or raises.
    With ``stop_when_saved`` and a set ``save``, the forward pass is cut short
    once the last of those nodes is saved: ``session.nodes`` then ends there
    and has no output nodes.
    """
    session = CaptureSession(save, stop_when_saved)
    tracker = ModuleTracker(runner, session)
    session.set_model_tensors(tracker.parameters, tracker.buffers)
    stopped = False
    with active_session(session):
        mode = CaptureMode(session)
        try:
            session.add_inputs(args, kwargs)
            tracker.install()
            with standins(), mode:
                output = runner(*args, **kwargs)
        except ForwardStopped:
            stopped = True
        except Exception as exc:
            session.annotate(exc, "a line of the model's own code (not a torch call)")
            raise
        finally:
            tracker.remove()
    if not stopped:
        session.add_outputs(output)
        del output
    session.finish()
    return session, tracker
