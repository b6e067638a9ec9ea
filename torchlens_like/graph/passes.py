"""Post-processing passes over a freshly built graph.

Each pass is a function ``pass(nodes) -> nodes`` over the list of
:class:`~torchlens_like.records.LayerEntry` in execution order (which is a
topological order). See :data:`PASSES` in :mod:`torchlens_like.graph` for the
order they run in and why.
"""

from __future__ import annotations

from collections import deque


def trim_orphans(nodes):
    """Drop ops that neither descend from an input nor feed an output.

    Ancestors of every kept node are kept too, so an op computed from an
    internally generated tensor and the input keeps both parents. Two sweeps
    over the execution order (a topological order): forwards to find what
    the inputs reach, backwards to keep the ancestors of outputs and of
    those nodes.

    Examples
    --------
    >>> from torchlens_like.records import ArgSlot, LayerEntry, connect
    >>> a, c = LayerEntry("input", "input"), LayerEntry("output", "output")
    >>> b = LayerEntry("op", "ones")
    >>> connect([c], (ArgSlot("layer", a),)); [n.kind for n in trim_orphans([a, b, c])]
    ['input', 'output']
    """
    reached = set()
    for node in nodes:
        if node.kind == "input":
            reached.add(node)
            continue
        for parent in node.arg_positions:
            if parent in reached:
                reached.add(node)
                break
    keep = set()
    for node in reversed(nodes):
        if node in keep or node in reached or node.kind == "output":
            keep.add(node)
            keep.update(node.arg_positions)
    kept = [n for n in nodes if n in keep]
    if len(kept) == len(nodes):
        return nodes
    for node in kept:
        children = list(node.child_nodes)
        if any(c not in keep for c in children):
            node.child_nodes = [c for c in children if c in keep]
    return kept


def mark_input_ancestry(nodes):
    """Set ``meta["has_input_ancestor"]``: does an input reach this node."""
    for node in nodes:
        reached = node.kind == "input"
        if not reached:
            for parent in node.arg_positions:
                if parent.meta["has_input_ancestor"]:
                    reached = True
                    break
        node.meta["has_input_ancestor"] = reached
    return nodes


def compute_distances(nodes):
    """Set ``meta["distance_from_input"]`` / ``["distance_from_output"]``.

    The number of edges on the shortest path from any input (to any output);
    None where there is no such path.
    """
    for key, sources, step in (
            ("distance_from_input", [n for n in nodes if n.kind == "input"],
             lambda n: n.child_nodes),
            ("distance_from_output", [n for n in nodes if n.kind == "output"],
             lambda n: n.arg_positions)):
        for node in nodes:
            node.meta[key] = None
        queue = deque(sources)
        for node in sources:
            node.meta[key] = 0
        while queue:
            node = queue.popleft()
            for nxt in step(node):
                if nxt.meta[key] is None:
                    nxt.meta[key] = node.meta[key] + 1
                    queue.append(nxt)
    return nodes


def assign_labels(nodes):
    """Give every node its label parts and labels, numbered in order of each layer's first pass.

    A group's first node stops naming itself in ``meta["layer_group"]``
    afterwards, so no node refers to itself (see ``ChildList``).
    """
    passes = {}
    for node in nodes:
        passes.setdefault(id(node.meta.get("layer_group", node)), []).append(node)
    type_counts = {}
    total = 0
    for node in nodes:
        group = passes[id(node.meta.get("layer_group", node))]
        if group[0] is not node:
            continue
        total += 1
        layer_type = _layer_type(node)
        type_counts[layer_type] = type_counts.get(layer_type, 0) + 1
        label = f"{layer_type}_{type_counts[layer_type]}_{total}"
        short = f"{layer_type}_{type_counts[layer_type]}"
        for pass_num, member in enumerate(group, start=1):
            member.layer_type = layer_type
            member.layer_type_num = type_counts[layer_type]
            member.layer_total_num = total
            member.pass_num = pass_num
            member.num_passes = len(group)
            member.layer_label_no_pass = label
            member.layer_label = f"{label}:{pass_num}" if len(group) > 1 else label
            member.layer_label_short = f"{short}:{pass_num}" if len(group) > 1 else short
    for node in nodes:
        if node.meta.get("layer_group") is node:
            del node.meta["layer_group"]
    return nodes


def _layer_type(node):
    if node.kind != "op":
        return node.kind
    return node.func_name.replace("_", "").lower() or "op"


def lint(nodes):
    """Check graph invariants; return a list of problems (empty when sound).

    Checks: execution order is topological, labels are unique, every parent
    lists the child and every child lists the parent, and every parent is in
    the graph.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> lint(tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2)).layers)
    []
    """
    problems = []
    position = {n: i for i, n in enumerate(nodes)}
    labels = {}
    for i, node in enumerate(nodes):
        label = node.layer_label if node.layer_type is not None else f"#{i}"
        if label in labels:
            problems.append(f"duplicate label {label}")
        labels[label] = node
        for parent in node.arg_positions:
            if parent not in position:
                problems.append(f"{label}: parent not in graph")
            elif position[parent] >= i:
                problems.append(f"{label}: parent after child (not topological)")
            if not any(c is node for c in parent.child_nodes):
                problems.append(f"{label}: parent does not list it as child")
        for child in node.child_nodes:
            if node not in child.arg_positions:
                problems.append(f"{label}: child does not list it as parent")
    return problems
