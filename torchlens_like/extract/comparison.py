"""``compare_models``: RDM correlations or CKA between models (THINGSvision's ``compare_models``).

The measures live in :data:`MEASURES` (name -> function of the named feature
matrices and the measure's options, with the names of those options).  Options
of another measure are refused before any extraction, not ignored.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..registry import lookup
from .extraction import extract_features
from .zoo import load_model


def _rsa(features, dissimilarity="correlation", correlation="pearson"):
    from ..analysis import compare_rdms, compute_rdm

    rdms = {name: compute_rdm(matrix, dissimilarity, condensed=True) for name, matrix in features.items()}
    return compare_rdms(rdms, correlation)


def _cka(features, **options):
    from ..analysis import cka

    names = list(features)
    table = np.ones((len(names), len(names)))
    for i, first in enumerate(names):
        for j in range(i + 1, len(names)):
            table[i, j] = table[j, i] = cka(features[first], features[names[j]], **options)
    return pd.DataFrame(table, index=pd.Index(names), columns=pd.Index(names))


MEASURES = {"rsa": (_rsa, ("dissimilarity", "correlation")), "cka": (_cka, ("kernel", "debiased", "sigma"))}
"""Model comparison measures by name: ``(measure(features, **options) -> DataFrame, its option names)``."""


def compare_models(models, stimuli, layers, dissimilarity=None, correlation=None,
                   output_dir=None, batch_size=32, *, measure="rsa", kernel=None, debiased=None,
                   sigma=None, **extract_options):
    """Extract one layer per model and compare the models: RDM correlations or CKA.

    Parameters
    ----------
    models : dict or list
        ``{name: model}``, or a list of zoo names (loaded with
        :func:`~torchlens_like.load_model`, random init) or of models.
    stimuli
        Anything :func:`~torchlens_like.extract_features` takes.
    layers : str, list or dict
        One layer for every model, one per model in order, or ``{name: layer}``.
    dissimilarity : str, optional
        RDM measure of :func:`~torchlens_like.analysis.compute_rdm`
        (``measure="rsa"`` only; default ``"correlation"``).
    correlation : str, optional
        RDM comparison of :func:`~torchlens_like.analysis.compare_rdms`
        (``measure="rsa"`` only; default ``"pearson"``).
    output_dir : str, optional
        Features go to ``output_dir/<model name>/``; a later call reuses them.
    batch_size : int
    measure : {"rsa", "cka"}
        Correlate the models' RDMs, or compute
        :func:`~torchlens_like.analysis.cka` between their features.
    kernel, debiased, sigma : optional
        Options of :func:`~torchlens_like.analysis.cka` (``measure="cka"``
        only; defaults: linear, biased, 1.0).
    **extract_options
        Passed on to :func:`~torchlens_like.extract_features` (``reduction``,
        ``device``, ``num_workers``...).

    Returns
    -------
    pandas.DataFrame
        Model x model table (ones on the diagonal).

    Raises
    ------
    ValueError
        For an unknown measure, or options of one measure given with the other.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> torch.manual_seed(0) and None
    >>> a, b = torch.nn.Linear(6, 5), torch.nn.Linear(6, 5)
    >>> data = torch.utils.data.TensorDataset(torch.rand(8, 6))
    >>> table = tll.compare_models({"a": a, "b": b, "a again": a}, data, "linear_1", progress=False)
    >>> round(float(table.loc["a", "a again"]), 6), table.shape
    (1.0, (3, 3))
    >>> table = tll.compare_models({"a": a, "b": b}, data, "linear_1", measure="cka", progress=False)
    >>> round(float(table.loc["a", "a"]), 6)
    1.0
    """
    compare, own = lookup(MEASURES, measure, "measure")
    options = {"dissimilarity": dissimilarity, "correlation": correlation, "kernel": kernel,
               "debiased": debiased, "sigma": sigma}
    foreign = [key for key, value in options.items() if value is not None and key not in own]
    if foreign:
        raise ValueError(f"{', '.join(foreign)} do not apply to measure={measure!r}, which takes "
                         f"{', '.join(own)}; leave them out or choose the measure they belong to")
    named = _named_models(models)
    per_model = _layers_per_model(layers, list(named))
    features = {}
    for name, model in named.items():
        directory = os.path.join(output_dir, _folder(name)) if output_dir else None
        named_bar = {"progress": name} if extract_options.get("progress", True) else {}
        extracted = extract_features(model, stimuli, [per_model[name]], batch_size=batch_size,
                                     output_dir=directory, flatten=True,
                                     **{**extract_options, **named_bar})
        features[name] = extracted[str(per_model[name])][:]
    return compare(features, **{key: options[key] for key in own if options[key] is not None})


def _named_models(models):
    if isinstance(models, dict):
        items = list(models.items())
    else:
        items = [(m if isinstance(m, str) else f"{type(m).__name__}_{i}", m)
                 for i, m in enumerate(models)]
    return {name: load_model(model)[0] if isinstance(model, str) else model
            for name, model in items}


def _layers_per_model(layers, names):
    if isinstance(layers, dict):
        missing = [n for n in names if n not in layers]
        if missing:
            raise ValueError(f"layers has no entry for model(s) {missing}")
        return layers
    if isinstance(layers, (list, tuple)):
        if len(layers) != len(names):
            raise ValueError(f"layers lists {len(layers)} layers for {len(names)} models; give "
                             "one per model, or one string for all")
        return dict(zip(names, layers))
    return {name: layers for name in names}


def _folder(name):
    from .writers import layer_file_stem

    return layer_file_stem(name)
