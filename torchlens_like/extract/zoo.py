"""The model zoo: ``load_model`` by name from any registered source, ``list_models``.

Design decisions
----------------
* What every source shares is done here once: finding the source of a bare
  name (one rule for Python and the command line: the first source of
  :data:`LOOKUP_ORDER` that knows it; an unknown name is an error listing
  close names),
  random init from a fixed seed drawn in a forked generator (the same
  arguments give the same model in every process, which resuming an
  extraction relies on, and the caller's random state is untouched), weights
  files for a zoo architecture, download failures reported plainly, device,
  eval mode.
* Where a model came from (name, source, weights) is remembered in a weak
  mapping keyed by the model, not on the model, so extraction can write it
  into its manifest without the model carrying anything new.
* Listing reads the sources' metadata only: it builds no model and never
  touches the network. Parameter counts the metadata lacks (timm, open_clip,
  custom) stay empty unless ``count_params=True`` asks to build each model
  on the ``meta`` device.
"""

from __future__ import annotations

import difflib
import os
import weakref

import pandas as pd
import torch

from .sources import SOURCES, get_source

_PROVENANCE = weakref.WeakKeyDictionary()

TABLE_COLUMNS = ("source", "model", "family", "task", "training_data", "num_params",
                 "input_size", "weights")

LOOKUP_ORDER = ("custom", "torchvision", "timm", "open_clip", "cornet", "keras")
"""Where a bare model name is looked up, in order; the first source that knows it is used
(``source=`` or ``SOURCE/NAME`` on the command line picks another). A model you registered
comes first; sources registered later follow these, in registration order."""


class WeightsDownloadError(ConnectionError):
    """Pretrained weights could not be downloaded."""


def load_model(name, source=None, weights=None, device=None, transform=None, seed=0):
    """Build a model by name, in eval mode, with the preprocessing that matches its weights.

    Parameters
    ----------
    name : str or torch.nn.Module
        A model name of one of the sources (``list_models()`` lists them), or
        a model object (then ``transform`` is its preprocessing).
    source : str, optional
        ``"torchvision"``, ``"timm"``, ``"open_clip"``, ``"cornet"``,
        ``"custom"``, ``"keras"``. Without it the first source of
        :data:`LOOKUP_ORDER` that knows the name is used (``"resnet18"`` is
        torchvision's; ``source="timm"`` for timm's).
    weights : str, optional
        None for random init (seeded by ``seed``); a tag of the source
        (``"DEFAULT"``, ``"IMAGENET1K_V2"``, an open_clip pretrained tag, a
        timm tag); or a path to a ``state_dict`` file for the architecture.
    device : str or torch.device, optional
        Where to put the model.
    transform : callable, optional
        Replaces the source's preprocessing.
    seed : int
        Seed of the random initialisation.

    Returns
    -------
    model : torch.nn.Module
    transform : callable
        One image (PIL) -> tensor.

    Examples
    --------
    >>> import torchlens_like as tll
    >>> model, transform = tll.load_model("alexnet", source="torchvision")
    >>> model.training, transform.crop_size
    (False, [224])
    """
    if isinstance(name, torch.nn.Module):
        model, source, found = name, "custom", None
    else:
        source = source or find_source(name)
        found = _load_from_source(get_source(source), name, weights, seed)
        model, found_transform = found
        transform = transform or found_transform
    if isinstance(model, torch.nn.Module):
        if device is not None:
            model = model.to(device)
        model.eval()
    _PROVENANCE[model] = {"model": name if isinstance(name, str) else type(name).__name__,
                          "source": source, "weights": weights, "transform": transform}
    return model, transform


def provenance(model):
    """``{"model", "source", "weights", "transform"}`` of a model from :func:`load_model`, else None.

    Examples
    --------
    >>> provenance(load_model("alexnet", source="torchvision")[0])["source"]
    'torchvision'
    """
    try:
        return _PROVENANCE.get(model)
    except TypeError:
        return None


def find_source(name):
    """The source a bare ``name`` is taken from: the first of :data:`LOOKUP_ORDER` that knows it.

    Examples
    --------
    >>> find_source("cornet_s"), find_source("resnet18")
    ('cornet', 'torchvision')
    """
    holders = sources_knowing(name)
    if holders:
        return holders[0]
    names = {key: set(source.names()) for key, source in SOURCES.items() if source.available}
    every = sorted(set().union(*names.values()))
    close = difflib.get_close_matches(name, every, n=5, cutoff=0.6)
    missing = [f"{key} (pip install {s.install})" for key, s in SOURCES.items()
               if not s.available and (s.might_know is None or s.might_know(name))]
    raise ValueError(f"unknown model name {name!r}. "
                     + (f"Close names: {', '.join(close)}. " if close else "")
                     + "tll.list_models() (or `tll models`) lists every model."
                     + (f" Not installed, and might know it: {', '.join(missing)}."
                        if missing else ""))


def sources_knowing(name):
    """Every installed source that knows ``name``, in :data:`LOOKUP_ORDER`.

    Examples
    --------
    >>> sources_knowing("resnet18")[:2]
    ['torchvision', 'timm']
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string or an nn.Module, got {type(name).__name__}")
    order = [key for key in LOOKUP_ORDER if key in SOURCES] + \
        [key for key in SOURCES if key not in LOOKUP_ORDER]
    return [key for key in order if SOURCES[key].available and name in SOURCES[key].names()]


def _load_from_source(source, name, weights, seed):
    if not source.available:
        raise ImportError(f"model source {source.name!r} needs {source.requires}: "
                          f"pip install {source.install}")
    if name not in source.names():
        close = difflib.get_close_matches(name, source.names(), n=5, cutoff=0.6)
        raise ValueError(f"{source.name} has no model {name!r}"
                         + (f"; close names: {', '.join(close)}" if close else "")
                         + f". tll.list_models(source={source.name!r}) lists them.")
    weights_file = weights if weights is not None and os.path.isfile(str(weights)) else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model, transform = source.load(name, None if weights_file else weights)
        except OSError as exc:
            if weights is None or weights_file:
                raise
            raise WeightsDownloadError(
                f"could not download the {weights!r} weights of {source.name} model {name!r}: "
                f"{exc}. Check the internet connection, or download the weights file "
                f"elsewhere and pass its path: load_model({name!r}, weights='path/to/file.pt')."
            ) from None
    if weights_file and not isinstance(model, torch.nn.Module):
        model.load_weights(weights_file)
    elif weights_file:
        load_weights_file(model, weights_file)
    return model, transform


def load_weights_file(model, path):
    """Load a ``state_dict`` file (optionally under ``"state_dict"``, ``module.`` prefixes) into ``model``.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"state_dict": {"module.weight": torch.ones(2, 2), "module.bias": torch.zeros(2)}}, path)
    >>> load_weights_file(torch.nn.Linear(2, 2), path).weight.sum().item()
    4.0
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"weights file {path!r} does not fit {type(model).__name__}: "
                         f"{str(exc).splitlines()[0]} ...") from None
    return model


def list_models(filters=None, *, count_params=False, **more_filters):
    """The zoo as a table, one row per model, filterable like DeepJuice's ``get_model_options``.

    Reads the sources' metadata only: no model is built, nothing is downloaded.

    Parameters
    ----------
    filters : dict, optional
        ``{column: query}``; a row is kept when the query is a substring of
        the column (case-insensitive), or equal for numbers.
    count_params : bool
        Fill ``num_params`` where the metadata lacks it (timm, open_clip,
        custom) by building each remaining model on the ``meta`` device (no
        weights allocated; a model that cannot be built there stays empty).
        Off by default: building runs each library's model code.
    **more_filters
        More filters as keywords: ``list_models(source="timm", family="vit")``.

    Returns
    -------
    pandas.DataFrame
        Columns ``source, model, family, task, training_data, num_params,
        input_size, weights``; ``num_params`` and ``input_size`` are nullable
        integers (``<NA>`` where unknown).

    Examples
    --------
    >>> import torchlens_like as tll
    >>> table = tll.list_models(source="torchvision", family="wide_resnet")
    >>> table.model.tolist()
    ['wide_resnet101_2', 'wide_resnet50_2']
    >>> table.set_index("model").num_params["wide_resnet50_2"]
    np.int64(68883240)
    """
    filters = {**(filters or {}), **more_filters}
    unknown = set(filters) - set(TABLE_COLUMNS)
    if unknown:
        raise ValueError(f"list_models: unknown column(s) {sorted(unknown)}; columns are "
                         f"{', '.join(TABLE_COLUMNS)}")
    wanted_sources = [key for key in SOURCES if _matches(key, filters.get("source"))]
    rows = [{"source": key, **row} for key in wanted_sources if SOURCES[key].available
            for row in SOURCES[key].rows()]
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    for column, query in filters.items():
        table = table[[_matches(value, query) for value in table[column]]]
    table = table.reset_index(drop=True)
    if count_params:
        _fill_param_counts(table)
    return table.astype({"num_params": "Int64", "input_size": "Int64"})


def _matches(value, query):
    if query is None:
        return True
    if isinstance(query, (int, float)) and not isinstance(query, bool):
        return value == query
    return str(query).lower() in str(value).lower()


def _fill_param_counts(table):
    for row in table.index[table.num_params.isna()]:
        counter = SOURCES[table.at[row, "source"]].count_params
        if counter is None:
            continue
        try:
            table.at[row, "num_params"] = counter(table.at[row, "model"])
        except Exception:  # a model the library cannot build on the meta device stays empty
            continue
