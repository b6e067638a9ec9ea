"""Model sources: one registry entry per library a model can come from.

Each source is a module of its own (``torchvision_models``, ``timm_models``,
``open_clip_models``, ``cornet_models``, ``custom_models``, ``keras_models``)
that builds one :class:`ModelSource` and registers it with
:func:`register_source`; the registry lives in :mod:`.registry`, which the
source modules import (never this package, so nothing imports in a circle).

Design decisions
----------------
* A source answers three questions: which names it knows (``names``), how to
  build one with given weights (``load``), and what to say about each model
  in the zoo table (``rows``). Everything common to all sources (random-init
  seeding, weights files, download errors, device, eval mode) lives in
  :mod:`torchlens_like.extract.zoo`, not in the sources.
* A source whose library is not installed is still registered; it knows no
  names, and asking it for a model says which extra to install.
"""

from .registry import SOURCES, ModelSource, get_source, register_source
from . import (cornet_models, custom_models, keras_models, open_clip_models,  # noqa: F401
               timm_models, torchvision_models)

__all__ = ["SOURCES", "ModelSource", "get_source", "register_source"]
