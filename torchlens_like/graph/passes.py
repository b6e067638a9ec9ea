"""Post-processing passes over a freshly built graph.

Each pass is a function ``pass(nodes) -> nodes`` over the list of
:class:`~torchlens_like.records.LayerEntry` in execution order (which is a
topological order). See :data:`PASSES` in :mod:`torchlens_like.graph` for the
order they run in and why.
"""

from __future__ import annotations


def trim_orphans(nodes):
    """Drop ops that neither descend from an input nor feed an output.

    Ancestors of every kept node are kept too, so an op computed from an
    internally generated tensor and the input keeps both parents. A forward
    sweep over the execution order (a topological order) finds what the
    inputs reach: all of that is kept. Only the nodes it does not reach are
    looked at again, last first: one is kept when it is an output or feeds a
    kept node.

    Examples
    --------
    >>> from torchlens_like.records import ArgSlot, LayerEntry, connect
    >>> a, c = LayerEntry("input", "input"), LayerEntry("output", "output")
    >>> b = LayerEntry("op", "ones")
    >>> connect([c], (ArgSlot("layer", a),)); [n.kind for n in trim_orphans([a, b, c])]
    ['input', 'output']
    """
    reached = set()
    unreached = []
    for node in nodes:
        if node.kind == "input":
            reached.add(node)
            continue
        for parent in node.arg_positions:
            if parent in reached:
                reached.add(node)
                break
        else:
            unreached.append(node)
    dropped = set()
    for node in reversed(unreached):
        if node.kind == "output":
            continue
        for child in node.child_nodes:
            if child not in dropped:
                break
        else:
            dropped.add(node)
    if not dropped:
        return nodes
    kept = [n for n in nodes if n not in dropped]
    for node in kept:
        if node not in reached:
            children = list(node.child_nodes)
            if any(c in dropped for c in children):
                node.child_nodes = [c for c in children if c not in dropped]
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
    None where there is no such path. The execution order is topological, so
    one sweep forwards (over each node's parents) and one backwards give the
    shortest distances, without a queue or the child lists.
    """
    from_input = {}
    for node in nodes:
        if node.kind == "input":
            from_input[node] = 0
            continue
        best = None
        for parent in node.arg_positions:
            distance = from_input.get(parent)
            if distance is not None and (best is None or distance < best):
                best = distance
        if best is not None:
            from_input[node] = best + 1
    to_output = {}
    for node in reversed(nodes):
        distance = 0 if node.kind == "output" else to_output.get(node)
        if distance is None:
            continue
        to_output[node] = distance
        distance += 1
        for parent in node.arg_positions:
            known = to_output.get(parent)
            if known is None or distance < known:
                to_output[parent] = distance
    for node in nodes:
        meta = node.meta
        meta["distance_from_input"] = from_input.get(node)
        meta["distance_from_output"] = to_output.get(node)
    return nodes


def assign_labels(nodes):
    """Give every node its label parts and labels, numbered in order of each layer's first pass.

    A group's first node stops naming itself in ``meta["layer_group"]``
    afterwards, so no node refers to itself (see ``ChildList``).
    """
    groups = {}
    for node in nodes:
        first = node.meta.get("layer_group")
        if first is not None and first is not node:
            members = groups.get(first)
            if members is None:
                groups[first] = [first, node]
            else:
                members.append(node)
    type_counts = {}
    total = 0
    for node in nodes:
        meta = node.meta
        first = meta.get("layer_group")
        if first is node:
            del meta["layer_group"]
        elif first is not None:
            continue
        total += 1
        layer_type = _layer_type(node)
        number = type_counts[layer_type] = type_counts.get(layer_type, 0) + 1
        short = f"{layer_type}_{number}"
        label = f"{short}_{total}"
        members = groups.get(node)
        if members is None:
            node.layer_type = layer_type
            node.layer_type_num = number
            node.layer_total_num = total
            node.pass_num = node.num_passes = 1
            node.layer_label_no_pass = node.layer_label = label
            node.layer_label_short = short
            continue
        for pass_num, member in enumerate(members, start=1):
            member.layer_type = layer_type
            member.layer_type_num = number
            member.layer_total_num = total
            member.pass_num = pass_num
            member.num_passes = len(members)
            member.layer_label_no_pass = label
            member.layer_label = f"{label}:{pass_num}"
            member.layer_label_short = f"{short}:{pass_num}"
    return nodes


_layer_types = {}


def _layer_type(node):
    if node.kind != "op":
        return node.kind
    name = node.func_name
    layer_type = _layer_types.get(name)
    if layer_type is None:
        layer_type = _layer_types[name] = name.replace("_", "").lower() or "op"
    return layer_type


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
