"""The TensorFlow / Keras capture backend: trace with ``tf.function``-style graph tracing.

A Keras 3 model (Sequential, functional, subclassed), a ``tf.Module`` or a
``tf.function`` is traced once per input signature into one TensorFlow graph
(:mod:`.tracing`, which also records the Keras layer calls: the modules);
the graph is walked into the same neutral records the torch backend makes
(:mod:`.graphwalk`); the graph passes label them; then the model runs once,
as a graph pruned to the requested op outputs (:mod:`.execution`). Global
TF / Keras state is restored around both (:mod:`.state`). The validator
replays each op from its ``NodeDef``
(:mod:`torchlens_like.validate.tf_replay`).

This package's ``__init__`` imports no TensorFlow: :func:`is_tensorflow_model`
looks only at modules the caller has already imported, so torch users pay
nothing for it. TensorFlow is the optional extra ``torchlens_like[tensorflow]``.
"""

from __future__ import annotations

import importlib
import sys

INSTALL_HINT = ("TensorFlow models need TensorFlow: pip install 'torchlens_like[tensorflow]' "
                "(TensorFlow 2.16 or newer, Keras 3).")


def is_tensorflow_model(model):
    """Whether ``model`` is a Keras layer / model, a ``tf.Module`` or a ``tf.function``.

    Imports nothing: a TensorFlow object cannot exist unless TensorFlow (or
    Keras) was imported already.

    Examples
    --------
    >>> import torch
    >>> is_tensorflow_model(torch.nn.ReLU())
    False
    """
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.layers.Layer):
        backend = keras.backend.backend()
        if backend != "tensorflow":
            raise TypeError(
                f"This Keras model runs on the '{backend}' backend; torchlens_like logs Keras "
                "models on the TensorFlow backend. Set KERAS_BACKEND=tensorflow before "
                f"importing keras. {INSTALL_HINT}")
        return True
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    return isinstance(model, (tf.Module, tf.types.experimental.PolymorphicFunction))


class TensorflowBackend:
    """Captures a Keras model, a ``tf.Module`` or a ``tf.function`` by tracing it.

    The graph is known before anything runs, so besides ``capture`` this
    backend offers ``trace``: the entry points label the traced graph, look
    the requested layers up, and run the model once for just those.

    Examples
    --------
    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    >>> x = np.ones((1, 3), "float32")
    >>> TensorflowBackend.accepts(model), TensorflowBackend.prepare(model) is model
    (True, True)
    >>> result = TensorflowBackend.capture(model, (x,), {}, {2})
    >>> [(n.func_name, n.has_saved_activation) for n in result.nodes]
    [('input', False), ('MatMul', False), ('BiasAdd', True), ('output', False)]
    >>> traced = TensorflowBackend.trace(model, (x,), {})
    >>> traced.run("all"); traced.result.nodes[-1].tensor_contents.shape
    (1, 2)
    >>> TensorflowBackend.plain_outputs(model, (x,), {})[()].shape
    (1, 2)
    """

    name = "tensorflow"
    seed_note = ("Keras layers draw random numbers from their own seed generators (e.g. "
                 "Dropout(seed=...)), which logging reads but never advances, so every log of "
                 "the same input gives the same values.")
    accepts = staticmethod(is_tensorflow_model)

    @staticmethod
    def prepare(model):
        """The model itself, once TensorFlow is known to be importable."""
        _session()
        return model

    @staticmethod
    def trace(runner, args, kwargs):
        """Trace and walk ``runner``; a :class:`.session.TracedPass` whose ``run`` fills values."""
        return _session().trace_pass(runner, args, kwargs)

    @staticmethod
    def capture(runner, args, kwargs, save, stop_when_saved=False):
        """Trace, then one run keeping ``save``; the run is pruned, so it never goes further."""
        traced = TensorflowBackend.trace(runner, args, kwargs)
        traced.run(save)
        return traced.result

    @staticmethod
    def keep_state(runner, args, kwargs):
        """Nothing to keep: logging and :meth:`plain_outputs` put every variable back."""
        return _nothing_to_restore

    @staticmethod
    def plain_outputs(runner, args, kwargs):
        """The model's own outputs; see :func:`.session.plain_call_outputs`."""
        return _session().plain_call_outputs(runner, args, kwargs)


def _nothing_to_restore():
    pass


def _session():
    try:
        return importlib.import_module(".session", __name__)
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
