"""Recurrence: which executed ops are passes of the same layer.

The TorchLens paper's three rules ("Handling of recurrent operations"), one
pass each, run in this order:

1. :func:`group_parameter_passes` — an op applying the same parameters as an
   earlier op (same function, same output position) is another pass of that
   layer.
2. :func:`grow_parameter_passes` — starting from every layer of rule 1, ops
   adjacent to its passes that are identical to each other are passes of one
   layer too, grown recursively outwards (the ReLU after each pass of a
   recurrent linear layer, then the pooling after that ReLU, ...).
3. :func:`group_repeated_sequences` — a parameter-free sequence repeated back
   to back (``XYZXYZXYZ``) groups corresponding ops; repeats with something in
   between (``XYZ A XYZ B XYZ``) are left alone.

Design decisions
----------------
* Grouping is recorded as ``meta["layer_group"]``: the group's first node (in
  execution order), which every member points at (the first node too); an
  ungrouped node has none. ``meta["recurrence_rule"]`` says which rule grouped
  it (None when ungrouped). Pass numbers follow execution order and are written by
  :func:`~torchlens_like.graph.passes.assign_labels`.
* Two ops are *identical* when they have the same function, the same output
  position (for calls returning several tensors), the same non-tensor
  arguments, and the same parameters and constant tensors; tensors produced
  during the pass only have to sit at the same argument positions.
* Rules 2 and 3 share one matcher, :func:`_grow`. It starts from one node per
  *chunk* (a pass of the rule-1 layer, or a repeat of the rule-3 sequence) and
  repeatedly looks one edge further: neighbours reached from corresponding
  nodes of different chunks by the same kind of edge (parent or child, same
  argument position) and identical to each other form a new group when at
  least two chunks have one. Competing candidates are taken largest first
  (then children before parents), so ``linear relu linear relu`` groups the
  ReLUs as the children of each pass, and ``relu linear relu linear`` as the
  parents. Every node joins at most one group; nodes of other rule-1 layers,
  parameterised ops, inputs, buffers and outputs are never added.
* "Back to back" (rule 3) means: an edge runs from each repeat into the next,
  and no op outside the two repeats lies on a path between them.
"""

from __future__ import annotations

import heapq
import itertools

from ..nested import find_leaves
from ..records import ArgSlot


def group_parameter_passes(nodes):
    """Recurrence rule 1: the same function applied with the same parameters is one layer.

    Sets ``meta["layer_group"]`` of grouped nodes to the first node of their
    group, and ``meta["recurrence_rule"]`` to 1 for them (None for every other
    node). Must run before the other recurrence passes.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> fc = torch.nn.Linear(2, 2)
    >>> history = tll.log_forward_pass(torch.nn.Sequential(fc, fc), torch.ones(1, 2))
    >>> history.layer_labels
    ['input_1_1', 'linear_1_2:1', 'linear_1_2:2', 'output_1_3']
    """
    first_by_key = {}
    for node in nodes:
        meta = node.meta
        meta["recurrence_rule"] = None
        if node.params and node.kind == "op":
            key = (node.func_name, node.output_path, node.params)
            first = first_by_key.setdefault(key, node)
            if first is not node:
                meta["layer_group"] = first.meta["layer_group"] = first
                first.meta["recurrence_rule"] = meta["recurrence_rule"] = 1
    return nodes


def grow_parameter_passes(nodes):
    """Recurrence rule 2: identical ops next to the passes of a rule-1 layer are one layer.

    Grows outwards from every rule-1 layer, one edge at a time, as long as
    corresponding neighbours of at least two passes are identical ops. Runs
    after :func:`group_parameter_passes`.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> fc, relu = torch.nn.Linear(2, 2), torch.nn.ReLU()
    >>> history = tll.log_forward_pass(torch.nn.Sequential(fc, relu, fc, relu), torch.ones(1, 2))
    >>> history.layer_labels
    ['input_1_1', 'linear_1_2:1', 'relu_1_3:1', 'linear_1_2:2', 'relu_1_3:2', 'output_1_4']
    """
    claimed = {id(n) for n in nodes if n.meta["recurrence_rule"] is not None}
    if not claimed:
        return nodes
    position = {id(n): i for i, n in enumerate(nodes)}
    for members in _groups(nodes, rule=1):
        for group in _grow(members, claimed):
            _commit(group, 2, position)
    return nodes


def group_repeated_sequences(nodes):
    """Recurrence rule 3: a parameter-free sequence repeated back to back is a loop.

    For each kind of op still ungrouped and occurring more than once, the
    occurrences are the starts of candidate repeats; the repeats are grown
    with the same matcher as rule 2, and consecutive repeats that are back to
    back are grouped. Occurrences that no chain of parameter-free ops
    connects are never back to back, so they are told apart first: an
    identical op on an unrelated branch, executed between two repeats, does
    not break them. Runs after :func:`grow_parameter_passes`.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> def loop(x):
    ...     for _ in range(2):
    ...         x = torch.cos(x).relu() * 2
    ...     return torch.tan(x)
    >>> tll.log_forward_pass(loop, torch.ones(2)).layer_labels  # doctest: +NORMALIZE_WHITESPACE
    ['input_1_1', 'cos_1_2:1', 'relu_1_3:1', 'mul_1_4:1', 'cos_1_2:2', 'relu_1_3:2',
     'mul_1_4:2', 'tan_1_5', 'output_1_6']
    """
    claimed, free = set(), []
    for node in nodes:
        if node.meta["recurrence_rule"] is not None:
            claimed.add(id(node))
        elif not node.params and node.kind == "op":
            free.append(node)
    component = _free_components(free)
    sizes = {}
    for root in component.values():
        sizes[root] = sizes.get(root, 0) + 1
    by_key = {}
    for node in _possible_repeats(nodes, component, sizes):
        by_key.setdefault(op_identity(node), []).append(node)
    position = None
    for occurrences in by_key.values():
        seeds = [n for n in occurrences if id(n) not in claimed]
        for run in _split_where(seeds, lambda a, b: component[id(a)] != component[id(b)]):
            if len(run) > 1:
                if position is None:
                    position = {id(n): i for i, n in enumerate(nodes)}
                _group_back_to_back(run, claimed, position)
    return nodes


def _possible_repeats(nodes, component, sizes):
    """The nodes, in order, whose identity (:func:`op_identity`) can matter to rule 3.

    Only occurrences in one component can be grouped, so a node is left out
    when no other node of its component has its function and output
    position (identical ops must share both): cheap to check, and it spares
    computing most identities. Leaving it out changes nothing, as it could
    only form a run of one.
    """
    buckets = {}
    for node in nodes:
        root = component.get(id(node))
        if root is not None and sizes[root] > 1:
            buckets.setdefault((node.func_name, repr(node.output_path)), []).append(
                (root, node))
    wanted = set()
    for members in buckets.values():
        if len(members) > 1:
            roots = [root for root, _ in members]
            if len(set(roots)) < len(roots):
                wanted.update(id(node) for _, node in members)
    return [node for node in nodes if id(node) in wanted]


def _free_components(free):
    """``{id(node): component}`` for the nodes ``free``, joined along edges between them.

    Repeats only grow through such nodes and an edge must join each repeat
    to the next, so repeats lying in different components are never back to
    back: the cheap test that rules most candidates out before growing.
    """
    root = {id(node): id(node) for node in free}

    def find(key):
        while root[key] != key:
            root[key] = root[root[key]]
            key = root[key]
        return key

    for node in free:
        for parent in node.arg_positions:
            if id(parent) in root:
                a, b = find(id(node)), find(id(parent))
                if a != b:
                    root[a] = b
    return {key: find(key) for key in root}


def _split_where(items, breaks):
    """Split ``items`` into runs, starting a new run wherever ``breaks(previous, item)``."""
    runs = []
    for item in items:
        if runs and not breaks(runs[-1][-1], item):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _group_back_to_back(seeds, claimed, position):
    pending = [seeds]
    while pending:
        seeds = pending.pop()
        trial = set(claimed)
        groups = [list(enumerate(seeds))] + _grow(seeds, trial)
        slot = {}
        for number, group in enumerate(groups):
            for chunk, node in group:
                slot[id(node)] = (number, chunk)
        chunks = [{} for _ in seeds]
        for number, group in enumerate(groups):
            for chunk, node in group:
                chunks[chunk][number] = node
        runs = [[0]]
        for i in range(1, len(seeds)):
            if _repeats(chunks[i - 1], chunks[i], i, slot, position):
                runs[-1].append(i)
            else:
                runs.append([i])
        if len(runs) == 1:
            claimed.update(trial)
            for group in groups:
                _commit(group, 3, position)
        else:
            pending.extend([seeds[i] for i in run] for run in runs if len(run) > 1)


def _repeats(previous, current, chunk, slot, position):
    """Whether chunk ``current`` repeats ``previous`` (number ``chunk - 1``) back to back.

    Both hold the same groups; every tensor ``current`` reads comes from one of
    the two repeats or is what the corresponding op of ``previous`` read at
    the same argument position; and :func:`_back_to_back` holds.
    """
    if previous.keys() != current.keys():
        return False
    for number, node in current.items():
        counterpart = previous[number]
        for parent, where in node.arg_positions.items():
            if slot.get(id(parent), (None, None))[1] in (chunk - 1, chunk):
                continue
            if counterpart.arg_positions.get(parent, ()) != where:
                return False
    return _back_to_back(list(previous.values()), list(current.values()), position)


def _back_to_back(first, second, position):
    """An edge runs from ``first`` into ``second`` and no other op lies between them."""
    second_ids = {id(n) for n in second}
    if not any(id(child) in second_ids for node in first for child in node.child_nodes):
        return False
    upper = max(position[id(n)] for n in second)
    lower = min(position[id(n)] for n in first)
    after = _reach(first, lambda n: n.child_nodes, lambda n: position[id(n)] <= upper)
    before = _reach(second, lambda n: n.arg_positions, lambda n: position[id(n)] >= lower)
    return not (after & before) - second_ids - {id(n) for n in first}


def _reach(start, step, within):
    seen = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(n for n in step(node) if within(n))
    return seen


def _grow(seeds, claimed):
    """Grow corresponding groups outwards from one seed node per chunk.

    ``seeds`` is a list of nodes, one per chunk (chunk = index). Returns the
    new groups, each a list of ``(chunk, node)`` in execution order, and adds
    their nodes to ``claimed``.
    """
    claimed.update(id(seed) for seed in seeds)
    tiebreak = itertools.count()
    heap = []
    grown = []

    def push_neighbours(group):
        for candidate in _candidates(group, claimed):
            heapq.heappush(heap, (-len(candidate[1]), candidate[0], next(tiebreak), candidate[1]))

    push_neighbours(list(enumerate(seeds)))
    while heap:
        _, direction, _, members = heapq.heappop(heap)
        free = [(chunk, node) for chunk, node in members if id(node) not in claimed]
        if len(free) < 2:
            continue
        if len(free) < len(members):
            heapq.heappush(heap, (-len(free), direction, next(tiebreak), free))
            continue
        claimed.update(id(node) for _, node in free)
        grown.append(free)
        push_neighbours(free)
    return grown


def _candidates(group, claimed):
    """Neighbour groups of ``group``: ``(direction, [(chunk, node), ...])`` per edge kind."""
    by_edge = {}
    for chunk, node in group:
        rank = {}
        for direction, neighbours in ((0, node.child_nodes), (1, node.arg_positions)):
            for other in neighbours:
                if id(other) in claimed or other.kind != "op" or other.params:
                    continue
                edge = (other.arg_positions.get(node) if direction == 0
                        else node.arg_positions.get(other))
                kind = (direction, edge, op_identity(other))
                rank[kind] = rank.get(kind, -1) + 1
                slots = by_edge.setdefault(kind + (rank[kind],), {})
                slots.setdefault(chunk, other)
    found = []
    for (direction, *_), slots in by_edge.items():
        members = sorted(slots.items(), key=lambda item: item[0])
        if len(members) > 1 and len({id(n) for _, n in members}) == len(members):
            found.append((direction, members))
    return found


def _commit(group, rule, position):
    members = sorted((node for _, node in group), key=lambda n: position[id(n)])
    first = members[0]
    for node in members:
        node.meta["layer_group"] = first
        node.meta["recurrence_rule"] = rule


def _groups(nodes, rule):
    groups = {}
    for node in nodes:
        if node.meta["recurrence_rule"] == rule:
            groups.setdefault(id(node.meta["layer_group"]), []).append(node)
    return list(groups.values())


def op_identity(node):
    """Hashable identity of an op for recurrence: equal keys mean identical ops.

    Computed once per node and kept in ``meta["op_identity"]``.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(lambda x: x.relu() * 2 + x.relu() * 2 * 3, torch.ones(2))
    >>> [op_identity(history[f"mul_{i}"]) == op_identity(history["mul_1"]) for i in (1, 2, 3)]
    [True, True, False]
    """
    identity = node.meta.get("op_identity")
    if identity is None:
        identity = node.meta["op_identity"] = (
            node.kind, node.func_name, repr(node.output_path), _signature(node.args),
            _signature(node.kwargs), node.params)
    return identity


_PLAIN = frozenset({int, float, bool, str, type(None)})
_LAYER_SIGNATURE = ("layer",)


def _signature(arguments):
    """Hashable form of a call's arguments: each leaf's path and value, tensors by slot.

    A layer's slot matches any layer (tensors produced during the pass only
    have to sit at the same positions); a parameter's or constant's slot
    matches only itself.
    """
    return tuple((path, _leaf_signature(leaf))
                 for path, leaf in find_leaves(arguments, _is_argument_leaf))


def _is_argument_leaf(value):
    return not isinstance(value, (tuple, list, dict)) or not value


def _leaf_signature(value):
    kind = type(value)
    if kind is ArgSlot:
        return _LAYER_SIGNATURE if value.kind == "layer" else (value.kind, id(value))
    if kind in _PLAIN:
        return (kind, value)
    return (kind.__name__, repr(value))
