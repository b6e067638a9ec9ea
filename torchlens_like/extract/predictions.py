"""``top_k_classes``: the most probable classes of every stimulus, with names from the weights."""

from __future__ import annotations

import pandas as pd
import torch

from .sources import get_source
from .stimuli import StimulusError, as_stimulus_set
from .zoo import provenance


def top_k_classes(model, stimuli, k=5, categories=None, batch_size=32, device=None,
                  num_workers=None):
    """Softmax over the model's outputs, the ``k`` largest per stimulus.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``(n, n_classes)``.
    stimuli
        Anything :func:`~torchlens_like.extract_features` takes.
    k : int
    categories : list of str, optional
        Class names; default: from the weights' metadata of a model made by
        :func:`~torchlens_like.load_model` (ImageNet names for ImageNet
        models, also with random init), else the class index.
    batch_size, device, num_workers
        As for :func:`~torchlens_like.extract_features`.

    Returns
    -------
    pandas.DataFrame
        One row per stimulus and rank: ``stimulus`` (id), ``rank`` (1 = most
        probable), ``class``, ``class_index``, ``probability``.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Linear(3, 4)
    >>> data = torch.utils.data.TensorDataset(torch.rand(2, 3))
    >>> table = tll.top_k_classes(model, data, k=2, categories=list("abcd"))
    >>> table.columns.tolist(), len(table)
    (['stimulus', 'rank', 'class', 'class_index', 'probability'], 4)
    """
    origin = provenance(model) or {}
    stimulus_set = as_stimulus_set(stimuli, origin.get("transform"), num_workers)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for first, inputs, errors in stimulus_set.batches(0, len(stimulus_set), batch_size):
            if errors:
                raise StimulusError(errors[0][1])
            logits = model(inputs.to(device))
            if categories is None:
                categories = _categories(origin, model, logits.shape[-1])
            if not 1 <= k <= logits.shape[-1]:
                raise ValueError(f"k must be between 1 and the {logits.shape[-1]} classes, got {k}")
            probabilities, indices = torch.softmax(logits.float(), -1).topk(k, dim=-1)
            for row, (probs, idx) in enumerate(zip(probabilities.tolist(), indices.tolist())):
                stimulus = stimulus_set.ids[first + row]
                rows += [{"stimulus": stimulus, "rank": rank + 1, "class": categories[i],
                          "class_index": i, "probability": p}
                         for rank, (p, i) in enumerate(zip(probs, idx))]
    return pd.DataFrame(rows, columns=["stimulus", "rank", "class", "class_index",
                                       "probability"])


def _categories(origin, model, n_classes):
    names = None
    if origin.get("source"):
        source = get_source(origin["source"])
        if source.categories is not None:
            names = source.categories(origin["model"], origin.get("weights"), model)
    if names is None or len(names) != n_classes:
        names = [str(i) for i in range(n_classes)]
    return names
