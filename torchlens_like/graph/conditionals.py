"""If-branches: the ops that computed a condition the model's Python code tested.

The TorchLens heuristic ("Post-processing the model's computational graph"):
an ``if`` on a tensor evaluates a single-element boolean tensor that no later
op reads, so such a childless boolean marks a condition.

Semantics chosen here
---------------------
``is_cond_bool``
    An op whose output is one boolean element and that has no children (not
    even an output node). A boolean the model also returns or computes with
    is data, not control flow, and is not marked. A boolean evaluated and then
    ignored cannot be told apart from one an ``if`` tested; it is marked too
    (the heuristic's known limit).
``in_cond_branch``
    The condition bool and every op it depends on that does not lead to a
    model output: the computation that exists only to evaluate conditions.
    With a chained test such as ``(a > 0) & (b < 1)`` only the final ``and``
    is the cond bool; both comparisons are in the branch. Nested and repeated
    conditions each get their own bool; ops shared by several conditions are
    marked once.
``cond_branch_start``
    An op of the branch with a parent that does lead to an output: where the
    condition's computation branches off the main path (``sub`` in
    ``torch.mean(x - 5) > 3``). A branch fed only by tensors created inside
    the model has no start.

Conditions on Python numbers (``if x.mean().item() > 3``) leave no boolean
tensor and are not detected; conditions computed only from internally
generated tensors were already trimmed as orphans.
"""

from __future__ import annotations


def mark_conditionals(nodes):
    """Set ``meta["is_cond_bool"]``, ``["in_cond_branch"]`` and ``["cond_branch_start"]``.

    Each is written (True) only on the nodes where it holds; a node without
    it reads False (see the :class:`~torchlens_like.records.LayerEntry` flags).

    Needs ``meta["distance_from_output"]`` (from
    :func:`~torchlens_like.graph.passes.compute_distances`) to know which ops
    lead to an output.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> def f(x):
    ...     return x * 2 if torch.mean(x - 5) > 3 else x
    >>> history = tll.log_forward_pass(f, torch.full((2,), 10.0))
    >>> [(l.layer_label, l.in_cond_branch, l.cond_branch_start, l.is_cond_bool)
    ...  for l in history if l.in_cond_branch]
    [('sub_1_2', True, True, False), ('mean_1_3', True, False, False), ('gt_1_4', True, False, True)]
    """
    stack = [node for node in nodes if node.tensor_dtype == "bool" and _is_cond_bool(node)]
    for node in stack:
        node.meta["is_cond_bool"] = True
    branch = []
    while stack:
        node = stack.pop()
        meta = node.meta
        if meta.get("in_cond_branch") or meta.get("distance_from_output") is not None:
            continue
        meta["in_cond_branch"] = True
        branch.append(node)
        stack.extend(node.arg_positions)
    for node in branch:
        if any(p.meta.get("distance_from_output") is not None for p in node.arg_positions):
            node.meta["cond_branch_start"] = True
    return nodes


def _is_cond_bool(node):
    return (node.kind == "op" and node.tensor_dtype == "bool"
            and node.tensor_shape is not None and _numel(node.tensor_shape) == 1
            and not node.child_nodes)


def _numel(shape):
    count = 1
    for size in shape:
        count *= size
    return count
