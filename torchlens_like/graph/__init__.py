"""The logged graph: ``LayerEntry`` nodes, ``ModelHistory``, and the passes over them.

Passes run in this order over the nodes in execution order (:data:`PASSES`):

1. ``trim_orphans`` — drop ops that neither descend from an input nor feed an
   output. Runs first: every later pass and every number in a label counts
   only the kept nodes.
2. ``mark_input_ancestry`` — which nodes an input reaches (the
   internally-generated flag). Needs the trimmed graph.
3. ``compute_distances`` — shortest distances from inputs and to outputs.
4. ``group_parameter_passes`` — recurrence rule 1 (same parameters applied
   again = another pass of the same layer). Must run before labels.
5. ``assign_labels`` — ``{type}_{type_num}_{total_num}[:pass]``, numbered by
   each layer's first pass. Must run last: labels depend on the final node
   set and grouping.

Every pass keeps the invariants that :func:`lint` checks.
"""

from .history import ModelHistory
from .layer import ArgSlot, LayerEntry
from .lookup import LayerLookupError
from .passes import (assign_labels, compute_distances, group_parameter_passes, lint,
                     mark_input_ancestry, trim_orphans)

PASSES = (trim_orphans, mark_input_ancestry, compute_distances, group_parameter_passes,
          assign_labels)


def run_passes(nodes, passes=PASSES):
    """Run the post-processing passes in order and return the final node list."""
    for graph_pass in passes:
        nodes = graph_pass(nodes)
    return nodes


__all__ = ["ArgSlot", "LayerEntry", "LayerLookupError", "ModelHistory", "PASSES", "lint",
           "run_passes"]
