"""A new ``ModelHistory`` over new layer records that share the original's saved values.

Readers that derive a changed history from a logged one (the replay engine
of interventions) copy the graph first, then give some layers new values:
the original history is never written. Only the records are new; the saved
activations are the same objects until a reader replaces them.
"""

from __future__ import annotations

from ..nested import map_nested
from ..records import ArgSlot, LayerEntry, is_slot
from .history import ModelHistory

def copy_history(history):
    """A new history with new layer records; saved values and replay records are shared.

    Parents, children, argument slots and node references in ``meta`` point
    into the copy; ``meta`` dicts are new, so a reader may write into them.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Linear(2, 2), torch.ones(1, 2))
    >>> copy = copy_history(history)
    >>> copy["linear_1"] is history["linear_1"], copy.layer_labels == history.layer_labels
    (False, True)
    >>> copy["linear_1"].tensor_contents is history["linear_1"].tensor_contents
    True
    >>> copy["output_1"].parent_nodes[0] is copy["linear_1"]
    True
    """
    new = {}
    slots = {}

    def remap_slot(slot, _path):
        if slot.kind != "layer":
            return slot
        if id(slot) not in slots:
            slots[id(slot)] = ArgSlot("layer", new[id(slot.ref)], slot.name)
        return slots[id(slot)]

    for old in history.layers:
        layer = LayerEntry.__new__(LayerEntry)
        vars(layer).update(vars(old))
        layer.child_nodes = ()
        layer.meta = dict(old.meta)
        layer.args = map_nested(old.args, remap_slot, is_slot)
        layer.kwargs = map_nested(old.kwargs, remap_slot, is_slot)
        layer.arg_positions = {new[id(parent)]: position
                               for parent, position in old.arg_positions.items()}
        for parent in layer.arg_positions:
            parent.child_nodes.append(layer)
        new[id(old)] = layer
    for layer in new.values():
        for key, value in layer.meta.items():
            if isinstance(value, LayerEntry):
                layer.meta[key] = new.get(id(value), value)
    return ModelHistory(
        list(new.values()), model_name=history.model_name, module_types=history.module_types,
        module_outputs={call: list(labels) for call, labels in history.module_outputs.items()},
        num_params=history.num_params,
        total_params_bytes=history.total_params_bytes, elapsed_time=history.elapsed_time,
        backend=history.backend)
