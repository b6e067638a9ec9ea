"""``TorchReplay``: what the torch replayer needs to re-run one recorded call.

It is the only torch-specific part of a node (``LayerEntry.replay``), shared
by every output of one call, and read only by the torch replayer in
:mod:`torchlens_like.validate.replay`; the graph stage never looks inside.
"""

from __future__ import annotations


class TorchReplay:
    """How to re-run one call of a logged torch forward pass.

    Attributes
    ----------
    func : callable
        The function, method or operator that was called.
    rng_state : dict or None
        The generator state a random call consumed (``{"torch": ..., "cuda": ...}``);
        None for calls that draw no random numbers.
    autocast_state : tuple or None
        ``((device_type, dtype), ...)`` autocast was on for during the call.
    writes : callable or None
        ``writes(args, kwargs) -> tensors the call writes into`` (in-place
        methods, ``inplace=True``, running statistics), or None.
    values : dict
        ``{ArgSlot: tensor}`` for the parameter and constant slots of the
        pass (one dict shared by every call of the pass).

    Examples
    --------
    >>> import torch
    >>> TorchReplay(torch.relu, None, None, None, {}).func is torch.relu
    True
    """

    __slots__ = ("func", "rng_state", "autocast_state", "writes", "values")

    def __init__(self, func, rng_state, autocast_state, writes, values):
        self.func = func
        self.rng_state = rng_state
        self.autocast_state = autocast_state
        self.writes = writes
        self.values = values
