"""Run a traced model once, returning the values of the requested graph tensors.

Design decisions
----------------
* One execution per logging call: the traced graph is pruned to a function
  whose outputs are exactly the requested tensors (``WrappedFunction.prune``,
  cached per trace and request), so a metadata-only call computes the model's
  outputs and nothing is kept, and a call saving a few layers runs only what
  they need.
* Pruning also drops ops whose effects nothing requested depends on
  (variable updates of a training-mode ``BatchNormalization``, the seed
  advance of a ``Dropout``). Variables still written by what runs (a ``While``
  or function call handed a variable) are read before and assigned back
  after, also when the run raises.
"""

from __future__ import annotations

from ...tf_runtime.loader import tf

WRITES_NOTHING = frozenset({"ReadVariableOp", "VariableShape"})


def run_trace(trace, tensors, input_values):
    """Values (``tf.Tensor``) of ``tensors`` for one run on ``input_values``.

    ``tensors`` are graph tensors of ``trace.graph``; duplicates are fetched once.
    """
    unique = list({t.name: t for t in tensors}.values())
    key = tuple(t.name for t in unique)
    function = trace.pruned.get(key)
    if function is None:
        function = trace.function.prune(trace.inputs, unique) if unique else None
        trace.pruned[key] = function
    if function is None:
        return {}
    written = _written_variables(trace, unique)
    before = [(v, tf.identity(v)) for v in written]
    try:
        values = function(*input_values)
    finally:
        for variable, value in before:
            variable.assign(value)
    return dict(zip(key, values))


def _written_variables(trace, fetched):
    """Variables that an op on the way to ``fetched`` may write."""
    handles = {internal.name: trace.variables.get(id(external), (None, None))[1]
               for external, internal in trace.graph.captures
               if external.dtype == tf.resource}
    if not handles:
        return []
    found, seen, stack = {}, set(), [t.op for t in fetched]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        for tensor in op.inputs:
            variable = handles.get(tensor.name)
            if variable is not None and op.type not in WRITES_NOTHING:
                found[id(variable)] = variable
            stack.append(tensor.op)
        stack.extend(op.control_inputs)
    return list(found.values())
