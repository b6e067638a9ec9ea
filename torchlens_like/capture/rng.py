"""The generator state a random op consumes, recorded so the op can be replayed."""

from __future__ import annotations

import torch


def op_rng_state(tensors_on_cuda):
    """The generator state a random op is about to consume, for replaying it.

    Examples
    --------
    >>> import torch
    >>> state = op_rng_state(False); a = torch.rand(1)
    >>> torch.set_rng_state(state["torch"]); bool(torch.rand(1) == a)
    True
    """
    state = {"torch": torch.get_rng_state()}
    if tensors_on_cuda and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state
