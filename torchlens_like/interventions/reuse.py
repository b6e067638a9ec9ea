"""Reuse of a second logged run in replay: an op that would see that run's inputs keeps its value.

A patching sweep logs two runs of one model (clean and corrupted) and
replays the target run with the source run's value patched in at a site.
Downstream of the site, an op whose call is the same in both runs and whose
every input is, bitwise, the source run's value for the same layer,
computes what it computed in the source run: replay takes that run's saved
value instead of recomputing it. A patch of a whole block of a chain of
blocks then costs no recomputation at all; where the patched value meets a
value of the target run that differs (a residual stream, a Python number
read from the input), replay computes as before.

The same call: the same function and output position, no random draws,
the same autocast state; non-tensor arguments of the same type and bits
(``-0.0`` is not ``0.0``); tensor arguments from layers of the same label;
parameters and constants that no call of either pass wrote into (in place
or through ``.data``), read by both passes at the same version counter and
unchanged since, and equal in bits (the same tensor read at one version
counts as equal). A write through ``.data`` outside the passes moves no
version counter and is not seen: log the two runs without changing the
weights between them (``tll.patching_sweep`` does).

Layers correspond by label. Values count as the source run's only where
they are bitwise equal to it, strides and storage offset included (a NaN
equals a NaN of the same bits), known either because replay took them from
the source run or by comparing saved values, once per layer. Where either
run read a layer after a write into its memory through an alias the graph
does not link (``detach``, ``.data``), nothing is taken from the source run.

Examples
--------
>>> import torch, torchlens_like as tll
>>> f = lambda x: torch.relu(x) * 2
>>> target, source = (tll.log_forward_pass(f, torch.tensor(v)) for v in ([-1.0], [3.0]))
>>> runs = SourceRun(target, source)
>>> runs.same_call(target["mul_1"]) is source["mul_1"], runs.same_value(target["input_1"])
(True, False)
"""

from __future__ import annotations

import numpy as np
import torch

from ..model_state import tensor_version
from ..records import is_slot

_SAME_SIZE_INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class SourceRun:
    """The source run of a replay, matched layer by layer to the target run (by label).

    Answers, with caching, whether a target op's recorded call is the same
    call in the source run (:meth:`same_call`) and whether a value is
    bitwise the source run's for a layer (:meth:`same_value`,
    :meth:`is_source_value`). Where either run read a value after a write
    into its memory that the graph does not link (:func:`read_after_unseen_write`),
    ``usable`` is False and nothing is taken from the source run.
    """

    def __init__(self, target, source):
        self.usable = not (read_after_unseen_write(target) or read_after_unseen_write(source))
        self._layers = {layer.layer_label: layer for layer in source.layers}
        self._calls = {}
        self._values = {}

    def counterpart(self, layer):
        """The source run's layer with ``layer``'s label, or None."""
        return self._layers.get(layer.layer_label)

    def same_call(self, layer):
        """The source layer whose recorded call is ``layer``'s call, or None.

        The same function, output position, autocast state, no random
        draws in either run, and arguments of the same structure: non-tensor
        leaves of the same type and bits, tensor arguments from layers of
        the same label, or parameters and constants that neither pass wrote
        into and that were bitwise equal, at the same version, when read.
        """
        key = id(layer)
        if key not in self._calls:
            self._calls[key] = self._match_call(layer) if self.usable else None
        return self._calls[key]

    def same_value(self, layer):
        """Whether ``layer``'s saved value is bitwise the source run's for its label."""
        key = id(layer)
        if key not in self._values:
            self._values[key] = (layer.has_saved_activation
                                 and self.is_source_value(layer, layer.tensor_contents))
        return self._values[key]

    def is_source_value(self, layer, value):
        """Whether ``value`` (a value for ``layer``) is bitwise the source run's value there."""
        other = self.counterpart(layer) if self.usable else None
        if other is None or not other.has_saved_activation:
            return False
        saved = other.tensor_contents
        return value is saved or bitwise_equal(value, saved)

    def _match_call(self, layer):
        other = self.counterpart(layer)
        if other is None or layer.kind != "op" or other.kind != "op":
            return None
        mine, theirs = layer.replay, other.replay
        if (mine is None or theirs is None or mine.func is not theirs.func
                or mine.rng_state is not None or theirs.rng_state is not None
                or mine.autocast_state != theirs.autocast_state
                or layer.output_path != other.output_path or not other.has_saved_activation):
            return None
        same = _same_arguments((layer.args, layer.kwargs), (other.args, other.kwargs),
                               lambda a, b: self._same_slot(a, b, mine, theirs))
        return other if same else None

    def _same_slot(self, mine, theirs, my_replay, their_replay):
        if mine.kind != theirs.kind:
            return False
        if mine.kind == "layer":
            return mine.ref.layer_label == theirs.ref.layer_label
        a, b = my_replay.values.get(mine), their_replay.values.get(theirs)
        if (a is None or b is None or mine in my_replay.written
                or theirs in their_replay.written):
            return False
        read = (my_replay.versions or {}).get(mine), (their_replay.versions or {}).get(theirs)
        if None in read or read != (tensor_version(a), tensor_version(b)):
            return False
        return bitwise_equal(a, b)


def read_after_unseen_write(history):
    """Whether an op of ``history`` read a layer after a write into its memory the graph skips.

    The capture copies a saved value before a call writes into its memory
    (``meta["written_later"]``, the writing call's capture index) and links
    later reads of the written tensor, its base and its views to new nodes.
    A read through another alias of that memory (``a.detach()``, ``a.data``)
    still names the old layer, whose saved value is from before the write:
    the graph then misses an edge, and values of one run cannot stand for
    the other's there.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> def f(x):
    ...     a = x * 2
    ...     d = a.detach()
    ...     a.add_(1)
    ...     return d * 3
    >>> read_after_unseen_write(tll.log_forward_pass(f, torch.ones(1)))
    True
    >>> read_after_unseen_write(tll.log_forward_pass(lambda x: (x * 2).add_(1) * 3, torch.ones(1)))
    False
    """
    for layer in history.layers:
        written = layer.meta.get("written_later")
        if written and any(child.meta["capture_index"] > written
                           for child in layer.child_nodes):
            return True
    return False


def _same_arguments(mine, theirs, same_slot):
    if is_slot(mine) or is_slot(theirs):
        return is_slot(mine) and is_slot(theirs) and same_slot(mine, theirs)
    if type(mine) is not type(theirs):
        return False
    if isinstance(mine, (tuple, list)):
        return len(mine) == len(theirs) and all(
            _same_arguments(a, b, same_slot) for a, b in zip(mine, theirs))
    if isinstance(mine, dict):
        return mine.keys() == theirs.keys() and all(
            _same_arguments(mine[key], theirs[key], same_slot) for key in mine)
    if isinstance(mine, torch.Tensor):
        return bitwise_equal(mine, theirs)
    if isinstance(mine, (float, complex, np.generic)):
        return np.asarray(mine).tobytes() == np.asarray(theirs).tobytes()
    if isinstance(mine, slice):
        return _same_arguments((mine.start, mine.stop, mine.step),
                               (theirs.start, theirs.stop, theirs.step), same_slot)
    try:
        return bool(mine == theirs)
    except Exception:  # an argument type whose == is not a plain truth value
        return mine is theirs


def bitwise_equal(a, b):
    """Whether two tensors have the same dtype, shape, device, memory layout and bits.

    Unlike ``torch.equal``, ``0.0`` and ``-0.0`` differ, a NaN equals a NaN
    of the same bits, and equal values laid out with other strides or at
    another storage offset differ (a kernel downstream may sum them in
    another order).

    Examples
    --------
    >>> import torch
    >>> bitwise_equal(torch.tensor([0.0]), torch.tensor([-0.0])), torch.equal(
    ...     torch.tensor([0.0]), torch.tensor([-0.0]))
    (False, True)
    >>> bitwise_equal(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    True
    >>> bitwise_equal(torch.zeros(2, 3), torch.zeros(3, 2).t())
    False
    """
    if a is b:
        return True
    if (a.dtype != b.dtype or a.shape != b.shape or a.device != b.device
            or a.layout != torch.strided or b.layout != torch.strided
            or a.stride() != b.stride() or a.storage_offset() != b.storage_offset()):
        return False
    if a.is_complex():
        a, b = torch.view_as_real(a.resolve_conj()), torch.view_as_real(b.resolve_conj())
    if a.is_floating_point():
        as_int = _SAME_SIZE_INTS[a.element_size()]
        a, b = a.contiguous().view(as_int), b.contiguous().view(as_int)
    return torch.equal(a, b)
