"""Snapshots of every global random number generator a forward pass may use."""

from __future__ import annotations

import random

import numpy as np
import torch


def snapshot_rng():
    """Return the state of Python's, NumPy's and torch's (CPU and CUDA) generators.

    Examples
    --------
    >>> import torch
    >>> state = snapshot_rng(); a = torch.rand(1)
    >>> restore_rng(state); bool(torch.rand(1) == a)
    True
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state):
    """Put back a state taken by :func:`snapshot_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed):
    """Seed Python's, NumPy's and torch's generators (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def op_rng_state(tensors_on_cuda):
    """The generator state a random op is about to consume, for replaying it."""
    state = {"torch": torch.get_rng_state()}
    if tensors_on_cuda and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state
