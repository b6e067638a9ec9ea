"""The logged graph: the passes over a backend's records, and ``ModelHistory``.

Reads the neutral records of :mod:`torchlens_like.records` (a
:class:`~torchlens_like.records.CaptureResult` from any capture backend) and
produces a :class:`ModelHistory` (:func:`build_history`). Never imports
capture, the readers (validate, render, io, analysis, extract) or
:mod:`torchlens_like.api`: only :mod:`torchlens_like.records` and
:mod:`torchlens_like.nested`, and no framework (torch, TensorFlow) either,
so histories from every backend go through the same code. Conveniences such
as ``history.validate()`` reach the readers through the reader registry
(:mod:`.readers`), which the readers fill in.

Each pass is a function ``pass(nodes) -> nodes`` over the nodes in execution
order. They run in this order (:data:`PASSES`); after each one the graph keeps
the invariants :func:`lint` checks (execution order is topological,
parents and children list each other, labels unique once assigned), and the
tests lint it before and after every pass.

1. ``trim_orphans`` — drop ops that neither descend from an input nor feed an
   output. Runs first: every later pass and every number in a label counts
   only the kept nodes.
2. ``mark_input_ancestry`` — which nodes an input reaches (the
   internally-generated flag). Needs the trimmed graph.
3. ``compute_distances`` — shortest distances from inputs and to outputs.
   Needs the trimmed graph.
4. ``mark_conditionals`` — if-branches (:mod:`.conditionals`): childless
   single-element booleans and the ops computing them. Needs the distances
   to outputs (an op that reaches an output is not part of a branch).
5. ``correct_internal_containment`` — module containment of buffers, traced
   through their children (:mod:`.containment`). Needs input ancestry.
6. ``group_parameter_passes`` — recurrence rule 1 (:mod:`.recurrence`): the
   same parameters applied again are another pass of the same layer.
7. ``grow_parameter_passes`` — recurrence rule 2: identical ops adjacent to
   the passes of a rule-1 layer, grown recursively. Needs rule 1.
8. ``group_repeated_sequences`` — recurrence rule 3: parameter-free
   sequences repeated back to back. After rules 1 and 2, so it only sees
   what they left ungrouped.
9. ``assign_labels`` — ``{type}_{type_num}_{total_num}[:pass]``, numbered by
   each layer's first pass. Must run last: labels depend on the final node
   set and grouping.
"""

from .history import ModelHistory
from ..records import (ActivationNotSavedWarning, ArgSlot, DeferredTensor, LayerEntry,
                       NoGradientWarning)
from .lookup import LayerLookupError
from .conditionals import mark_conditionals
from .containment import correct_internal_containment
from .passes import assign_labels, compute_distances, lint, mark_input_ancestry, trim_orphans
from .recurrence import group_parameter_passes, group_repeated_sequences, grow_parameter_passes
from .build import build_history

PASSES = (trim_orphans, mark_input_ancestry, compute_distances, mark_conditionals,
          correct_internal_containment, group_parameter_passes, grow_parameter_passes,
          group_repeated_sequences, assign_labels)


def history_from_capture(result, elapsed_time=0.0):
    """The :class:`ModelHistory` of a backend's :class:`~torchlens_like.records.CaptureResult`.

    Runs :data:`PASSES` in order (see :func:`.build.build_history`).

    Examples
    --------
    >>> from torchlens_like.records import CaptureResult, LayerEntry
    >>> history_from_capture(CaptureResult([LayerEntry("input", "input")], "f", "fake")).layer_labels
    ['input_1_1']
    """
    return build_history(result, PASSES, elapsed_time)


__all__ = ["ActivationNotSavedWarning", "ArgSlot", "DeferredTensor", "LayerEntry",
           "LayerLookupError", "ModelHistory", "NoGradientWarning", "PASSES", "history_from_capture", "lint"]
