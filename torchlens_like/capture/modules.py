"""Module bookkeeping during a logged forward pass.

Module entry and exit are tracked with forward pre-hooks and forward hooks
registered on every submodule for the duration of one pass and removed in a
``finally`` block, so the model's own hook dictionaries end up exactly as they
were. The hooks act only in the thread that is logging, so the same model
running in another thread is unaffected.

A module that raises keeps its entry on the stack: the stack at the moment of
an error is what the error message reports. A module whose exception the
model catches is closed when an enclosing module exits.
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
    """Installs entry/exit hooks on every submodule and keeps the module stack.

    ``session.module_stack`` is a tuple of ``"address:pass"`` strings,
    outermost first; each op node shares the tuple current at its call.
    ``outputs_by_call`` maps ``"address:pass"`` to the nodes whose tensors
    that call returned, in the order of its output structure. ``parameters``
    and ``buffers`` map ``id(tensor)`` to the tensor's address in the model
    (first address wins for shared tensors, as in ``named_parameters``).
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
        self._handles = []
        if isinstance(model, nn.Module):
            for address, module in model.named_modules():
                prefix = address + "." if address else ""
                for kind, tensors in ((self.parameters, module._parameters),
                                      (self.buffers, module._buffers)):
                    for name, tensor in tensors.items():
                        if tensor is not None and id(tensor) not in kind:
                            kind[id(tensor)] = prefix + name
                if address:
                    self.addresses[module] = address
                    self.module_types[address] = type(module).__name__

    def install(self):
        try:
            for module in self.addresses:
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(self._exit))
        except BaseException:
            self.remove()
            raise

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _enter(self, module, args):
        if threading.get_ident() != self.thread or not self.session.active:
            return
        address = self.addresses[module]
        count = self.call_counts.get(address, 0) + 1
        self.call_counts[address] = count
        self.session.module_stack = self.session.module_stack + (f"{address}:{count}",)

    def _exit(self, module, args, output):
        if threading.get_ident() != self.thread or not self.session.active:
            return
        session = self.session
        address = self.addresses[module]
        stack = session.module_stack
        prefix = address + ":"
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth].startswith(prefix) and ":" not in stack[depth][len(prefix):]:
                entry = stack[depth]
                session.module_stack = stack[:depth]
                break
        else:
            return
        produced = []
        for _, tensor in find_tensors(output):
            node = session.lookup(tensor)
            if node is not None:
                produced.append(node)
                if entry not in node.module_passes_output:
                    node.module_passes_output.append(entry)
        self.outputs_by_call[entry] = produced
