"""Saving and loading histories: ``history.save(path)`` and ``load_history(path)``.

A reader of the graph: it reads a ``ModelHistory``'s public data only, so a
history from any capture backend saves the same way. Never imports capture,
validation, rendering or :mod:`torchlens_like.api` (only the graph stage and
the foundation modules). :mod:`.files` says why
the format is safetensors with a JSON document in its header, :mod:`.records`
what the document holds, :mod:`.tensors` how dtypes and memory layouts are
kept. Importing this package also makes ``pickle.dumps(history)`` work: a
history pickles as the bytes of its saved file.
"""

import copyreg

from ..graph import ModelHistory
from ..graph.readers import register_reader
from .files import history_from_bytes, history_to_bytes, load_history, save_history
from .records import SCHEMA_VERSION, HistoryFormatError


def _reduce_history(history):
    return history_from_bytes, (history_to_bytes(history),)


copyreg.pickle(ModelHistory, _reduce_history)
register_reader("save", save_history)

__all__ = ["HistoryFormatError", "SCHEMA_VERSION", "history_from_bytes", "history_to_bytes",
           "load_history", "save_history"]
