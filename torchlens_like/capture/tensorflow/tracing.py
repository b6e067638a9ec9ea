"""Trace a Keras model, ``tf.Module`` or ``tf.function`` into one TensorFlow graph.

Design decisions
----------------
* The model is traced once per input signature with
  ``tf.compat.v1.wrap_function``: the Python code runs once in graph mode and
  every TF op it creates lands in one graph, in creation order (a topological
  order). A ``tf.function`` the model calls internally stays one op (a
  ``PartitionedCall``); the model's own entry point, when it is a
  ``tf.function``, is traced from its Python function so its ops are seen.
* Python control flow on tensors (``if tf.reduce_sum(x) > 0``) is converted
  with AutoGraph for the model's own code (Keras' built-in layers are already
  graph code), so it becomes ``tf.cond`` / ``tf.while_loop`` as under
  ``tf.function``.
* Keras layers are the modules. While tracing, every layer of the model gets
  an instance attribute ``call`` wrapping its own ``call`` (Keras'
  ``__call__`` looks ``call`` up on the instance), which records where the
  layer's ops begin and end in the graph and what it returned. The attribute
  is removed in a ``finally`` block, and Keras' per-layer bookkeeping that
  ``__call__`` touches (``_called``, ``built``) is put back, so the model is
  left as it was. A layer's address is the chain of layer names from the
  model down, joined with dots (``"block1.conv"``); each call of the same
  address is one pass (``"dense:2"``).
* The traced graph is kept per model (weakly) and input signature, so
  repeated calls skip tracing; it reads the variables, not copies of them,
  so later weight changes are seen.
"""

from __future__ import annotations

import functools
import threading
import weakref

import numpy as np
from ...tf_runtime.loader import tf

from ...nested import find_leaves, map_nested
from ...records import ModuleCall

_trace_lock = threading.Lock()
_cache = weakref.WeakKeyDictionary()


class LayerCall:
    """One call of one Keras layer while tracing.

    ``address`` (dotted), ``pass_num``, ``class_name``, ``graph`` (where its
    ops were created), ``start`` / ``stop`` (op positions in that graph) and
    ``outputs`` (the graph tensors ``call`` returned, flattened).
    """

    __slots__ = ("address", "pass_num", "class_name", "graph", "start", "stop", "outputs",
                 "depth")

    def __init__(self, address, pass_num, class_name, graph, start, depth):
        self.address = address
        self.pass_num = pass_num
        self.class_name = class_name
        self.graph = graph
        self.start = start
        self.stop = start
        self.outputs = []
        self.depth = depth

    @property
    def key(self):
        """The call as a :class:`~torchlens_like.records.ModuleCall`."""
        return ModuleCall(self.address, self.pass_num)


class Trace:
    """The model traced for one input signature.

    Attributes
    ----------
    function : the ``wrap_function`` result (graph plus variables)
    graph : its ``FuncGraph``
    input_paths : list
        Path of each tensor input inside ``(args, kwargs)``, in placeholder order.
    inputs : list of graph placeholders, same order
    outputs : list of ``(path, graph tensor)`` for the model's return value
    calls : list of LayerCall, in order of entry
    variables : dict
        ``{id(captured handle): (name, variable)}`` for every variable the graph reads.
    module_types : dict
        ``{address: layer class name}``.
    pruned : dict
        ``{fetched tensor names: pruned function}``, filled by the execution.
    op_facts : dict
        ``{op name: (attributes, replay information)}``, filled by the graph walk.
    """

    def __init__(self):
        self.function = None
        self.graph = None
        self.input_paths = []
        self.inputs = []
        self.outputs = []
        self.calls = []
        self.variables = {}
        self.module_types = {}
        self.pruned = {}
        self.op_facts = {}
        self._library = None

    @property
    def library(self):
        """The graph's function library (bodies of While, If and function calls)."""
        if self._library is None:
            self._library = self.graph.as_graph_def().library
        return self._library


def is_keras_layer(obj):
    """Whether ``obj`` is a Keras 3 layer (models are layers).

    Examples
    --------
    >>> import keras
    >>> is_keras_layer(keras.layers.Dense(2)), is_keras_layer(object())
    (True, False)
    """
    try:
        import keras
    except ImportError:
        return False
    return isinstance(obj, keras.layers.Layer)


def model_name(model):
    """A readable name for the model: the Keras name, or the class / function name."""
    if is_keras_layer(model):
        return model.name
    return getattr(model, "name", None) or getattr(model, "__name__", type(model).__name__)


def trace_model(model, args, kwargs):
    """Trace ``model(*args, **kwargs)`` once, or return the cached trace of this signature.

    ``args`` / ``kwargs`` may nest tuples, lists and dicts; NumPy arrays and
    TF tensors in them become graph inputs of their exact shape and dtype,
    every other value is passed as it is (``training=True``).
    """
    tensors, skeleton = split_inputs((tuple(args), dict(kwargs)))
    key = (repr(skeleton), tuple((p, tuple(t.shape), t.dtype.name) for p, t in tensors))
    per_model = _cache.get(model)
    if per_model is not None and key in per_model:
        return per_model[key]
    with _trace_lock:
        trace = _trace(model, tensors, skeleton)
    _cache.setdefault(model, {})[key] = trace
    return trace


def _trace(model, tensors, skeleton):
    trace = Trace()
    trace.input_paths = [path for path, _ in tensors]
    runner, layers = _entry_point(model)
    state = [(layer, layer.__dict__.get("_called"), layer.__dict__.get("built"))
             for layer in layers]
    recorder = _CallRecorder(trace, model)
    specs = [tf.TensorSpec(t.shape, t.dtype) for _, t in tensors]

    def traced(*flat):
        args, kwargs = _fill(skeleton, dict(zip(trace.input_paths, flat)))
        return runner(*args, **kwargs)

    try:
        recorder.install(layers)
        trace.function = tf.compat.v1.wrap_function(traced, specs)
    except Exception as exc:
        raise _explain(exc, recorder) from exc
    finally:
        recorder.remove()
        for layer, called, built in state:
            for name, value in (("_called", called), ("built", built)):
                if value is not None:
                    object.__setattr__(layer, name, value)
    trace.graph = trace.function.graph
    trace.inputs = list(trace.graph.inputs[:len(specs)])
    trace.outputs = find_leaves(trace.function.structured_outputs, _is_graph_tensor)
    trace.variables = _variables(model, layers, trace, recorder.addresses)
    trace.module_types = recorder.module_types
    return trace


def _entry_point(model):
    """``(callable to trace, Keras layers to track)``."""
    if is_keras_layer(model):
        layers = list(model._flatten_layers(include_self=True, recursive=True))
        return model, layers
    python_function = getattr(model, "python_function", None)
    if python_function is not None:
        return tf.autograph.to_graph(python_function), []
    if isinstance(model, tf.Module) and callable(model):
        call = type(model).__call__
        call = getattr(call, "python_function", call)
        return functools.partial(tf.autograph.to_graph(call), model), []
    if callable(model):
        return tf.autograph.to_graph(model), []
    raise TypeError(f"model must be a Keras model, a tf.Module or a tf.function; got "
                    f"{type(model).__name__}.")


class _CallRecorder:
    """Installs and removes the per-layer ``call`` wrappers of one trace."""

    def __init__(self, trace, root):
        self.trace = trace
        self.root = root
        self.stack = []
        self.counts = {}
        self.module_types = {}
        self.addresses = {}
        self.installed = []
        self.thread = threading.get_ident()

    def install(self, layers):
        for layer in layers:
            if "call" in layer.__dict__:
                raise TypeError(
                    f"Layer '{layer.name}' has an instance attribute 'call'; torchlens_like "
                    "needs to wrap the class's call method. Define call on the class.")
            own = layer.call
            if not type(layer).__module__.startswith("keras."):
                own = functools.partial(tf.autograph.to_graph(type(layer).call), layer)
            object.__setattr__(layer, "call", self._wrap(layer, own))
            self.installed.append(layer)

    def remove(self):
        for layer in self.installed:
            object.__delattr__(layer, "call")
        self.installed = []

    def _wrap(self, layer, own):
        recorder = self

        def call(*args, **kwargs):
            if threading.get_ident() != recorder.thread:
                return own(*args, **kwargs)
            entry = recorder.enter(layer)
            outputs = own(*args, **kwargs)
            recorder.exit(entry, outputs)
            return outputs

        return call

    def enter(self, layer):
        graph = tf.compat.v1.get_default_graph()
        if layer is self.root:
            self.stack.append(None)
            return None
        parent = next((c for c in reversed(self.stack) if c is not None), None)
        address = f"{parent.address}.{layer.name}" if parent is not None else layer.name
        self.counts[address] = self.counts.get(address, 0) + 1
        self.module_types.setdefault(address, type(layer).__name__)
        self.addresses.setdefault(id(layer), address)
        call = LayerCall(address, self.counts[address], type(layer).__name__, graph,
                         len(graph.get_operations()), len(self.stack))
        self.stack.append(call)
        self.trace.calls.append(call)
        return call

    def exit(self, call, outputs):
        self.stack.pop()
        if call is None:
            return
        call.stop = len(call.graph.get_operations())
        call.outputs = [t for _, t in find_leaves(outputs, _is_graph_tensor)]

    def failing_layer(self):
        open_calls = [c for c in self.stack if c is not None]
        return open_calls[-1].address if open_calls else None


def _explain(exc, recorder):
    """The error to raise when tracing failed: the model's own, or a clear one."""
    where = recorder.failing_layer()
    place = f"in layer '{where}'" if where else "in the model's own code"
    untraceable = (tf.errors.OperatorNotAllowedInGraphError, NotImplementedError)
    message = str(exc)
    if isinstance(exc, untraceable) or "numpy()" in message or "'numpy'" in message or \
            "Tensor' object has no attribute" in message or "symbolic" in message:
        return TypeError(
            f"The model cannot be traced into a TensorFlow graph: {place}, Python code uses a "
            f"tensor's value ({type(exc).__name__}: {message.splitlines()[0] if message else ''})."
            " torchlens_like logs TensorFlow models by tracing them with tf.function. Replace "
            "Python-level uses of tensor values (.numpy(), float(x), int(x), a Python `if` on "
            "a tensor that AutoGraph cannot convert) with TF ops (tf.cond, tf.where, "
            "tf.while_loop), or pass the inputs such code depends on as Python values.")
    if hasattr(exc, "add_note"):
        exc.add_note(f"[torchlens_like] Tracing the model failed {place}. The model and "
                     "TensorFlow were restored; the error above is the model's own.")
    return exc


def _variables(model, layers, trace, addresses):
    """``{id(captured handle): (dotted name, variable)}`` for the variables the graph reads.

    Keras variables are named ``{layer address}.{variable name}``; a
    ``tf.Module``'s by its attribute path; anything else the graph captured
    by the name of its placeholder.
    """
    named = {}
    for layer in layers:
        prefix = addresses.get(id(layer), "" if layer is model else layer.name)
        own = list(getattr(layer, "_trainable_variables", [])) + \
            list(getattr(layer, "_non_trainable_variables", [])) + \
            [generator.state for generator in getattr(layer, "_seed_generators", [])]
        for variable in own:
            _name(named, variable, f"{prefix}.{variable.name}" if prefix else variable.name)
    if isinstance(model, tf.Module):
        for path, variable in model._flatten(predicate=lambda v: isinstance(v, tf.Variable),
                                              with_path=True):
            _name(named, variable, ".".join(str(p) for p in path))
    for handle, internal in trace.graph.captures:
        if id(handle) not in named and handle.dtype == tf.resource:
            named[id(handle)] = (internal.op.name.split("/")[-1], None)
    return named


def _name(named, variable, name):
    handle = _handle(variable)
    if handle is not None and id(handle) not in named:
        named[id(handle)] = (name, variable)


def _handle(variable):
    return getattr(tf_variable(variable), "handle", None)


def tf_variable(variable):
    """The ``tf.Variable`` behind a Keras variable (or the variable itself)."""
    if isinstance(variable, tf.Variable):
        return variable
    return getattr(variable, "value", variable)


def _is_graph_tensor(obj):
    return isinstance(obj, tf.Tensor) and not hasattr(obj, "numpy")


def _is_array(obj):
    """NumPy arrays, TF tensors and variables, and other arrays (a torch tensor from a DataLoader)."""
    return isinstance(obj, (np.ndarray, tf.Tensor, tf.Variable)) or (
        hasattr(obj, "__array__") and hasattr(obj, "shape") and hasattr(obj, "dtype"))


def as_tensor(leaf, dtype=None):
    """A TF tensor of an input leaf (NumPy, TF, or anything with ``__array__``)."""
    if not isinstance(leaf, (np.ndarray, tf.Tensor, tf.Variable)):
        leaf = np.asarray(leaf)
    return tf.convert_to_tensor(leaf, dtype=dtype)


def split_inputs(structure):
    """``([(path, tensor)], skeleton)``: the array leaves as tensors, and the rest.

    ``skeleton`` is ``structure`` with each array replaced by its path.
    """
    tensors = [(path, as_tensor(leaf)) for path, leaf in find_leaves(structure, _is_array)]
    return tensors, map_nested(structure, lambda leaf, path: _Slot(path), _is_array)


class _Slot:
    __slots__ = ("path",)

    def __init__(self, path):
        self.path = path

    def __repr__(self):
        return f"<input {self.path}>"


def _fill(skeleton, values):
    """Rebuild ``skeleton`` with each input slot replaced by ``values[path]``."""
    return map_nested(skeleton, lambda slot, path: values[slot.path],
                      lambda obj: isinstance(obj, _Slot))
