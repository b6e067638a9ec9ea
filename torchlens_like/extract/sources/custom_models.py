"""The ``custom`` source: models the user registers by name.

:func:`register_model` adds a builder (a function returning an ``nn.Module``)
and its transform under a name, so ``load_model(name)``, ``list_models`` and
``tll extract`` treat it like a zoo model; the builder itself, passed where a
model goes, is refused with a hint to call it. A model object in hand needs no
registration: ``load_model(module, transform=...)``.
"""

from __future__ import annotations

from ...model_builders import register_builder, unregister_builder
from .registry import ModelSource, register_source

_REGISTERED = {}


def register_model(name, build, transform=None, **metadata):
    """Make ``build()`` loadable as ``load_model(name, source="custom")``.

    Parameters
    ----------
    name : str
        The model's name in the zoo.
    build : callable () -> torch.nn.Module
        Builds the model with random weights (weights files are loaded by
        ``load_model(name, weights="file.pt")``).
    transform : callable, optional
        Preprocessing of one image (PIL image -> tensor).
    **metadata
        Columns for the zoo table (``family``, ``task``, ``training_data``, ...).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> register_model("tiny_linear", lambda: torch.nn.Linear(4, 2), family="demo")
    >>> tll.load_model("tiny_linear")[0]
    Linear(in_features=4, out_features=2, bias=True)
    >>> unregister_model("tiny_linear")
    """
    if not callable(build):
        raise TypeError(f"register_model({name!r}): build must be a function returning the "
                        f"model, got {type(build).__name__}")
    _REGISTERED[name] = (build, transform, metadata)
    register_builder(build)


def unregister_model(name):
    """Remove a model added with :func:`register_model`."""
    build, _, _ = _REGISTERED.pop(name, (None, None, None))
    if build is not None and all(other is not build for other, _, _ in _REGISTERED.values()):
        unregister_builder(build)


def _load(name, weights):
    if weights is not None:
        raise ValueError(f"custom model {name!r} takes weights as a path to a state_dict file, "
                         f"not {weights!r}")
    build, transform, _ = _REGISTERED[name]
    return build(), transform


def _rows():
    return [{"model": name, "family": meta.get("family", ""), "task": meta.get("task", ""),
             "training_data": meta.get("training_data", ""), "num_params": None,
             "input_size": meta.get("input_size"), "weights": ""}
            for name, (_, _, meta) in _REGISTERED.items()]


def _count_params(name):
    return sum(p.numel() for p in _REGISTERED[name][0]().parameters())


SOURCE = register_source(ModelSource("custom", lambda: sorted(_REGISTERED), _load, _rows,
                                     count_params=_count_params))
