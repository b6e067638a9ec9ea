"""Layers of a loaded history, whose activations are read from the file on first access."""

from __future__ import annotations

from ..graph import LayerEntry
from .tensors import from_stored


class StoredLayerEntry(LayerEntry):
    """A :class:`~torchlens_like.graph.LayerEntry` whose activation stays in its file until read.

    ``tensor_contents`` reads the activation from the store the first time
    and keeps it; ``has_saved_activation`` answers without reading.
    """

    __slots__ = ("_store", "_key", "_info")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._store = self._key = self._info = None

    def attach_activation(self, store, key, info):
        """Read the activation later from ``store.get_tensor(key)``, described by ``info``."""
        self._store, self._key, self._info = store, key, info

    @property
    def tensor_contents(self):
        if self._tensor_contents is None and self._store is not None:
            self._tensor_contents = from_stored(self._store.get_tensor(self._key), self._info)
            self._store = None
        return LayerEntry.tensor_contents.fget(self)

    @tensor_contents.setter
    def tensor_contents(self, value):
        self._store = None
        self._tensor_contents = value

    @property
    def has_saved_activation(self):
        return self._store is not None or self._tensor_contents is not None

    @property
    def is_loaded(self):
        """Whether the activation has been read from the file (or there is none to read)."""
        return self._store is None


class TensorDict(dict):
    """``{key: tensor}`` with the ``get_tensor`` method of a ``safe_open`` handle."""

    def get_tensor(self, key):
        return self[key]
