"""The registry of model sources: :class:`ModelSource`, :data:`SOURCES` and the functions on it.

A module of its own so that each source module imports the registry from a
sibling, never from the package that imports the sources.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Callable


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One place models come from.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"torchvision"``.
    names : callable () -> list of str
        Every model name the source can build.
    load : callable (name, weights) -> (model, transform)
        Build one model; ``weights`` is None (random init) or a tag the
        library understands (``"DEFAULT"``, ``"IMAGENET1K_V2"``, ...).
    rows : callable () -> list of dict
        One row per model for :func:`~torchlens_like.extract.zoo.list_models`.
    count_params : callable (name) -> int, optional
        Parameter count of a model without allocating its weights, for
        sources whose metadata does not carry it.
    categories : callable (name, weights, model) -> list of str, optional
        Class names of the model's outputs for these weights (for random
        init, those of the architecture's default weights).
    requires : str, optional
        Importable module the source needs; without it the source is empty
        and loading says ``pip install {install}``.
    install : str
        What to install when ``requires`` is missing.
    might_know : callable (name) -> bool, optional
        Whether a name looks like one of the source's, judged without its
        library (so an unknown name mentions installing the source only when
        it could help); None: any name might be.
    """

    name: str
    names: Callable[[], list]
    load: Callable
    rows: Callable[[], list]
    count_params: Callable | None = None
    categories: Callable | None = None
    requires: str | None = None
    install: str = ""
    might_know: Callable | None = None

    @property
    def available(self):
        """Whether the library the source needs is installed."""
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


SOURCES: dict[str, ModelSource] = {}


def register_source(source):
    """Add a :class:`ModelSource` to the registry (a name registered twice is an error).

    Examples
    --------
    >>> {"torchvision", "timm", "cornet", "custom"} <= set(SOURCES)
    True
    """
    if source.name in SOURCES:
        raise ValueError(f"a model source named {source.name!r} is already registered")
    SOURCES[source.name] = source
    return source


def get_source(name):
    """The registered source called ``name``; an unknown name lists the valid ones.

    Examples
    --------
    >>> get_source("torchvision").name
    'torchvision'
    """
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown model source {name!r}; valid sources: "
                         f"{', '.join(sorted(SOURCES))}") from None
