"""The validator's rules, in one place: when a layer is not replayed, and when it may ignore
a perturbed parent.

Two registries, each a name-to-entry dict:

:data:`NOT_REPLAYABLE`
    ``{function: reason}``: calls that cannot be re-run from saved values.
    Such a layer is reported as not replayed (with the reason); its saved
    output is still checked through every child, which re-runs on it.
:data:`INSENSITIVITY_RULES`
    ``{name: rule(node, parent) -> bool}``: the validator replaces each
    parent of a reproduced layer by random values; an output that does not
    change is accepted only when a rule says it cannot depend on that
    parent's values. Rules are general, never a list of models: the output is
    discrete, the parent only lends its shape or dtype, it holds running
    statistics that training-mode normalisation overwrites, or the call's own
    derivative with respect to the parent is zero at the saved values
    (a zero weight, a zero mask, ``relu`` of negative values, a saturated
    clamp, a one-sided ``where``, softmax over one key), or the parent is the
    target of a write that overwrites all of it.

To add a case, add an entry with a name saying when it applies; rules are
tried in the dict's order, cheapest first.
"""

from __future__ import annotations

import math

import torch

from ..records import ArgSlot
from ..nested import pick
from .compare import TOLERANCES, is_continuous
from .rerun import run_call

NOT_REPLAYABLE = {
    torch.autograd.grad: "it differentiates through the autograd graph of the logged pass, "
                         "which saved values do not carry",
}
"""``{function: why it cannot be re-run from saved values}``."""

def not_replayable_layers(layers):
    """``{label: reason}`` of the layers whose call is in :data:`NOT_REPLAYABLE`.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> not_replayable_layers(tll.log_forward_pass(torch.nn.Linear(2, 2), torch.ones(2)).layers)
    {}
    """
    return {layer.layer_label: f"{layer.func_name}: {NOT_REPLAYABLE[layer.replay.func]}"
            for layer in layers
            if layer.kind == "op" and layer.replay.func in NOT_REPLAYABLE}


UNDEFINED_VALUES = frozenset({"empty", "empty_like", "new_empty", "empty_strided",
                              "new_empty_strided"})
"""Calls whose output values are uninitialised memory: only shape and dtype are compared."""

SHAPE_DONORS = {
    **{name: (0, "input") for name in (
        "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
        "randint_like")},
    **{name: (0, "self") for name in (
        "new_zeros", "new_ones", "new_full", "new_empty", "new_empty_strided", "new_tensor")},
    **{name: (1, "other") for name in ("expand_as", "view_as", "reshape_as", "type_as", "to")},
}
"""``{function: argument positions}`` whose tensor gives only shape, dtype or device
(``x.to(other)``, ``a.type_as(b)``, ``torch.zeros_like(x)``); the other arguments' values
still matter."""

RUNNING_STATISTICS = {name: (1, 2, "running_mean", "running_var")
                      for name in ("batch_norm", "instance_norm")}
"""``{function: argument positions}`` of running statistics, which a training-mode
normalisation updates but does not use."""

DERIVATIVE_SEED = 5_281_907
"""Seed of the random direction the derivative rule projects the output onto."""


def discrete_or_empty_output(node, parent):
    """Integer, boolean or empty outputs (comparisons, argmax) need not move."""
    saved = node.tensor_contents
    return not is_continuous(saved.dtype) or saved.numel() == 0


def shape_donor(node, parent):
    """The parent sits where the function reads only shape, dtype or device."""
    return node.arg_positions.get(parent) in SHAPE_DONORS.get(node.func_name, ())


def running_statistics(node, parent):
    """The parent is the running mean or variance of a training-mode normalisation."""
    return node.arg_positions.get(parent) in RUNNING_STATISTICS.get(node.func_name, ())


def zero_derivative(node, parent):
    """The call's derivative with respect to the parent is zero at the saved values.

    Computed by autograd through the recorded call itself, on the saved values,
    projected onto a random direction (so derivatives of opposite sign cannot
    cancel); zero up to rounding (the dtype's absolute tolerance, scaled by the
    output's magnitude: softmax over one key gives 1e-7, not 0). A parent the
    output is not connected to at all does not count: a function that ignores
    its input is what the perturbation test exists to catch.
    """
    if not parent.tensor_contents.dtype.is_floating_point:
        return False
    with torch.enable_grad():
        leaf = parent.tensor_contents.detach().clone().requires_grad_(True)
        try:
            output = run_call(node, {id(parent): leaf})
            if node.output_path is not None:
                output = pick(output, node.output_path)
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return False
            generator = torch.Generator().manual_seed(DERIVATIVE_SEED)
            direction = torch.randn(output.shape, generator=generator).to(output.dtype)
            (gradient,) = torch.autograd.grad(output, leaf, direction, allow_unused=True)
        except (RuntimeError, TypeError):
            return False
    if gradient is None:
        return False
    _, atol = TOLERANCES.get(parent.tensor_contents.dtype, (0.13, 0.13))
    scale = max(1.0, float(node.tensor_contents.abs().max()))
    return float(gradient.abs().max()) <= atol * scale


def overwritten_target(node, parent):
    """The parent is the target of a write (in place, or a ``*_scatter`` call) that overwrites
    all of it: with the parent's values replaced by NaN, no NaN reaches the output.

    Needed beside :func:`zero_derivative` because torch's derivative of
    ``as_strided_scatter`` with respect to its target is not zero where the
    target is overwritten.
    """
    target = node.args[0] if node.args else node.kwargs.get("input", node.kwargs.get("self"))
    if not isinstance(target, ArgSlot) or target.ref is not parent or not (
            node.replay.writes is not None or "scatter" in node.func_name):
        return False
    try:
        output = run_call(node, {id(parent): torch.full_like(parent.tensor_contents, math.nan)})
    except (RuntimeError, TypeError, ValueError):
        return False
    if node.output_path is not None:
        output = pick(output, node.output_path)
    return isinstance(output, torch.Tensor) and not bool(output.isnan().any())


INSENSITIVITY_RULES = {
    "discrete_or_empty_output": discrete_or_empty_output,
    "shape_donor": shape_donor,
    "running_statistics": running_statistics,
    "zero_derivative": zero_derivative,
    "overwritten_target": overwritten_target,
}
"""``{name: rule(node, parent) -> bool}``, tried in order by :func:`insensitive`."""


def insensitive(node, parent):
    """Name of the first rule by which ``node`` may ignore ``parent``'s values, or None.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(lambda x: torch.zeros_like(x), torch.ones(2))
    >>> insensitive(history["zeroslike_1"], history["input_1"])
    'shape_donor'
    >>> history = tll.log_forward_pass(lambda x: torch.relu(x - 5), torch.ones(2))
    >>> insensitive(history["relu_1"], history["sub_1"])
    'zero_derivative'
    >>> history = tll.log_forward_pass(lambda x: torch.relu(x + 5), torch.ones(2))
    >>> insensitive(history["relu_1"], history["add_1"]) is None
    True
    """
    for name, rule in INSENSITIVITY_RULES.items():
        if rule(node, parent):
            return name
    return None

