"""One logging call on a TensorFlow model: trace (cached), walk, then one execution."""

from __future__ import annotations

from ...nested import find_leaves, pick
from ...records import CaptureResult, Parameter
from ...tf_runtime.loader import tf
from ...tf_runtime.state import global_state_kept
from .execution import run_trace
from .graphwalk import tensor_bytes, walk_graph
from .tracing import as_tensor, is_keras_layer, model_name, trace_model


class TracedPass:
    """The graph nodes of one logging call, and the one run that fills their values.

    Made by :func:`trace_pass`; ``result`` holds fresh nodes for every call,
    so the graph passes may rewrite them before :meth:`run` runs the model once.

    Attributes
    ----------
    result : CaptureResult
        The nodes (values not computed yet), module calls, layer types and the
        model's weights as parameters (a Keras model's ``weights``, a
        ``tf.Module``'s ``variables``; for a ``tf.function``, the variables
        the graph reads).
    """

    def __init__(self, model, trace, records, input_values):
        self.trace = trace
        used = {call.address for call in records.outputs_by_call}
        self.result = CaptureResult(
            nodes=records.nodes, model_name=model_name(model), backend="tensorflow",
            module_outputs=records.outputs_by_call,
            module_types={a: t for a, t in trace.module_types.items() if a in used},
            parameters=_parameters(model, records.variables))
        self._fetch = records.fetch
        self._input_values = input_values

    def run(self, save):
        """Run the model once; give the nodes at the capture positions ``save`` their values.

        ``save`` is ``"all"``, None or a set of capture indices. Nodes whose
        shape the trace could not tell get it from the run (they are fetched
        even when not saved), and so do the outputs.
        """
        nodes = self.result.nodes
        saved = nodes if save == "all" else [nodes[i] for i in sorted(save or ()) if i < len(nodes)]
        wanted = {id(n) for n in saved}
        unknown = [n for n in nodes if n.tensor_shape is None or None in n.tensor_shape]
        fetched = saved + unknown + [n for n in nodes if n.kind == "output"]
        with global_state_kept():
            values = run_trace(self.trace, [self._fetch[id(n)] for n in fetched],
                               self._input_values)
        for node in fetched:
            value = values[self._fetch[id(node)].name]
            node.tensor_shape = tuple(value.shape.as_list())
            node.tensor_fsize = tensor_bytes(node.tensor_shape, value.dtype)
            if id(node) in wanted:
                node.tensor_contents = _to_numpy(value)


def _parameters(model, variables):
    weights = _model_weights(model)
    if weights is None:
        return [variable.record() for variable in variables]
    return [Parameter(_weight_name(w), tuple(w.shape),
                      tensor_bytes(tuple(w.shape), tf.as_dtype(w.dtype)))
            for w in weights]


def _weight_name(weight):
    return getattr(weight, "path", None) or weight.name


def _to_numpy(value):
    """A NumPy array; tensors of no NumPy type (variant, resource) stay tensors."""
    return value.numpy() if value.dtype.is_numpy_compatible else value


def trace_pass(model, args, kwargs):
    """Trace (or reuse the trace of) ``model`` for these inputs and walk it into nodes.

    Examples
    --------
    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    >>> traced = trace_pass(model, (np.ones((1, 3), "float32"),), {})
    >>> [n.func_name for n in traced.result.nodes]
    ['input', 'MatMul', 'BiasAdd', 'output']
    """
    with global_state_kept():
        trace = trace_model(model, args, kwargs)
    records = walk_graph(trace)
    values = [as_tensor(leaf, placeholder.dtype) for leaf, placeholder in
              zip(_input_leaves(trace, args, kwargs), trace.inputs)]
    return TracedPass(model, trace, records, values)


def _input_leaves(trace, args, kwargs):
    structure = (tuple(args), dict(kwargs))
    return [pick(structure, path) for path in trace.input_paths]


def plain_call_outputs(model, args, kwargs):
    """``{path: NumPy array}`` of what ``model(*args, **kwargs)`` returns, run eagerly.

    The ground truth for a logged call's outputs. Variables the call changes
    (a training-mode ``Dropout``'s seed, batch statistics) are put back, and
    global TF / Keras state is restored.

    Examples
    --------
    >>> import numpy as np, tensorflow as tf
    >>> plain_call_outputs(tf.function(lambda x: x * 2), (np.ones(2, "float32"),), {})
    {(): array([2., 2.], dtype=float32)}
    """
    variables = _all_variables(model)
    before = [tf.identity(v) for v in variables]
    try:
        with global_state_kept():
            result = model(*args, **kwargs)
    finally:
        for variable, value in zip(variables, before):
            variable.assign(value)
    return {path: _to_numpy(value) for path, value in find_leaves(result, tf.is_tensor)}


def _model_weights(model):
    if is_keras_layer(model):
        return model.weights
    if isinstance(model, tf.Module):
        return model.variables
    return None


def _all_variables(model):
    found = list(getattr(model, "variables", ()))
    if is_keras_layer(model):
        found += [generator.state for layer in model._flatten_layers(include_self=True)
                  for generator in getattr(layer, "_seed_generators", [])]
    return list({id(v): v for v in found}.values())
