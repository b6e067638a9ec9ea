"""On-the-fly reductions of a layer's activations, in a registry.

Each reduction takes a batch of one layer with the stimulus axis first (the
extraction finds that axis in the actual tensor, so a sequence-first layer
``(tokens, stimuli, features)`` arrives as ``(stimuli, tokens, features)``)
and returns a smaller batch, the same function for every batch so that rows
of different batches are comparable.

``none``
    As is.
``flatten``
    ``(stimuli, features)``.
``spatial_mean``
    Mean over every axis after the channel axis: ``(N, C, H, W) -> (N, C)``.
``class_token``
    Token 0 of a ``(stimuli, tokens, features)`` layer (a ViT's class token).
``token_mean``
    Mean over tokens of a ``(stimuli, tokens, features)`` layer.
``srp``
    :func:`torchlens_like.analysis.sparse_random_projection` of the flattened
    layer; options ``n_components`` (default: the Johnson-Lindenstrauss bound
    for the whole stimulus set at ``eps``), ``eps`` (0.1) and ``seed`` (0).
    The matrix depends only on the seed and sizes, so every batch gets the same.
"""

from __future__ import annotations

import functools

import torch


def _none(values, key, n_stimuli):
    return values


def _flatten(values, key, n_stimuli):
    return values.reshape(len(values), -1)


def _require_ndim(values, key, ndim, name, layout):
    if values.dim() != ndim:
        raise ValueError(f"reduction {name!r} needs a {layout} layer, but layer {key!r} has "
                         f"shape {tuple(values.shape[1:])} per stimulus. Choose another "
                         "reduction for it (see torchlens_like.extract.reductions.REDUCTIONS).")


def _spatial_mean(values, key, n_stimuli):
    if values.dim() < 3:
        _require_ndim(values, key, 4, "spatial_mean", "(stimuli, channels, *spatial)")
    return values.mean(dim=tuple(range(2, values.dim())))


def _class_token(values, key, n_stimuli):
    _require_ndim(values, key, 3, "class_token", "(stimuli, tokens, features)")
    return values[:, 0]


def _token_mean(values, key, n_stimuli):
    _require_ndim(values, key, 3, "token_mean", "(stimuli, tokens, features)")
    return values.mean(dim=1)


def _srp(values, key, n_stimuli, n_components=None, eps=0.1, seed=0):
    from ..analysis import johnson_lindenstrauss_components, sparse_random_projection

    flat = values.reshape(len(values), -1)
    if n_components is None:
        n_components = johnson_lindenstrauss_components(n_stimuli, eps)
        if n_components >= flat.shape[1]:
            return flat
    return sparse_random_projection(flat, n_components, seed=seed)


REDUCTIONS = {"none": _none, "flatten": _flatten, "spatial_mean": _spatial_mean,
              "class_token": _class_token, "token_mean": _token_mean, "srp": _srp}


def resolve_reduction(spec):
    """A reduction function from a name, or ``(name, {options})``.

    Returns ``f(values, key, n_stimuli) -> values``. Unknown names list the
    valid ones.

    Examples
    --------
    >>> import torch
    >>> reduce = resolve_reduction("spatial_mean")
    >>> tuple(reduce(torch.ones(2, 8, 5, 5), "layer1", 2).shape)
    (2, 8)
    >>> tuple(resolve_reduction(("srp", {"n_components": 3}))(torch.ones(4, 50), "fc", 4).shape)
    (4, 3)
    """
    name, options = (spec, {}) if isinstance(spec, str) or spec is None else spec
    name = name or "none"
    if name not in REDUCTIONS:
        raise ValueError(f"unknown reduction {name!r}; valid reductions: "
                         f"{', '.join(REDUCTIONS)}")
    return functools.partial(REDUCTIONS[name], **options) if options else REDUCTIONS[name]


def reduction_name(spec):
    """The JSON-friendly description of a reduction spec, for the manifest.

    Examples
    --------
    >>> reduction_name(("srp", {"n_components": 64}))
    ['srp', {'n_components': 64}]
    """
    if spec is None or isinstance(spec, str):
        return spec or "none"
    return [spec[0], dict(spec[1])]


def apply(spec, values, key, n_stimuli):
    """Reduce a batch (stimulus axis first) with ``spec`` under ``torch.no_grad``."""
    with torch.no_grad():
        return resolve_reduction(spec)(values, key, n_stimuli)
