"""Which replayer validates a history: the one of the capture backend that logged it.

:data:`REPLAYERS` maps a backend name (``history.backend``) to the module of
its replayer, imported on first use (so validating a torch history never
imports TensorFlow). A replayer module offers ``replay_layers(layers)``
(replay every layer, raise :class:`~.errors.ValidationError` on the first
failure, return ``{label: reason}`` of the layers not re-run),
``not_replayed(layers)`` (that dict without replaying) and
``matches(actual, expected) -> (same, largest difference)`` (the comparison
with the tolerance of the dtype, for the logged outputs against a plain
call's).
"""

from __future__ import annotations

import importlib

from ..model_state import refuse_inside_logged_pass
from ..registry import lookup
from .errors import ValidationError

REPLAYERS = {"torch": ".replay", "tensorflow": ".tf_replay"}
"""``{capture backend name: replayer module}``, relative to this package."""


def replayer(backend):
    """The replayer module for histories logged by ``backend``.

    Examples
    --------
    >>> replayer("torch").__name__
    'torchlens_like.validate.replay'
    >>> replayer("jax")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: unknown capture backend 'jax'; choose one of: tensorflow, torch. ...
    """
    module = lookup(REPLAYERS, backend, "capture backend",
                    "Only the backends listed have a replayer that validates their histories")
    return importlib.import_module(module, __package__)


def validate_history(history):
    """Replay every layer of a fully saved history; raise on the first failure.

    Parameters
    ----------
    history : ModelHistory
        Logged with ``layers_to_save="all"``.

    Returns
    -------
    dict
        ``{label: reason}`` of the layers not re-run (see
        :data:`~.rules.NOT_REPLAYABLE`); their saved outputs were checked
        through their children.

    Raises
    ------
    ValidationError
        Naming the layer, its function, its module, the parent, the largest
        difference and the kind of failure (:data:`~.errors.FAILURE_KINDS`).
    ValueError
        When some activations were not saved, or the history was loaded
        from a file (which keeps no replay information).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> validate_history(history)
    {}
    >>> history["linear_1"].tensor_contents.add_(1.0)  # doctest: +ELLIPSIS
    tensor(...)
    >>> validate_history(history)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValidationError: output_1_3 ...
    """
    refuse_inside_logged_pass("Validation")
    replay = replayer(history.backend)
    missing = [layer.layer_label for layer in history.layers if not layer.has_saved_activation]
    if missing:
        raise ValueError(
            f"Validation needs every activation saved; {len(missing)} are not (e.g. "
            f"{', '.join(missing[:5])}). Log with layers_to_save='all', or call "
            "tll.validate_saved_activations(model, input_args).")
    if any(layer.kind == "op" and layer.replay is None for layer in history.layers):
        raise ValueError(
            "This history has no replay information (the functions and generator states of "
            "its calls): it was loaded from a file, which keeps only data. Validate while the "
            "model is at hand: history.validate() before saving, or "
            "tll.validate_saved_activations(model, input_args).")
    return replay.replay_layers(history.layers)


def check_outputs(history, expected):
    """Check a history's output layers against a plain call's outputs.

    Parameters
    ----------
    history : ModelHistory
    expected : dict
        ``{path in the model's return value: array}``, as the backend's
        ``plain_outputs`` gives them.

    Raises
    ------
    ValidationError
        When the outputs sit elsewhere or differ.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.nested import find_tensors
    >>> model, x = torch.nn.Linear(3, 2), torch.rand(1, 3)
    >>> check_outputs(tll.log_forward_pass(model, x), dict(find_tensors(model(x))))
    """
    matches = replayer(history.backend).matches
    logged = {layer.source: layer for layer in history.layers if layer.kind == "output"}
    if logged.keys() != expected.keys():
        raise ValidationError(
            f"the logged outputs sit at {sorted(map(str, logged))}, a plain call returns "
            f"values at {sorted(map(str, expected))}")
    for path, layer in logged.items():
        same, difference = matches(layer.tensor_contents, expected[path])
        if not same:
            raise ValidationError(
                f"output {layer.layer_label} differs from the plain call's output at {path} "
                f"(largest difference {difference})", layer, "output differs")


def not_replayed(history):
    """``{label: reason}`` of the layers validation does not re-run.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> not_replayed(tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2)))
    {}
    """
    return replayer(history.backend).not_replayed(history.layers)
