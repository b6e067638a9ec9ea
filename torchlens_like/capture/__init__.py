"""Capture: intercept every tensor-returning torch call of one forward pass.

Modules: ``session`` (the interception mode and the per-pass state),
``modules`` (module entry/exit hooks, model unwrapping), ``inplace`` (which
calls write into tensors or draw random numbers), ``arguments`` (walking
nested arguments), ``records`` (raw per-op records), ``rng`` (generator
snapshots), ``run`` (one captured pass), ``to_graph`` (records to graph nodes).
"""
