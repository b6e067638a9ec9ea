"""Argument resolution: which node, parameter or constant each tensor argument is.

Tensors are identified by ``id`` plus a weak reference (so a recycled id is
never mistaken for a tensor of this pass), with nothing attached to the
tensors themselves. Each tensor gets one :class:`~torchlens_like.records.ArgSlot`
for the whole pass, shared by every call that reads it: a layer's slot when a
node of this pass produced it, a parameter's slot, or a constant's slot. The
tensor values of parameter and constant slots go into one dict,
:attr:`ArgumentResolver.values`, which the nodes' replay records share.

Buffers become layers the first time an op reads them, saved as a copy (they
are small and ``batch_norm`` updates running statistics in place inside one
call). A buffer whose version moved since is read as a new buffer layer.
"""

from __future__ import annotations

import weakref

import torch

from ..model_state import tensor_version
from ..nested import map_nested
from ..records import ArgSlot

_Tensor = torch.Tensor
ATOMS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.Size,
                   torch.layout, torch.memory_format, slice, type(Ellipsis)})
"""Argument types that never hold a tensor (skipped without a look inside)."""


class ArgumentResolver:
    """Maps the tensors of one pass to argument slots.

    Parameters
    ----------
    parameters : dict
        ``{id(tensor): Parameter}`` for the model's parameters.
    buffers : dict
        ``{id(tensor): address}`` for the model's buffers.
    add_buffer : bound method
        ``add_buffer(tensor, address)``: makes and registers the layer of a
        buffer the first time it is read (held weakly: no reference cycle
        with the session).
    """

    def __init__(self, parameters, buffers, add_buffer):
        self.parameters = parameters
        self.buffers = buffers
        self.values = {}
        self.versions = {}
        self._add_buffer = weakref.WeakMethod(add_buffer)
        self._table = {}
        self._buffer_versions = {}
        self._shared_slots = {}

    def lookup(self, tensor):
        """The node that produced ``tensor`` in this pass, or None."""
        entry = self._table.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def register(self, node, tensor):
        """Record that ``node`` produced ``tensor``; return the tensor's new slot."""
        slot = ArgSlot("layer", node)
        self._table[id(tensor)] = (weakref.ref(tensor), node, slot)
        if node.kind == "buffer":
            self._buffer_versions[node] = tensor_version(tensor)
        return slot

    def keep_buffer_value(self, tensor):
        """A write into ``tensor`` (a buffer's view) is recorded as a node of its own.

        The buffer's layer keeps the value from before the write (the old
        base of that node), so the moved version does not make a new buffer layer.
        """
        entry = self._table.get(id(tensor))
        if entry is not None and entry[1].kind == "buffer":
            self._buffer_versions[entry[1]] = tensor_version(tensor)

    def slot(self, tensor):
        """The argument slot for one tensor argument of a call (shared, never modified)."""
        key = id(tensor)
        entry = self._table.get(key)
        if entry is not None and entry[0]() is tensor:
            node = entry[1]
            if node.kind != "buffer" or self._buffer_versions[node] == tensor_version(tensor):
                return entry[2]
        slot = self._shared_slots.get(key)
        if slot is not None:
            return slot
        return self._first_read(tensor, key)

    def _first_read(self, tensor, key):
        """The slot of a tensor no node of this pass produced, read for the first time."""
        parameter = self.parameters.get(key)
        if parameter is not None:
            slot = ArgSlot("param", parameter, parameter.address)
        else:
            address = self.buffers.get(key)
            if address is not None:
                self._add_buffer()(tensor, address)
                return self._table[key][2]
            slot = ArgSlot("const", None, f"tensor{tuple(tensor.shape)}")
        self._shared_slots[key] = slot
        self.values[slot] = tensor
        self.versions[slot] = tensor_version(tensor)
        return slot

    def resolve_call(self, args, kwargs):
        """Before a call runs: its arguments with every tensor swapped for its slot.

        Resolving before the call means a buffer the call writes into is
        read as it was, and parents are the values the call consumed. The
        arguments are walked once: what :func:`~torchlens_like.records.connect`
        would derive from them comes out too. Returns ``(args, kwargs,
        positions, params)``: ``positions`` is ``{parent node: position}``
        (an argument index, a keyword, or a tuple path into a nested
        argument; a parent read twice keeps its first position) and
        ``params`` the :class:`~torchlens_like.records.Parameter` records of
        the parameter slots, in argument order.
        """
        positions = {}
        params = []
        targs = list(args)
        table = self._table
        shared = self._shared_slots
        for i, arg in enumerate(targs):
            if type(arg) in ATOMS:
                continue
            if isinstance(arg, _Tensor):
                key = id(arg)
                entry = table.get(key)
                if entry is not None and entry[0]() is arg:
                    node = entry[1]
                    if node.kind != "buffer" or self._buffer_versions[node] == tensor_version(arg):
                        if node not in positions:
                            positions[node] = i
                        targs[i] = entry[2]
                        continue
                slot = shared.get(key)
                if slot is None:
                    slot = self._first_read(arg, key)
                targs[i] = slot
                kind = slot.kind
                if kind == "param":
                    params.append(slot.ref)
                elif kind == "layer" and slot.ref not in positions:
                    positions[slot.ref] = i
            elif isinstance(arg, (tuple, list)) and _flat(arg):
                continue
            elif isinstance(arg, (tuple, list, dict)):
                targs[i] = self._nested(arg, (i,), positions, params)
        if not kwargs:
            return tuple(targs), {}, positions, params
        tkwargs = {}
        for key, value in kwargs.items():
            if isinstance(value, _Tensor):
                tkwargs[key] = slot = self.slot(value)
                _note(slot, key, positions, params)
            elif type(value) in ATOMS or not isinstance(value, (tuple, list, dict)):
                tkwargs[key] = value
            else:
                tkwargs[key] = self._nested(value, (key,), positions, params)
        return tuple(targs), tkwargs, positions, params

    def _nested(self, value, path, positions, params):
        def leaf_slot(tensor, leaf_path):
            slot = self.slot(tensor)
            _note(slot, leaf_path, positions, params)
            return slot

        return map_nested(value, leaf_slot, path=path)

    def clear(self):
        """Drop the tensor bookkeeping (the nodes keep their slots)."""
        self._table.clear()
        self._shared_slots.clear()
        self._buffer_versions.clear()


def _flat(sequence):
    """Whether a tuple or list holds only :data:`ATOMS` (``stride=(1, 1)``): nothing to resolve."""
    for item in sequence:
        if type(item) not in ATOMS:
            return False
    return True


def _note(slot, position, positions, params):
    if slot.kind == "layer":
        if slot.ref not in positions:
            positions[slot.ref] = position
    elif slot.kind == "param":
        params.append(slot.ref)

