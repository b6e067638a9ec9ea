"""Capture: intercept every tensor-returning torch call of one forward pass.

Modules: ``session`` (the interception mode and the per-pass state, which
writes graph nodes in execution order), ``modules`` (module entry/exit hooks,
model unwrapping), ``standins`` (torch attributes replaced during a pass),
``inplace`` (which calls write into tensors or draw random numbers),
``arguments`` (walking nested arguments), ``rng`` (generator snapshots),
``run`` (one captured pass).
"""
