"""Activations of a loaded history, read from the file on first access."""

from __future__ import annotations

from ..graph import DeferredTensor
from .tensors import from_stored


class StoredTensor(DeferredTensor):
    """One activation in a store (a ``safe_open`` handle or a :class:`TensorDict`).

    Examples
    --------
    >>> import torch
    >>> store = TensorDict(relu=torch.ones(2, 3))
    >>> info = {"dtype": "float32", "permutation": [0, 1]}
    >>> StoredTensor(store, "relu", info).load().shape
    torch.Size([2, 3])
    """

    __slots__ = ("store", "key", "info")

    def __init__(self, store, key, info):
        self.store, self.key, self.info = store, key, info

    def load(self):
        return from_stored(self.store.get_tensor(self.key), self.info)


class TensorDict(dict):
    """``{key: tensor}`` with the ``get_tensor`` method of a ``safe_open`` handle."""

    def get_tensor(self, key):
        return self[key]
