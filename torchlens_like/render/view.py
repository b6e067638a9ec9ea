"""The picture's graph, before any drawing: which nodes, edges and module boxes to show.

:func:`build_view` turns a :class:`~torchlens_like.graph.ModelHistory` into a
:class:`View` for one :class:`~torchlens_like.render.options.RenderOptions`.
Keeping this separate from DOT writing lets the HTML explorer and the tests
reason about the same nodes the picture shows.

Design decisions
----------------
- A module call that ran exactly one op (a *bottom-level* module, e.g.
  ``nn.ReLU``) is never drawn as a box around one node: its op is drawn as a
  box instead, as in the paper. Ops of one multi-output call (``lstm_cell``
  returns two tensors) count as one op; they are recognised by sharing the
  argument containers that capture rebuilds once per call.
- ``nesting_depth=k``: modules at depth ``< k`` are drawn as nested boxes;
  every op inside a module call at depth ``k`` (or deeper) becomes that call's
  single node, unless that call is bottom-level (then its op is already one
  box). Edges are mapped onto these nodes; edges inside one collapsed call
  vanish, edges between calls remain.
- Unrolled views key nodes by pass (``linear_1_2:2``, ``block:2``); rolled
  views by layer (``linear_1_2``, ``block``). Every edge remembers which
  (tail pass, head pass) pairs it stands for, so a rolled edge that exists in
  only some passes of a recurrent node is labelled ``In 1`` / ``Out 2-3``.
- A buffer is drawn inside the module calls shared by the ops that read it
  (a BatchNorm's running statistics sit in, and collapse with, the
  BatchNorm's enclosing module); ``show_buffers=False`` leaves buffers out.
- Argument positions are labelled only on edges into an op with several
  distinct parents whose function is not commutative (:data:`COMMUTATIVE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMMUTATIVE = frozenset({
    "add", "__add__", "__radd__", "__iadd__", "add_", "mul", "__mul__", "__rmul__", "__imul__",
    "mul_", "multiply", "maximum", "minimum", "fmax", "fmin", "eq", "__eq__", "ne", "__ne__",
    "logical_and", "logical_or", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor",
    "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "hypot",
})
"""Functions whose result does not depend on the order of their tensor arguments.

``max`` / ``min`` are left out: with a second tensor they are elementwise and
symmetric, but with a ``dim`` they return values and indices of one input.
"""


@dataclass
class ViewNode:
    """One node of the picture.

    ``kind`` is ``"layer"`` (one layer pass, or every pass of a layer in a
    rolled view) or ``"module"`` (a collapsed module call, or every call of
    that module in a rolled view). ``layers`` are the drawn layers in
    execution order; ``clusters`` the keys of the module boxes around it,
    outermost first; ``index`` its position in the view (the SVG ``id`` is
    ``n{index}``).
    """

    key: str
    kind: str
    layers: list
    clusters: tuple
    module: str | None = None
    passes: set = field(default_factory=set)
    boxed: bool = False
    index: int = 0


@dataclass
class ViewEdge:
    """One arrow; ``pass_pairs`` holds the (tail pass, head pass) pairs it stands for."""

    tail: str
    head: str
    pass_pairs: set = field(default_factory=set)
    positions: set = field(default_factory=set)
    starts_if: bool = False
    arg_label: str | None = None
    in_label: str | None = None
    out_label: str | None = None


@dataclass
class View:
    """Nodes (in execution order), edges, and module boxes ``{key: (address, class, call)}``."""

    nodes: dict
    edges: list
    clusters: dict
    rolled: bool


def build_view(history, options):
    """Decide the nodes, edges and module boxes of the picture.

    Parameters
    ----------
    history : ModelHistory
    options : RenderOptions

    Returns
    -------
    View

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.render import RenderOptions
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
    >>> view = build_view(tll.get_model_metadata(model, torch.rand(1, 3)), RenderOptions())
    >>> list(view.nodes), [(e.tail, e.head) for e in view.edges][:1]
    (['input_1_1', 'linear_1_2', 'relu_1_3', 'output_1_4'], [('input_1_1', 'linear_1_2')])
    """
    rolled = options.vis_opt == "rolled"
    single_op = single_op_module_calls(history.layers)
    depth = options.nesting_depth
    owners, nodes, clusters = {}, {}, {}
    for layer in history.layers:
        if layer.is_buffer and not options.show_buffers:
            continue
        calls = drawn_modules(layer)
        collapse = len(calls) >= depth and calls[depth - 1] not in single_op
        shown = calls[:depth - 1] if collapse else calls[:depth]
        boxes = tuple(call for call in shown if call not in single_op)
        cluster_keys = tuple(c.address if rolled else c for c in boxes)
        for call, key in zip(boxes, cluster_keys):
            clusters.setdefault(key, (call.address, history.module_types.get(call.address, ""),
                                      None if rolled else call))
        if collapse:
            call = calls[depth - 1]
            address, pass_num = call.address, call.pass_num
            unrolled_key = f"module {call}"
            key = f"module {address}" if rolled else unrolled_key
            node = nodes.setdefault(key, ViewNode(key, "module", [], cluster_keys,
                                                  module=address, index=len(nodes)))
        else:
            pass_num = layer.pass_num
            unrolled_key = layer.layer_label
            key = layer.layer_label_no_pass if rolled else unrolled_key
            node = nodes.setdefault(key, ViewNode(key, "layer", [], cluster_keys,
                                                  index=len(nodes)))
            node.boxed = layer.kind == "op" and bool(calls) and calls[-1] in single_op
        node.passes.add(pass_num)
        node.layers.append(layer)
        owners[id(layer)] = (key, unrolled_key, pass_num)
    edges = _edges(history.layers, owners, nodes)
    return View(nodes, edges, clusters, rolled)


def drawn_modules(layer):
    """The module calls a layer is drawn inside: its own, or for a buffer its readers' shared ones.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.BatchNorm1d(2)).eval()
    >>> history = tll.get_model_metadata(model, torch.rand(3, 2))
    >>> drawn_modules(history["buffer_1"])
    ['0:1']
    """
    if not layer.is_buffer or layer.module_calls or not layer.child_nodes:
        return list(layer.module_calls)
    shared = list(layer.child_nodes[0].module_calls)
    for child in layer.child_nodes[1:]:
        while shared and list(child.module_calls[:len(shared)]) != shared:
            shared.pop()
    return shared


def _edges(layers, owners, nodes):
    edges = {}
    for layer in layers:
        if id(layer) not in owners:
            continue
        head, unrolled_head, head_pass = owners[id(layer)]
        distinct_parents = len(layer.arg_positions) > 1
        label_args = (nodes[head].kind == "layer" and distinct_parents
                      and layer.func_name not in COMMUTATIVE)
        for parent, position in layer.arg_positions.items():
            if id(parent) not in owners:
                continue
            tail, unrolled_tail, tail_pass = owners[id(parent)]
            if unrolled_tail == unrolled_head:
                continue
            edge = edges.setdefault((tail, head), ViewEdge(tail, head))
            edge.pass_pairs.add((tail_pass, head_pass))
            if label_args:
                edge.positions.add(format_position(position))
            if layer.cond_branch_start and not parent.in_cond_branch:
                edge.starts_if = True
    for edge in edges.values():
        edge.arg_label = " / ".join(sorted(edge.positions)) or None
        tail, head = nodes[edge.tail], nodes[edge.head]
        if len(head.passes) > 1:
            edge.in_label = _pass_label("In", {h for _, h in edge.pass_pairs}, head.passes)
        if len(tail.passes) > 1:
            edge.out_label = _pass_label("Out", {t for t, _ in edge.pass_pairs}, tail.passes)
    return list(edges.values())


def _pass_label(word, used, every):
    if used == every:
        return None
    return f"{word} {format_ranges(sorted(used))}"


def format_ranges(numbers):
    """Compact a sorted list of ints: ``[1, 2, 3, 5]`` -> ``"1-3, 5"``.

    Examples
    --------
    >>> format_ranges([1, 2, 3, 5, 7, 8])
    '1-3, 5, 7-8'
    """
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def format_position(position):
    """Edge text for an argument position: ``0`` -> ``"arg 0"``, ``(1, 0)`` -> ``"arg 1[0]"``.

    Keyword arguments are shown by name.

    Examples
    --------
    >>> format_position(1), format_position("weight"), format_position((1, 0))
    ('arg 1', 'weight', 'arg 1[0]')
    """
    if isinstance(position, tuple):
        head, *rest = position
        first = head if isinstance(head, str) else f"arg {head}"
        return first + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in rest)
    return position if isinstance(position, str) else f"arg {position}"


def single_op_module_calls(layers):
    """The module calls (``"address:pass"``) whose forward ran exactly one op.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
    >>> sorted(single_op_module_calls(tll.get_model_metadata(model, torch.rand(1, 3)).layers))
    ['0:1', '1:1']
    """
    calls_by_module = {}
    for layer in layers:
        if layer.kind != "op":
            continue
        for module_call in layer.module_calls:
            calls_by_module.setdefault(module_call, set()).add(layer.call_index)
    return {module for module, calls in calls_by_module.items() if len(calls) == 1}


def layout_span(view):
    """Sum over edges of the ranks each edge crosses: what makes Graphviz's layout slow.

    Graphviz adds a virtual node on every rank a long edge passes through and
    then orders them all, so a graph with few nodes but many long edges (the
    concatenations of DenseNet) can take minutes. Ranks here are longest-path
    depths in view order, except that a node with no parents (a buffer, an
    internally generated tensor) sits just above its first-ranked child, as
    Graphviz would place it; edges back to an earlier node (rolled recurrence)
    count one rank.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.render import RenderOptions
    >>> history = tll.get_model_metadata(torch.nn.ReLU(), torch.rand(2))
    >>> layout_span(build_view(history, RenderOptions()))
    2
    """
    rank = {key: 0 for key in view.nodes}
    incoming, outgoing = {}, {}
    for edge in view.edges:
        incoming.setdefault(edge.head, []).append(edge.tail)
        outgoing.setdefault(edge.tail, []).append(edge.head)
    for key, node in view.nodes.items():
        for tail in incoming.get(key, ()):
            if view.nodes[tail].index < node.index:
                rank[key] = max(rank[key], rank[tail] + 1)
    for key in view.nodes:
        if key not in incoming and key in outgoing:
            rank[key] = min(rank[head] for head in outgoing[key]) - 1
    return sum(max(abs(rank[e.head] - rank[e.tail]), 1) for e in view.edges)
