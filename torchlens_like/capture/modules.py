"""Module bookkeeping during a logged forward pass.

Module entry and exit are tracked by giving every submodule, for the duration
of one pass, an instance attribute ``forward`` that wraps its own forward
(``nn.Module.__call__`` looks ``forward`` up on the instance first). The
attribute is deleted again in a ``finally`` block (or the module's own
instance-level ``forward``, if it had one, is put back), so the model ends
exactly as it was. Forward hooks would do the same job but push every module
call onto PyTorch's slow hook-dispatch path, which costs several
microseconds per call. The wrappers act only in the thread that is logging;
another thread calling the same model goes straight to the original forward.
What a module returns is taken from its forward, before any forward hooks
the user registered.

Passes logged at the same time in several threads never wrap the same module
twice: a pass waits until no other pass has any of its modules wrapped, so
every wrapper is removed by the pass that installed it.

When a module raises, the stack at that moment is kept for the error message
and the module is closed, so a model that catches the exception carries on
with the right containing modules.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from .arguments import find_tensors


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
    """
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


def model_name(model):
    """Class name of a module, or ``__name__`` of a plain callable."""
    if isinstance(model, nn.Module):
        return type(model).__name__
    return getattr(model, "__name__", type(model).__name__)


class ModuleTracker:
    """Wraps every submodule's forward for one pass and keeps the module stack.

    ``session.module_stack`` is a tuple of ``"address:pass"`` strings,
    outermost first; each op node shares the tuple current at its call.
    ``outputs_by_call`` maps ``"address:pass"`` to the nodes whose tensors
    that call returned, in the order of its output structure. ``parameters``
    and ``buffers`` map ``id(tensor)`` to the tensor's address in the model
    (first address wins for shared tensors, as in ``named_parameters``);
    ``num_params`` and ``params_bytes`` total the distinct parameters.
    """

    def __init__(self, model, session):
        self.session = session
        self.thread = threading.get_ident()
        self.addresses = {}
        self.module_types = {}
        self.call_counts = {}
        self.outputs_by_call = {}
        self.parameters = {}
        self.buffers = {}
        self.num_params = 0
        self.params_bytes = 0
        self._installed = []
        self._holding = set()
        if isinstance(model, nn.Module):
            for address, module in _named_modules(model):
                prefix = address + "." if address else ""
                for name, tensor in module._parameters.items():
                    if tensor is not None and id(tensor) not in self.parameters:
                        self.parameters[id(tensor)] = prefix + name
                        self.num_params += tensor.numel()
                        self.params_bytes += tensor.numel() * tensor.element_size()
                for name, tensor in module._buffers.items():
                    if tensor is not None and id(tensor) not in self.buffers:
                        self.buffers[id(tensor)] = prefix + name
                if address:
                    self.addresses[module] = address
                    self.module_types[address] = type(module).__name__

    def install(self):
        """Wrap every submodule's forward; :meth:`remove` undoes it.

        Waits while another thread's pass has any of these modules wrapped,
        so each wrapper is removed by the pass that installed it.
        """
        wanted = {id(module) for module in self.addresses}
        with _wrapping:
            _wrapping.wait_for(lambda: not wanted & _wrapped_now)
            _wrapped_now.update(wanted)
        self._holding = wanted
        try:
            for module, address in self.addresses.items():
                own = module.__dict__.get("forward", _ABSENT)
                self._installed.append((module, own))
                module.__dict__["forward"] = self._wrap(module.forward, address)
        except BaseException:
            self.remove()
            raise

    def remove(self):
        for module, own in reversed(self._installed):
            if own is _ABSENT:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = own
        self._installed.clear()
        with _wrapping:
            _wrapped_now.difference_update(self._holding)
            self._holding = set()
            _wrapping.notify_all()

    def _wrap(self, forward, address):
        session = self.session
        thread = self.thread
        call_counts = self.call_counts
        outputs_by_call = self.outputs_by_call
        get_ident = threading.get_ident

        def logged_forward(*args, **kwargs):
            if get_ident() != thread or not session.active:
                return forward(*args, **kwargs)
            outer = session.module_stack
            count = call_counts[address] = call_counts.get(address, 0) + 1
            entry = f"{address}:{count}"
            session.module_stack = outer + (entry,)
            try:
                output = forward(*args, **kwargs)
            except BaseException as exc:
                session.note_failure(exc)
                session.module_stack = outer
                raise
            session.module_stack = outer
            outputs_by_call[entry] = _produced_nodes(session, entry, output)
            return output

        logged_forward.__wrapped__ = forward
        return logged_forward


def _produced_nodes(session, entry, output):
    """The nodes whose tensors a module call returned; each learns it is that call's output."""
    found = ((None, output),) if isinstance(output, torch.Tensor) else find_tensors(output)
    produced = []
    for _, tensor in found:
        node = session.lookup(tensor)
        if node is not None:
            produced.append(node)
            if entry not in node.module_passes_output:
                node.module_passes_output.append(entry)
    return produced


def _named_modules(model):
    """``(address, module)`` for ``model`` and every submodule, as ``named_modules`` lists them.

    Pre-order, each module once (at its first address), without the cost of
    ``named_modules``' nested generators.

    Examples
    --------
    >>> from torch import nn
    >>> [address for address, _ in _named_modules(nn.Sequential(nn.ReLU(), nn.Sequential(nn.ReLU())))]
    ['', '0', '1', '1.0']
    """
    found, seen = [], set()

    def visit(module, address):
        if id(module) in seen:
            return
        seen.add(id(module))
        found.append((address, module))
        for name, child in module._modules.items():
            if child is not None:
                visit(child, f"{address}.{name}" if address else name)

    visit(model, "")
    return found


_ABSENT = object()
_wrapping = threading.Condition()
_wrapped_now = set()
