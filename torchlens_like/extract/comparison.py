"""``compare_models``: RDM correlations between models (THINGSvision's ``compare_models``)."""

from __future__ import annotations

import os

from .extraction import extract_features
from .zoo import load_model


def compare_models(models, stimuli, layers, dissimilarity="correlation", correlation="pearson",
                   output_dir=None, batch_size=32, **extract_options):
    """Extract one layer per model, build RDMs with :mod:`torchlens_like.analysis`, correlate them.

    Parameters
    ----------
    models : dict or list
        ``{name: model}``, or a list of zoo names (loaded with
        :func:`~torchlens_like.load_model`, random init) or of models.
    stimuli
        Anything :func:`~torchlens_like.extract_features` takes.
    layers : str, list or dict
        One layer for every model, one per model in order, or ``{name: layer}``.
    dissimilarity : str
        RDM measure of :func:`~torchlens_like.analysis.compute_rdm`.
    correlation : str
        RDM comparison of :func:`~torchlens_like.analysis.compare_rdms`.
    output_dir : str, optional
        Features go to ``output_dir/<model name>/``; a later call reuses them.
    batch_size : int
    **extract_options
        Passed on to :func:`~torchlens_like.extract_features` (``reduction``,
        ``device``, ``num_workers``...).

    Returns
    -------
    pandas.DataFrame
        Model x model correlations of the RDMs (ones on the diagonal).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> torch.manual_seed(0) and None
    >>> a, b = torch.nn.Linear(6, 5), torch.nn.Linear(6, 5)
    >>> data = torch.utils.data.TensorDataset(torch.rand(8, 6))
    >>> table = tll.compare_models({"a": a, "b": b, "a again": a}, data, "linear_1", progress=False)
    >>> round(float(table.loc["a", "a again"]), 6), table.shape
    (1.0, (3, 3))
    """
    from ..analysis import compare_rdms, compute_rdm

    named = _named_models(models)
    per_model = _layers_per_model(layers, list(named))
    rdms = {}
    for name, model in named.items():
        directory = os.path.join(output_dir, _folder(name)) if output_dir else None
        features = extract_features(model, stimuli, [per_model[name]], batch_size=batch_size,
                                    output_dir=directory, flatten=True, **extract_options)
        rdms[name] = compute_rdm(features[str(per_model[name])][:], dissimilarity,
                                 condensed=True)
    return compare_rdms(rdms, correlation)


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
