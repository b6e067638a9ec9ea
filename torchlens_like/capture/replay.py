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
        ``{ArgSlot: version counter}`` of those tensors when the pass first
        read them (one dict shared by every call of the pass), so a replayer
        can tell whether the model's weights were written since.
    written : frozenset
        The slots of those tensors whose memory a call of the pass wrote
        into (also through ``.data``, which moves no version counter).

    Examples
    --------
    >>> import torch
    >>> TorchReplay(torch.relu, None, None, None, {}).func is torch.relu
    True
    """

    __slots__ = ("func", "rng_state", "autocast_state", "writes", "values", "versions", "written")

    def __init__(self, func, rng_state, autocast_state, writes, values, versions=None,
                 written=frozenset()):
        self.func = func
        self.rng_state = rng_state
        self.autocast_state = autocast_state
        self.writes = writes
        self.values = values
        self.versions = versions
        self.written = written


def keep_versions(nodes, versions, written=frozenset()):
    """Give every call of a pass the versions of its parameters and constants, and which it wrote.

    ``versions`` is ``{ArgSlot: version counter when the pass first read the
    tensor}`` and ``written`` the slots whose memory a call of the pass
    wrote into; the replay records of ``nodes`` share both.

    Examples
    --------
    >>> import torch
    >>> from torchlens_like.records import ArgSlot, LayerEntry
    >>> slot = ArgSlot("param", name="w")
    >>> node = LayerEntry("op", "mul"); node.replay = TorchReplay(torch.mul, None, None, None, {})
    >>> keep_versions([node], {slot: 0}, frozenset({slot}))
    >>> node.replay.versions[slot], slot in node.replay.written
    (0, True)
    """
    for node in nodes:
        if node.replay is not None:
            node.replay.versions = versions
            node.replay.written = written
