"""Module containment of tensors that do not descend from the input.

The TorchLens paper traces the children of internally generated tensors
(``torch.ones``, ``torch.rand``, buffers) until it reaches an op that descends
from the input, and copies that op's module containment back, because its
logger learns containment from the tensors flowing into modules.

Design decision: the capture here records the module stack at every call, so
an op that creates a tensor already knows the module whose code ran it — also
``torch.ones`` inside ``block``, and also a factory called in the top-level
forward and only consumed inside a submodule, which the paper's tracing would
wrongly move into that submodule. What the capture cannot know is where a
*buffer* belongs: it becomes a layer when an op first reads it, and a read
carries no module of its own. This pass applies the paper's tracing to those
nodes: it follows children until it finds one descending from the input (the
earliest in execution order; failing that, the earliest op reached) and takes
its containment, cut after the module that owns the buffer (the owner's own
pass), so a buffer read by a child module stays at its owner's level.
"""

from __future__ import annotations


def correct_internal_containment(nodes):
    """Give each buffer layer the containment found by tracing its children.

    Needs ``meta["has_input_ancestor"]`` (from
    :func:`~torchlens_like.graph.passes.mark_input_ancestry`).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.BatchNorm1d(2)).eval()
    >>> history = tll.log_forward_pass(model, torch.ones(3, 2))
    >>> history["buffer_1"].source, history["buffer_1"].containing_modules
    ('0.running_mean', ['0:1'])
    """
    cut, position = {}, []
    for node in nodes:
        if node.kind != "buffer":
            continue
        reference = _traced_descendant(node, nodes, position)
        if reference is not None:
            key = (reference.module_calls, node.source)
            calls = cut.get(key)
            if calls is None:
                calls = cut[key] = _cut_at_owner(reference.module_calls, node.source)
            node.module_calls = calls
    return nodes


def _traced_descendant(node, nodes, position):
    """The earliest child descending from the input; else the earliest op found further on.

    Children are listed in execution order, so when all of them qualify the
    first is the earliest; otherwise the nodes' positions (made once, into
    ``position``) order them.
    """
    children = list(node.child_nodes)
    for child in children:
        if child.kind != "op" or not child.meta.get("has_input_ancestor"):
            break
    else:
        if children:
            return children[0]
    seen, stack, found, fallback = set(), children, [], []
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.add(child)
        if child.kind == "op":
            fallback.append(child)
            if child.meta.get("has_input_ancestor"):
                found.append(child)
                continue
        stack.extend(child.child_nodes)
    candidates = found or fallback
    if not candidates:
        return None
    if not position:
        position.append({n: i for i, n in enumerate(nodes)})
    return min(candidates, key=position[0].get)


def _cut_at_owner(calls, address):
    owner = address.rsplit(".", 1)[0] if "." in address else ""
    if not owner:
        return ()
    for depth, call in enumerate(calls):
        if call.address == owner:
            return tuple(calls[:depth + 1])
    return tuple(call for call in calls if owner.startswith(call.address + "."))
