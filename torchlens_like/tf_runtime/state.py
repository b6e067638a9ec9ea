"""Leave no trace: TensorFlow and Keras global state around a logging call.

Tracing runs the model's Python code once in graph mode and the execution
runs the pruned graph; neither should change what the caller sees
afterwards. :func:`global_state_kept` snapshots, and restores in a
``finally`` block, everything global that model code can touch while being
traced or run: Keras' per-thread global state (learning phase, call context,
name scopes, the global seed generator), TensorFlow's global seed and its
op-seed counter, the global ``tf.random.Generator`` if one exists, whether
``tf.function`` runs eagerly, and Python's and NumPy's random generators.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
from .loader import tf
from tensorflow.python.eager import context
from tensorflow.python.ops import stateful_random_ops


@contextlib.contextmanager
def global_state_kept():
    """Restore TF / Keras global state on exit, whatever happens inside.

    Examples
    --------
    >>> import tensorflow as tf
    >>> before = tf.config.functions_run_eagerly()
    >>> with global_state_kept():
    ...     tf.config.run_functions_eagerly(not before)
    >>> tf.config.functions_run_eagerly() == before
    True
    """
    snapshot = _snapshot()
    try:
        yield
    finally:
        _restore(snapshot)


def _snapshot():
    ctx = context.context()
    generator = stateful_random_ops.global_generator
    return {
        "eager_functions": tf.config.functions_run_eagerly(),
        "keras": _keras_state(),
        "seed": (ctx._seed, ctx._rng.getstate() if getattr(ctx, "_rng", None) else None),
        "generator": (generator, tf.identity(generator.state) if generator is not None
                      else None),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def _restore(snapshot):
    tf.config.run_functions_eagerly(snapshot["eager_functions"])
    tracker = _keras_tracker()
    if tracker is not None:
        saved = snapshot["keras"]
        for name in list(vars(tracker)):
            if name not in saved:
                delattr(tracker, name)
        for name, value in saved.items():
            setattr(tracker, name, value)
    ctx = context.context()
    seed, rng_state = snapshot["seed"]
    if ctx._seed != seed:
        ctx._set_global_seed(seed)
    if rng_state is not None:
        ctx._rng.setstate(rng_state)
    generator, state = snapshot["generator"]
    stateful_random_ops.global_generator = generator
    if generator is not None:
        generator.state.assign(state)
    random.setstate(snapshot["python"])
    np.random.set_state(snapshot["numpy"])


def _keras_tracker():
    try:
        from keras.src.backend.common import global_state
    except ImportError:
        return None
    return global_state.GLOBAL_STATE_TRACKER


def _keras_state():
    tracker = _keras_tracker()
    return dict(vars(tracker)) if tracker is not None else {}
