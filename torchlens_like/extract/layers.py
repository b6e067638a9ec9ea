"""Finding the requested layers once, on a probe of the first stimuli.

A metadata-only logging pass over two stimuli resolves every requested key
(label, short label, module address with ``:pass``, position) to a layer: its
capture position, label, function, shape and dtype. Every later batch then
costs one logging pass that keeps only those positions
(:func:`torchlens_like.api.log_layers_at_positions`).

The stimulus axis of each layer is taken from the actual tensor: the one axis
whose size is the number of probe stimuli. When that is ambiguous (another
axis has the same size, as in a ``(tokens, stimuli, features)`` layer with
two tokens), a second probe with one stimulus more decides: the stimulus axis
is the one that grew. That probe is a lean pass over the graph just logged
(:func:`torchlens_like.api.plan_lean_pass`), keeping only the ambiguous
layers; where none can run, a second metadata pass.
"""

from __future__ import annotations

import dataclasses

import torch

from ..api import GraphDeparted, LeanUnavailable, get_model_metadata, plan_lean_pass


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """Where one requested layer is and what it looks like (shape per stimulus)."""

    key: str
    label: str
    position: int
    func_name: str
    stimulus_axis: int
    shape: tuple
    dtype: str


def layer_key(request):
    """The string key a requested layer is stored under.

    Examples
    --------
    >>> layer_key("layer3"), layer_key(-2)
    ('layer3', '-2')
    """
    return str(request)


def locate_layers(model, probe_inputs, requests, history=None):
    """Resolve ``requests`` on a probe of 2 (or, when needed, 3) stimuli.

    Parameters
    ----------
    model : torch.nn.Module
    probe_inputs : torch.Tensor
        At least the first two stimuli of the set (fewer only when the set is
        smaller), stimulus axis first.
    requests : list of str or int
        Anything ``layers_to_save`` accepts.
    history : ModelHistory, optional
        A capture of the probe's first two stimuli made already (the
        extraction's validated first check); without it one is logged.

    Returns
    -------
    list of LayerPlan

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    >>> [(p.key, p.label, p.shape) for p in locate_layers(model, torch.rand(3, 3, 8, 8), ["0", -2])]
    [('0', 'conv2d_1_2', (4, 6, 6)), ('-2', 'relu_1_3', (4, 6, 6))]
    """
    count = min(2, len(probe_inputs))
    if history is None:
        history = get_model_metadata(model, probe_inputs[:count])
    found = []
    for request in requests:
        try:
            found.append(history[request])
        except (KeyError, IndexError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise ValueError(f"layers: {message}") from None
    ambiguous = [layer for layer in found
                 if count > 1 and tuple(layer.tensor_shape).count(count) != 1]
    larger = _larger_probe(model, probe_inputs, count, history, ambiguous) if ambiguous else {}
    plans = []
    for request, layer in zip(requests, found):
        shape = tuple(layer.tensor_shape)
        axes = [i for i, size in enumerate(shape) if size == count]
        if len(axes) != 1 and count > 1:
            grown = larger[layer.meta["capture_index"]]
            axes = [i for i, (a, b) in enumerate(zip(shape, grown)) if a != b]
        if count == 1:
            axes = [0]
        if len(axes) != 1:
            raise ValueError(f"layer {request!r} ({layer.layer_label}, shape {shape}) has no "
                             "axis that follows the number of stimuli, so its rows cannot be "
                             "told apart. Choose a layer that depends on the input.")
        axis = axes[0]
        plans.append(LayerPlan(layer_key(request), layer.layer_label,
                               layer.meta["capture_index"], layer.func_name, axis,
                               shape[:axis] + shape[axis + 1:], str(layer.tensor_dtype)))
    return plans


def _larger_probe(model, probe_inputs, count, history, layers):
    """``{capture position: shape}`` of ``layers`` on one stimulus more than ``history`` saw."""
    if len(probe_inputs) <= count:
        raise ValueError("the stimulus axis of a layer is ambiguous and the stimulus set is "
                         "too small to tell it apart; use at least 3 stimuli")
    inputs = probe_inputs[:count + 1]
    positions = [layer.meta["capture_index"] for layer in layers]
    if not in_training_mode(model):  # a lean pass in training mode would change the model
        try:
            with torch.no_grad():
                kept = plan_lean_pass(model, history, positions).run((inputs,), {},
                                                                     stop_early=True)
            return {position: tuple(tensor.shape) for position, tensor in kept.items()}
        except (LeanUnavailable, GraphDeparted):
            pass
    larger = get_model_metadata(model, inputs)
    return {layer.meta["capture_index"]: tuple(larger[layer.layer_label].tensor_shape)
            for layer in layers}


def in_training_mode(model):
    """Whether a module of ``model`` is in training mode (its passes may change its state).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Dropout())
    >>> in_training_mode(model), in_training_mode(model.eval()), in_training_mode(len)
    (True, False, False)
    """
    return isinstance(model, torch.nn.Module) and any(m.training for m in model.modules())
