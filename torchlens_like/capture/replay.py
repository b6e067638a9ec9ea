"""``TorchReplay``: what the torch replayer needs to re-run one recorded call.

It is the only torch-specific part of a node (``LayerEntry.replay``), shared
by every output of one call (and by every call of one function that drew no
random numbers and ran without autocast), and read only by the torch replayer in
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
    versions : dict or None
        ``{ArgSlot: version counter}`` of those tensors when the pass ended
        (one dict shared by every call of the pass), so a replayer can tell
        whether the model's weights were written since.

    Examples
    --------
    >>> import torch
    >>> TorchReplay(torch.relu, None, None, None, {}).func is torch.relu
    True
    """

    __slots__ = ("func", "rng_state", "autocast_state", "writes", "values", "versions")

    def __init__(self, func, rng_state, autocast_state, writes, values, versions=None):
        self.func = func
        self.rng_state = rng_state
        self.autocast_state = autocast_state
        self.writes = writes
        self.values = values
        self.versions = versions


def keep_versions(nodes, values):
    """Give every call of a pass the version counters of its parameters and constants now.

    ``values`` is the pass's ``{ArgSlot: tensor}``; the replay records of
    ``nodes`` get the same ``{ArgSlot: version}`` dict as ``versions``
    (None for a tensor that keeps no version counter, such as an inference tensor).

    Examples
    --------
    >>> import torch
    >>> from torchlens_like.records import ArgSlot, LayerEntry
    >>> slot, weight = ArgSlot("param", name="w"), torch.ones(2)
    >>> node = LayerEntry("op", "mul"); node.replay = TorchReplay(torch.mul, None, None, None, {})
    >>> keep_versions([node], {slot: weight}); _ = weight.add_(1)
    >>> node.replay.versions[slot], weight._version
    (0, 1)
    """
    versions = {slot: version(tensor) for slot, tensor in values.items()}
    for node in nodes:
        if node.replay is not None:
            node.replay.versions = versions


def version(tensor):
    """``tensor._version``, or None for a tensor without a version counter (inference mode).

    Examples
    --------
    >>> import torch
    >>> version(torch.ones(1)), version(torch.ones(1).add_(1))
    (0, 1)
    >>> with torch.inference_mode():
    ...     version(torch.ones(1)) is None
    True
    """
    try:
        return tensor._version
    except RuntimeError:
        return None
