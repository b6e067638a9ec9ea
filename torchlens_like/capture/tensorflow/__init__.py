"""The TensorFlow / Keras capture backend: trace with ``tf.function``-style graph tracing.

A Keras 3 model (Sequential, functional, subclassed), a ``tf.Module`` or a
``tf.function`` is traced once per input signature into one TensorFlow graph
(:mod:`.tracing`, which also records the Keras layer calls: the modules);
the graph is walked into the same graph nodes the torch backend makes
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


def capture_tensorflow(model, args, kwargs):
    """Trace and walk a TensorFlow model; see :func:`.session.capture_tensorflow`."""
    return _session().capture_tensorflow(model, args, kwargs)


def plain_call_outputs(model, args, kwargs):
    """The model's own outputs; see :func:`.session.plain_call_outputs`."""
    return _session().plain_call_outputs(model, args, kwargs)


def _session():
    try:
        return importlib.import_module(".session", __name__)
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
