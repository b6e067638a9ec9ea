"""The reader registry under the graph stage's name (it lives in :mod:`torchlens_like.registry`)."""

from ..registry import READERS, reader, register_reader

__all__ = ["READERS", "reader", "register_reader"]
