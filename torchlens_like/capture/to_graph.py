"""Turn a capture session's raw records into ``LayerEntry`` nodes."""

from __future__ import annotations

from ..graph.layer import ArgSlot, LayerEntry


def records_to_nodes(records):
    """One :class:`LayerEntry` per raw record, linked to its parents.

    Argument placeholders that pointed at record indices point at the parent
    node afterwards; records sharing a call (outputs of one multi-output
    call) share the rebuilt arguments.
    """
    nodes = []
    converted = {}
    for record in records:
        node = LayerEntry(record.kind, record.func_name)
        node.func = record.func
        node.output_path = record.output_path
        node.tensor_contents = record.tensor
        node.tensor_shape = record.shape
        node.tensor_dtype = record.dtype
        node.tensor_device = record.device
        node.params = tuple((slot.name, slot.ref) for slot in record.params)
        node.containing_modules = list(record.module_stack)
        node.module_passes_output = list(record.module_outputs)
        node.func_time = record.func_time
        node.rng_state = record.rng_state
        node.source = record.source
        for index in record.parents:
            parent = nodes[index]
            node.parent_nodes.append(parent)
            node.arg_positions[id(parent)] = record.parent_positions[index]
            parent.child_nodes.append(node)
        node.meta["capture_index"] = record.index
        key = (id(record.args), id(record.kwargs))
        if key not in converted:
            converted[key] = (_relink(record.args, nodes), _relink(record.kwargs, nodes))
        node.args, node.kwargs = converted[key]
        nodes.append(node)
    return nodes


def _relink(value, nodes):
    if isinstance(value, ArgSlot):
        if value.kind == "layer":
            return ArgSlot("layer", nodes[value.ref])
        return value
    if isinstance(value, (tuple, list)):
        items = [_relink(v, nodes) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _relink(v, nodes) for k, v in value.items()}
    return value
