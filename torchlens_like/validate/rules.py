"""When a layer may legitimately ignore a perturbed parent: the insensitivity rules.

The validator replaces each parent of a reproduced layer by random values; an
output that does not change is accepted only when one of the rules in
:data:`INSENSITIVITY_RULES` says the output cannot depend on that parent's
values. Each rule is a function ``rule(node, parent) -> bool`` over graph
nodes (``node`` the layer, ``parent`` the perturbed parent, both with saved
values). To add a case, write such a function and add it to the dict with a
name saying when it applies; rules are tried in the dict's order.
"""

from __future__ import annotations

import torch

from ..capture.inplace import call_traits
from ..graph.layer import ArgSlot
from .compare import is_continuous

SHAPE_ONLY = frozenset({
    "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_full", "new_empty", "new_empty_strided",
    "new_tensor", "expand_as", "view_as", "reshape_as", "type_as",
})
"""Calls whose output depends on a tensor argument's shape, dtype or device only."""

IGNORABLE_ARGUMENTS = {
    **{name: (1, 2, "running_mean", "running_var") for name in ("batch_norm", "instance_norm")},
    **{name: (0, "input", "self") for name in (
        "scatter", "scatter_add", "scatter_reduce", "index_put", "index_copy", "index_fill",
        "masked_scatter", "slice_scatter", "select_scatter", "diagonal_scatter",
        "as_strided_scatter")},
}
"""``{function: argument positions}`` whose values the output may not depend on at all:
running statistics in training-mode normalisation, and the target of a scatter that
overwrites every element."""


def discrete_or_empty_output(node, parent):
    """Integer, boolean or empty outputs (comparisons, argmax) need not move."""
    saved = node.tensor_contents
    return not is_continuous(saved.dtype) or saved.numel() == 0


def shape_only(node, parent):
    """``zeros_like``, ``expand_as`` ...: only the parent's shape and dtype matter."""
    return node.func_name in SHAPE_ONLY


def ignorable_argument(node, parent):
    """Running statistics of a training-mode norm, the overwritten target of a scatter."""
    return node.arg_positions.get(id(parent)) in IGNORABLE_ARGUMENTS.get(node.func_name, ())


def constant_output(node, parent):
    """Every element equal: multiplication by zero, a saturated clamp, ``fill_``."""
    flat = node.tensor_contents.reshape(-1)
    return flat.numel() > 1 and bool((flat == flat[0]).all())


def single_key_attention(node, parent):
    """Attention over one key: the softmax is 1 whatever the query and key."""
    return (node.func_name == "scaled_dot_product_attention" and len(node.args) > 1
            and node.arg_positions.get(id(parent)) in (0, 1, "query", "key")
            and isinstance(node.args[1], ArgSlot) and _slot_value(node.args[1]).shape[-2] == 1)


def one_sided_where(node, parent):
    """A ``where`` whose condition selects one side everywhere."""
    if node.func_name != "where" or not node.args or not isinstance(node.args[0], ArgSlot):
        return False
    condition = _slot_value(node.args[0])
    return condition.dtype == torch.bool and (bool(condition.all()) or not condition.any())


def whole_target_write(node, parent):
    """An in-place write whose target is the parent (its old values are overwritten)."""
    writes = call_traits(node.func)[1]
    target = node.args[0] if node.args else None
    return writes is not None and isinstance(target, ArgSlot) and target.ref is parent


INSENSITIVITY_RULES = {
    "discrete_or_empty_output": discrete_or_empty_output,
    "shape_only": shape_only,
    "ignorable_argument": ignorable_argument,
    "constant_output": constant_output,
    "single_key_attention": single_key_attention,
    "one_sided_where": one_sided_where,
    "whole_target_write": whole_target_write,
}
"""``{name: rule(node, parent) -> bool}``, tried in order by :func:`insensitive`."""


def insensitive(node, parent):
    """Name of the first rule by which ``node`` may ignore ``parent``'s values, or None.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(lambda x: torch.zeros_like(x), torch.ones(2))
    >>> insensitive(history["zeroslike_1"], history["input_1"])
    'shape_only'
    """
    for name, rule in INSENSITIVITY_RULES.items():
        if rule(node, parent):
            return name
    return None


def _slot_value(slot):
    return slot.ref.tensor_contents if slot.kind == "layer" else slot.ref
