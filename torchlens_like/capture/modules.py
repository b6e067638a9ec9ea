"""Module bookkeeping during a logged forward pass.

Module entry and exit are tracked by giving every submodule, while a pass
needs it, an instance attribute ``forward`` that wraps its own forward
(``nn.Module.__call__`` looks ``forward`` up on the instance first). The
attribute is deleted again in a ``finally`` block (or the module's own
instance-level ``forward``, if it had one, is put back), so the model ends
exactly as it was. Forward hooks would do the same job but push every module
call onto PyTorch's slow hook-dispatch path, which costs several
microseconds per call. What a module returns is taken from its forward,
before any forward hooks the user registered.

A module has one wrapper however many passes log it at once: passes in
several threads (over the same model, or models sharing submodules) share
it, and the last pass to finish puts the module's own ``forward`` back. The
wrapper hands each call to the tracker of the calling thread's pass; a
thread that is not logging, or whose model does not contain the module,
goes straight to the original forward.

When a module raises, the stack at that moment is kept for the error message
and the module is closed, so a model that catches the exception carries on
with the right containing modules.
"""

from __future__ import annotations

import os
import threading

import torch
from torch import nn

from ..model_builders import is_model_builder
from ..nested import find_tensors
from ..records import ModuleCall, Parameter

_Tensor = torch.Tensor
_new_tuple = tuple.__new__


def prepare_model(model):
    """Return the object to run: ``model`` itself or the module it wraps.

    ``DataParallel``/``DistributedDataParallel`` and ``torch.compile`` wrappers
    are unwrapped (the wrapped module computes the same function); TorchScript
    is refused because its ops run outside Python where they cannot be seen.

    Examples
    --------
    >>> from torch import nn
    >>> inner = nn.Linear(2, 2)
    >>> prepare_model(nn.DataParallel(inner)) is inner
    True
    >>> prepare_model(nn.Linear)
    Traceback (most recent call last):
    ...
    TypeError: model is the class Linear, not a model: pass an instance, e.g. Linear(...), not Linear.
    """
    refuse_non_models(model)
    if isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise TypeError(
            "log_forward_pass cannot log a TorchScript model: its operations run inside the "
            "TorchScript interpreter, out of reach of Python. Pass the original nn.Module "
            "(the one you gave to torch.jit.script / torch.jit.trace) instead.")
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return prepare_model(model.module)
    original = getattr(model, "_orig_mod", None)
    if isinstance(original, nn.Module):
        return prepare_model(original)
    original = getattr(model, "_torchdynamo_orig_callable", None)
    if original is not None and callable(original):
        return prepare_model(original)
    if isinstance(model, nn.Module) or callable(model):
        return model
    raise TypeError(
        f"model must be a torch.nn.Module or a callable, got {type(model).__name__}. "
        "Pass the model object itself, e.g. log_forward_pass(torchvision.models.resnet18(), x).")


def refuse_non_models(model):
    """A clear TypeError for the usual mix-ups, before anything runs."""
    if isinstance(model, type):
        name = model.__name__
        raise TypeError(f"model is the class {name}, not a model: pass an instance, e.g. "
                        f"{name}(...), not {name}.")
    if isinstance(model, (str, bytes, os.PathLike)):
        raise TypeError(
            f"model is the {type(model).__name__} {model!r}, not a model: build it first, e.g. "
            "torchvision.models.resnet18() (a saved history is read with tll.load_history).")
    if isinstance(model, torch.Tensor):
        raise TypeError("model is a tensor: the model comes first and the input second, e.g. "
                        "log_forward_pass(model, x).")
    if is_model_builder(model):
        name = f"{model.__module__}.{model.__qualname__}"
        raise TypeError(f"model is the function {name}, which builds a model, not a model: call "
                        f"it first, e.g. log_forward_pass({model.__name__}(), x).")


def model_name(model):
    """Class name of a module, or ``__name__`` of a plain callable."""
    if isinstance(model, nn.Module):
        return type(model).__name__
    return getattr(model, "__name__", type(model).__name__)


class ModuleTracker:
    """Wraps every submodule's forward for one pass and keeps the module stack.

    Each module call is a :class:`~torchlens_like.records.ModuleCall`, made
    here once when the call starts. ``session.module_stack`` is a tuple of
    them, outermost first; each op node shares the tuple current at its call.
    ``outputs_by_call`` maps each call to the nodes whose tensors it
    returned, in the order of its output structure. ``parameters`` maps
    ``id(tensor)`` to the tensor's :class:`~torchlens_like.records.Parameter`
    record and ``buffers`` to the buffer's address in the model (first
    address wins for shared tensors, as in ``named_parameters``).
    The session is attached with :meth:`attach` once it exists.
    """

    def __init__(self, model):
        self.session = None
        self.addresses = {}
        self.module_types = {}
        self.call_counts = {}
        self.outputs_by_call = {}
        self.parameters = {}
        self.buffers = {}
        self._installed = []
        if isinstance(model, nn.Module):
            self._walk(model)

    def _walk(self, model):
        """Read every submodule's address and type, and every parameter and buffer.

        Pre-order, each module once at its first address (as ``named_modules``
        lists them), recursing as ``named_modules`` does.
        """
        self._visit(model, "", {id(model)})

    def _visit(self, module, prefix, seen):
        if module._parameters:
            parameters = self.parameters
            for name, tensor in module._parameters.items():
                if tensor is not None and id(tensor) not in parameters:
                    parameters[id(tensor)] = _new_tuple(
                        Parameter, (prefix + name, tuple(tensor.shape), _nbytes(tensor)))
        if module._buffers:
            buffers = self.buffers
            for name, tensor in module._buffers.items():
                if tensor is not None and id(tensor) not in buffers:
                    buffers[id(tensor)] = prefix + name
        for name, child in module._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                address = prefix + name
                self.addresses[child] = address
                self.module_types[address] = type(child).__name__
                self._visit(child, address + ".", seen)

    def attach(self, session):
        """Keep the module stack and module outputs of ``session``."""
        self.session = session

    def install(self):
        """Route this thread's calls of every submodule through this tracker.

        :meth:`remove` undoes it; both must run in the thread of the pass.
        """
        self.wrap()
        self.activate()

    def remove(self):
        self.deactivate()
        self.unwrap()

    def wrap(self):
        """Give every submodule the shared forward wrapper (counted; :meth:`unwrap` undoes it).

        A wrapper runs the plain forward unless the calling thread has an
        active tracker, so wrapping alone changes no call's result.
        """
        try:
            with _wrappers_lock:
                for module, address in self.addresses.items():
                    entry = _wrappers.get(id(module))
                    if entry is None:
                        own = module.__dict__.get("forward", _ABSENT)
                        module.__dict__["forward"] = _wrapper(module, module.forward, self,
                                                              address)
                        entry = _wrappers[id(module)] = [own, 0]
                    entry[1] += 1
                    self._installed.append(module)
        except BaseException:
            self.unwrap()
            raise

    def unwrap(self):
        with _wrappers_lock:
            for module in reversed(self._installed):
                entry = _wrappers[id(module)]
                entry[1] -= 1
                if entry[1] == 0:
                    del _wrappers[id(module)]
                    if entry[0] is _ABSENT:
                        module.__dict__.pop("forward", None)
                    else:
                        module.__dict__["forward"] = entry[0]
            self._installed.clear()

    def activate(self):
        """Make this tracker the one the calling thread's module calls go through."""
        _this_thread.tracker = self

    @staticmethod
    def deactivate():
        _this_thread.tracker = None

    def call(self, address, forward, args, kwargs):
        """Run one module call of this pass, keeping the module stack and its outputs."""
        session = self.session
        outer = session.module_stack
        counts = self.call_counts
        count = counts[address] = counts.get(address, 0) + 1
        entry = ModuleCall(address, count)
        session.module_stack = outer + (entry,)
        session.trace.add_module(len(session.trace.funcs), address)
        try:
            output = forward(*args, **kwargs)
        except BaseException as exc:
            session.note_failure(exc)
            session.module_stack = outer
            raise
        session.module_stack = outer
        if session.edit_hook is not None:
            with torch._C.DisableTorchFunction():
                output = session.edit_hook.after_module(session, entry, output)
        if type(output) is _Tensor:
            node = session.resolver.lookup(output)
            if node is None:
                produced = []
            else:
                produced = [node]
                _add_module_output(node, entry)
        else:
            produced = _produced_nodes(session, entry, output)
        self.outputs_by_call[entry] = produced
        return output


def _wrapper(module, forward, installer, address):
    """The ``forward`` a module has while passes log it: the calling thread's tracker runs it.

    The tracker that installed it knows the module's address already; a pass
    in another thread sharing the module looks it up in its own tracker.
    """
    def logged_forward(*args, **kwargs):
        tracker = getattr(_this_thread, "tracker", None)
        if tracker is not None:
            found = address if tracker is installer else tracker.addresses.get(module)
            if found is not None and tracker.session.active:
                return tracker.call(found, forward, args, kwargs)
        return forward(*args, **kwargs)

    logged_forward.__wrapped__ = forward
    return logged_forward


def _produced_nodes(session, entry, output):
    """The nodes whose tensors a module call returned; each learns it is that call's output."""
    lookup = session.resolver.lookup
    produced = []
    for _, tensor in find_tensors(output):
        node = lookup(tensor)
        if node is not None:
            produced.append(node)
            _add_module_output(node, entry)
    return produced


def _add_module_output(node, entry):
    calls = node.module_passes_output
    if entry not in calls:
        calls.append(entry)


def _nbytes(tensor):
    try:
        return tensor.nbytes
    except (RuntimeError, NotImplementedError):
        return tensor.numel() * tensor.element_size()


_ABSENT = object()
_this_thread = threading.local()
_wrappers_lock = threading.Lock()
_wrappers = {}
