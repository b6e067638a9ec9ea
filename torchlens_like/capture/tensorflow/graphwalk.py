"""Walk a traced TensorFlow graph into graph nodes, one per op output.

Design decisions
----------------
* Every op of the traced graph that computes something is one layer
  (``Conv2D``, ``BiasAdd``, ``FusedBatchNormV3``, ``While`` ...), with one
  node per output that is used (the first output always). Plumbing is not a
  layer: ``Identity`` / ``Snapshot`` pass their input on, ``ReadVariableOp``
  turns a variable into a parameter of the op that reads it, ``Const`` and
  captured tensors are constant arguments, ops without outputs
  (``NoOp``, variable writes) compute nothing a layer could hold.
* Ops inside a ``While`` / ``If`` / function call live in that op's own
  function graph and run inside one kernel: the op is one layer with its
  outputs saved (see README, "TensorFlow models").
* A node's containing modules come from the layer calls recorded while
  tracing (:mod:`.tracing`): the calls whose op range holds the op.
* Each node keeps, for the replayer only, the op's ``NodeDef``, which output
  it is, the dtypes of its inputs, and the values of its constant and
  variable arguments (:class:`OpReplay`).
"""

from __future__ import annotations

import numpy as np

from ...records import ArgSlot, LayerEntry, Parameter, connect
from ...tf_runtime.loader import tf
from .tracing import tf_variable

PASS_THROUGH = frozenset({"Identity", "IdentityN", "Snapshot", "ReadVariableOp"})
"""Op types whose output ``k`` is their input ``k``: not layers."""

NOT_LAYERS = frozenset({"Const", "NoOp", "Placeholder"})


class VariableInfo:
    """A variable read by the graph, as a parameter: name, shape, dtype, bytes.

    Examples
    --------
    >>> info = VariableInfo("dense.kernel", (3, 2), "float32")
    >>> info.numel(), info.element_size(), info.nbytes
    (6, 4, 24)
    """

    __slots__ = ("name", "shape", "dtype", "variable")

    def __init__(self, name, shape, dtype, variable=None):
        self.name = name
        self.shape = tuple(shape)
        self.dtype = dtype
        self.variable = variable

    def value(self):
        """The variable's current value (a tensor)."""
        return tf.convert_to_tensor(tf_variable(self.variable))

    def handle(self):
        """The variable's resource handle, for ops that take the variable itself."""
        return tf_variable(self.variable).handle

    def numel(self):
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def element_size(self):
        return tf.as_dtype(self.dtype).size

    @property
    def nbytes(self):
        return self.numel() * self.element_size()

    def record(self):
        """The variable as a :class:`~torchlens_like.records.Parameter`."""
        return Parameter(self.name, self.shape, self.nbytes)


class OpReplay:
    """What the replayer needs to run one op again: its ``NodeDef`` and output index.

    ``library`` is the traced graph's function library (bodies of ``While``,
    ``If`` and function calls), shared by all ops of one trace; ``values`` is
    ``{ArgSlot: value}`` for constant slots (NumPy arrays) and variable slots
    (:class:`VariableInfo`), shared by all ops of one walk.
    """

    __slots__ = ("node_def", "output_index", "input_dtypes", "library", "values")

    def __init__(self, op, output_index, library, values=None):
        self.node_def = op.node_def
        self.output_index = output_index
        self.input_dtypes = [t.dtype for t in op.inputs]
        self.library = library
        self.values = values

    def with_values(self, values):
        """This op's replay record with the argument values of one walk."""
        replay = OpReplay.__new__(OpReplay)
        for name in self.__slots__:
            setattr(replay, name, getattr(self, name))
        replay.values = values
        return replay

    def __repr__(self):
        return f"<{self.node_def.op} {self.node_def.name}:{self.output_index}>"


class GraphRecords:
    """The nodes of one trace, and how to fetch each node's value.

    Attributes
    ----------
    nodes : list of LayerEntry, in graph order
    fetch : dict
        ``{id(node): graph tensor}`` whose value is the node's activation.
    outputs_by_call : dict
        ``{ModuleCall: [nodes the layer call returned]}``.
    variables : list of VariableInfo
        Every variable the graph reads, once.
    values : dict
        ``{ArgSlot: value}`` of the constant and variable slots (for the replayer).
    """

    def __init__(self):
        self.nodes = []
        self.fetch = {}
        self.outputs_by_call = {}
        self.variables = []
        self.values = {}
        self.calls = 0

    def constant(self, value, name=None):
        """A new constant slot holding ``value``."""
        slot = ArgSlot("const", None, name)
        self.values[slot] = value
        return slot


def walk_graph(trace):
    """Turn a :class:`~.tracing.Trace` into :class:`GraphRecords` (fresh nodes each call)."""
    graph = trace.graph
    records = GraphRecords()
    sources = _input_sources(trace, records)
    _variable_sources(trace, graph, sources, records)
    output_names = {t.name for _, t in trace.outputs}
    containment = _containment(trace, graph)
    for index, op in enumerate(graph.get_operations()):
        if op.type in PASS_THROUGH:
            for inp, out in zip(op.inputs, op.outputs):
                if inp.name in sources:
                    sources[out.name] = sources[inp.name]
            continue
        if op.type == "Const":
            sources[op.outputs[0].name] = records.constant(
                tf.make_ndarray(op.get_attr("value")), op.name)
            continue
        if op.type in NOT_LAYERS or not op.outputs:
            continue
        _add_op(op, containment[index], sources, records, output_names, trace)
    _add_outputs(trace, sources, records)
    _mark_module_outputs(trace, graph, sources, records)
    return records


def _input_sources(trace, records):
    sources = {}
    for path, placeholder in zip(trace.input_paths, trace.inputs):
        node = _new_node(records, "input", "input", placeholder, ())
        node.source = ("args",) + path[1:] if path[0] == 0 else ("kwargs",) + path[1:]
        records.fetch[id(node)] = placeholder
        sources[placeholder.name] = ArgSlot("layer", node)
    return sources


def _variable_sources(trace, graph, sources, records):
    for external, internal in graph.captures:
        if external.dtype == tf.resource:
            name, variable = trace.variables[id(external)]
            if variable is not None:
                info = VariableInfo(name, variable.shape, _dtype_name(variable.dtype), variable)
            else:
                info = VariableInfo(name, (), "float32")
            records.variables.append(info)
            slot = sources[internal.name] = ArgSlot("param", info.record(), name)
            records.values[slot] = info
        else:
            sources[internal.name] = records.constant(external.numpy(), internal.name)


def _op_facts(op, trace, output_names):
    """``(attributes, [OpReplay or None per output])`` of an op, worked out once per trace.

    An output gets a node (an ``OpReplay``) when it is the first, or used.
    """
    facts = trace.op_facts.get(op.name)
    if facts is None:
        replays = [OpReplay(op, index, trace.library)
                   if index == 0 or tensor.consumers() or tensor.name in output_names else None
                   for index, tensor in enumerate(op.outputs)]
        facts = trace.op_facts[op.name] = (_attributes(op), replays)
    return facts


def _add_op(op, stack, sources, records, output_names, trace):
    args = tuple(sources.get(tensor.name) or ArgSlot("const", None, tensor.name)
                 for tensor in op.inputs)
    attrs, replays = _op_facts(op, trace, output_names)
    call_index = records.calls
    records.calls += 1
    nodes = []
    for index, tensor in enumerate(op.outputs):
        if replays[index] is None:
            continue
        node = _new_node(records, "op", op.type, tensor, stack)
        node.call_index = call_index
        node.replay = replays[index].with_values(records.values)
        node.output_path = index if len(op.outputs) > 1 else None
        records.fetch[id(node)] = tensor
        sources[tensor.name] = ArgSlot("layer", node)
        nodes.append(node)
    connect(nodes, args, attrs)


def _add_outputs(trace, sources, records):
    for path, tensor in trace.outputs:
        node = _new_node(records, "output", "output", tensor, ())
        node.source = path
        slot = sources.get(tensor.name)
        if slot is not None and slot.kind == "layer":
            connect([node], (slot,))
        records.fetch[id(node)] = tensor


def _mark_module_outputs(trace, graph, sources, records):
    for call in trace.calls:
        if call.graph is not graph:
            continue
        produced = []
        for tensor in call.outputs:
            slot = sources.get(tensor.name)
            if slot is not None and slot.kind == "layer":
                produced.append(slot.ref)
                if call.key not in slot.ref.module_passes_output:
                    slot.ref.module_passes_output.append(call.key)
        records.outputs_by_call[call.key] = produced


def _containment(trace, graph):
    """For each op position in ``graph``: the module calls holding it, outermost first."""
    calls = [c for c in trace.calls if c.graph is graph and c.stop > c.start]
    count = len(graph.get_operations())
    per_op = [()] * count
    stack, current, j = [], (), 0
    for i in range(count):
        changed = False
        while stack and stack[-1].stop <= i:
            stack.pop()
            changed = True
        while j < len(calls) and calls[j].start <= i:
            stack.append(calls[j])
            j += 1
            changed = True
        if changed:
            current = tuple(c.key for c in stack)
        per_op[i] = current
    return per_op


def _new_node(records, kind, name, tensor, stack):
    shape = tuple(tensor.shape.as_list()) if tensor.shape.rank is not None else None
    node = LayerEntry(kind, name, shape, tensor.dtype.name, tensor.device or "CPU",
                      tensor_bytes(shape, tensor.dtype), stack)
    node.meta["capture_index"] = len(records.nodes)
    records.nodes.append(node)
    return node


def tensor_bytes(shape, dtype):
    """Bytes of a tensor of ``shape`` (0 while a size is unknown) and TF ``dtype``.

    Examples
    --------
    >>> tensor_bytes((2, 3), tf.float32), tensor_bytes((None, 3), tf.float32)
    (24, 0)
    """
    if shape is None or None in shape:
        return 0
    return int(np.prod(shape, dtype=np.int64)) * tf.as_dtype(dtype).size


def _dtype_name(dtype):
    return tf.as_dtype(dtype).name


def _attributes(op):
    """The op's attributes as plain Python values (its non-tensor arguments)."""
    found = {}
    for name in sorted(op.node_def.attr):
        if name.startswith("_"):
            continue
        value = op.get_attr(name)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, tf.DType):
            value = value.name
        elif isinstance(value, list):
            value = tuple(v.name if isinstance(v, tf.DType) else v for v in value)
        elif not isinstance(value, (int, float, bool, str, type(None))):
            value = str(value).strip()
        found[name] = value
    return found
