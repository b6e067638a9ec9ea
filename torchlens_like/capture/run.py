"""The torch capture backend: one forward pass under capture, returned as neutral records."""

from __future__ import annotations

from torch import nn

from ..model_state import copy_buffers, copy_tensors, restore_buffers
from ..nested import find_tensors
from ..records import CaptureResult
from .gradients import GradientRecorder
from .lean import LeanPlan
from .modules import ModuleTracker, model_name, prepare_model
from .replay import keep_versions
from .session import CaptureMode, CaptureSession, ForwardStopped, active_session
from .standins import standins

_FOREIGN_FRAMEWORKS = ("keras", "tensorflow", "tf_keras", "jax", "flax")


def capture_forward(runner, args, kwargs, save, stop_when_saved=False, edit_hook=None,
                    gradients=False):
    """Run ``runner(*args, **kwargs)`` with every torch call recorded.

    Returns a :class:`~torchlens_like.records.CaptureResult`. Whatever
    happens, the interception mode, the module hooks and the stand-ins are
    gone when this returns or raises. With ``stop_when_saved`` and a set
    ``save``, the forward pass is cut short once the last of those nodes is
    saved: the nodes then end there and there are no output nodes.
    ``edit_hook`` changes values as they are made (see :class:`.CaptureSession`).
    With ``gradients``, the pass keeps what a later backward needs (see
    :mod:`.gradients`): the model runs on copies of the floating-point
    inputs, and ``CaptureResult.gradients`` is the
    :class:`~.gradients.GradientRecorder` holding the autograd graph.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    >>> result = capture_forward(model, (torch.ones(1, 3),), {}, {1}, stop_when_saved=True)
    >>> [(n.func_name, n.tensor_dtype, n.has_saved_activation) for n in result.nodes]
    [('input', 'float32', False), ('linear', 'float32', True)]
    >>> result = capture_forward(model, (torch.ones(1, 3),), {}, None)
    >>> result.backend, [str(call) for call in result.module_outputs], len(result.nodes)
    ('torch', ['0:1', '1:1'], 4)
    """
    recorder = None
    if gradients:
        recorder = GradientRecorder()
        args, kwargs = recorder.copy_inputs(args, kwargs)
    tracker = ModuleTracker(runner)
    session = CaptureSession(save, tracker.parameters, tracker.buffers, stop_when_saved)
    session.edit_hook = edit_hook
    session.gradients = recorder
    tracker.attach(session)
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
        if recorder is not None:
            recorder.keep_output(output)
        del output
    keep_versions(session.nodes, session.resolver.versions, session.weights_written())
    session.finish()
    return CaptureResult(
        nodes=session.nodes, model_name=model_name(runner), backend=TorchBackend.name,
        module_outputs=tracker.outputs_by_call, module_types=tracker.module_types,
        parameters=list(tracker.parameters.values()), call_trace=session.trace,
        gradients=recorder)


class TorchBackend:
    """Captures a ``torch.nn.Module`` or a plain Python callable doing torch calls."""

    name = "torch"
    seed_note = None
    supports_gradients = True

    @staticmethod
    def accepts(model):
        """An ``nn.Module`` (any wrapper included), or a callable of no other framework.

        Examples
        --------
        >>> import torch
        >>> TorchBackend.accepts(torch.nn.ReLU()), TorchBackend.accepts(torch.relu)
        (True, True)
        """
        if isinstance(model, nn.Module):
            return True
        root = (type(model).__module__ or "").split(".")[0]
        return callable(model) and root not in _FOREIGN_FRAMEWORKS

    prepare = staticmethod(prepare_model)
    capture = staticmethod(capture_forward)

    @staticmethod
    def lean_plan(runner, history, positions):
        """A :class:`~.lean.LeanPlan` keeping ``positions`` over the graph ``history`` logged.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> model = torch.nn.Sequential(torch.nn.ReLU())
        >>> history = tll.log_forward_pass(model, torch.ones(1))
        >>> TorchBackend.lean_plan(model, history, [1]).path
        'module_outputs'
        """
        return LeanPlan(history, positions, runner)

    @staticmethod
    def keep_state(runner, args, kwargs):
        """Copy what a forward may write into (buffers, input tensors); return the restorer.

        Examples
        --------
        >>> import torch
        >>> x = torch.zeros(2)
        >>> restore = TorchBackend.keep_state(torch.nn.ReLU(), (x,), {})
        >>> _ = x.add_(1); restore(); x
        tensor([0., 0.])
        """
        state = copy_buffers(runner) + copy_tensors(t for _, t in find_tensors((args, kwargs)))
        return lambda: restore_buffers(state)

    @staticmethod
    def plain_outputs(runner, args, kwargs):
        """``{path in the return value: tensor}`` of one plain call, detached copies.

        Examples
        --------
        >>> import torch
        >>> TorchBackend.plain_outputs(torch.nn.ReLU(), (torch.tensor([-1.0, 2.0]),), {})
        {(): tensor([0., 2.])}
        """
        return {path: tensor.detach().clone()
                for path, tensor in find_tensors(runner(*args, **kwargs))}
