"""Effective dimensionality of a feature space.

Design decisions
----------------
* The effective dimensionality is the participation ratio of the PCA
  eigenvalues, ``(sum l)^2 / sum l^2`` (Del Giudice 2021; Elmoznino & Bonner
  2022, as in DeepJuice).  Both sums are traces: ``sum l = trace(C)`` and
  ``sum l^2 = ||C||_F^2`` for the covariance ``C``, and ``||X'X||_F = ||XX'||_F``,
  so no eigendecomposition is needed: one Gram matrix of the smaller side of the
  centred features suffices.
* The ``1 / (n - 1)`` of the covariance cancels in the ratio and is omitted.
"""

from __future__ import annotations

import torch

from .backend import as_stimulus_matrix


def effective_dimensionality(features) -> float:
    """Participation ratio of the PCA eigenvalue spectrum of ``features``.

    Parameters
    ----------
    features : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)
        Flattened per stimulus; computed on the tensor's device.

    Returns
    -------
    float
        Between 1 (one direction carries all variance) and
        ``min(n_stimuli - 1, n_features)`` (variance spread evenly).

    Raises
    ------
    ValueError
        If there are fewer than two stimuli, NaN or infinite values, or no
        variance at all.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> round(effective_dimensionality(rng.normal(size=(100, 3)) * [1.0, 1.0, 0.0]), 1)
    2.0
    """
    x = as_stimulus_matrix(features, "features", min_stimuli=2)
    centred = x - x.mean(dim=0, keepdim=True)
    gram = centred @ centred.T if centred.shape[0] <= centred.shape[1] else centred.T @ centred
    total = torch.trace(gram)
    if not total > 0:
        raise ValueError("features has no variance across stimuli, so its dimensionality is undefined")
    return float(total**2 / torch.linalg.matrix_norm(gram) ** 2)
