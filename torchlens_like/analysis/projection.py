"""Sparse random projection (Johnson-Lindenstrauss) of feature maps.

Design decisions
----------------
* The matrix is the sparse random matrix of Li, Hastie and Church (2006): each
  entry is ``+-sqrt(1 / (density * n_components))`` with probability
  ``density / 2`` each and 0 otherwise, ``density = 1 / sqrt(n_features)`` by
  default.  Squared distances are preserved in expectation.
* Without ``n_components``, the number of components is the Johnson-Lindenstrauss
  bound ``4 ln(n) / (eps^2 / 2 - eps^3 / 3)`` for ``n`` stimuli (Dasgupta &
  Gupta 2003), under which all pairwise squared distances stay within a factor
  ``1 +- eps`` with high probability.
* The non-zero entries are drawn as a Bernoulli process over the flattened
  ``n_components x n_features`` matrix by sampling geometric gaps between them,
  so the cost is proportional to the number of non-zeros, never to the full
  matrix (which for a large convolutional layer would not fit in memory).  The
  positions come out sorted, so they form the transposed matrix in CSR format
  directly; CSR times dense was the fastest sparse product on CPU (MKL).
* The matrix depends only on ``seed``, ``n_features``, ``n_components`` and
  ``density``, and is drawn on the CPU with a private generator, so the same
  call gives the same projection on any device and leaves torch's global
  random state untouched.
"""

from __future__ import annotations

import math
import warnings

import torch

from .backend import as_output, as_stimulus_matrix


def johnson_lindenstrauss_components(n_samples: int, eps: float = 0.1) -> int:
    """Number of components that keeps ``n_samples`` points' distances within ``1 +- eps``.

    Parameters
    ----------
    n_samples : int
        Number of points (stimuli).
    eps : float
        Allowed distortion of squared distances, between 0 and 1.

    Returns
    -------
    int
        ``floor(4 ln(n_samples) / (eps^2 / 2 - eps^3 / 3))``.

    Examples
    --------
    >>> johnson_lindenstrauss_components(1000, eps=0.1)
    5920
    """
    if not 0 < eps < 1:
        raise ValueError(f"eps must be strictly between 0 and 1, got {eps!r}")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return int(4 * math.log(n_samples) / (eps**2 / 2 - eps**3 / 3))


def _sparse_matrix(n_features: int, n_components: int, density: float, seed: int, device, dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    total = n_features * n_components
    log_miss = math.log1p(-density) if density < 1 else -math.inf
    chunks = []
    last = -1
    while True:
        expected = (total - last) * density
        draws = int(expected + 6 * math.sqrt(expected) + 16)
        uniform = 1 - torch.rand(draws, generator=generator, dtype=torch.float64)
        gaps = torch.floor(torch.log(uniform) / log_miss).clamp_(max=total) + 1
        positions = last + torch.cumsum(gaps, 0)
        inside = positions[positions < total].long()
        chunks.append(inside)
        if inside.numel() < draws:
            break
        last = int(inside[-1])
    positions = torch.cat(chunks)
    signs = torch.randint(0, 2, (positions.numel(),), generator=generator, dtype=torch.int8)
    values = (2 * signs.double() - 1) * math.sqrt(1 / (density * n_components))
    row_starts = torch.zeros(n_components + 1, dtype=torch.long)
    row_starts[1:] = torch.cumsum(torch.bincount(positions // n_features, minlength=n_components), 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(
            row_starts.to(device),
            (positions % n_features).to(device),
            values.to(device=device, dtype=dtype),
            (n_components, n_features),
            check_invariants=False,
        )


def sparse_random_projection(features, n_components: int | None = None, eps: float = 0.1, seed: int = 0,
                             *, density: float | None = None):
    """Project features onto a sparse random basis (Johnson-Lindenstrauss).

    Parameters
    ----------
    features : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)
        Flattened per stimulus.
    n_components : int, optional
        Output dimensionality.  Default: the Johnson-Lindenstrauss bound for
        ``n_stimuli`` points and ``eps``.
    eps : float
        Allowed distortion of squared distances, used when ``n_components`` is
        not given.
    seed : int
        Seed of the random matrix; the same seed gives the same matrix for the
        same ``n_features``, so train and test stimuli can be projected
        separately.
    density : float, optional
        Fraction of non-zero entries; default ``1 / sqrt(n_features)``.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_stimuli, n_components)
        Same kind, device and floating dtype as ``features``.

    Raises
    ------
    ValueError
        If the Johnson-Lindenstrauss bound exceeds the number of features (pass
        ``n_components``, a larger ``eps``, or skip the projection), or for
        invalid arguments.

    Examples
    --------
    >>> import numpy as np
    >>> features = np.random.default_rng(0).normal(size=(50, 20_000))
    >>> sparse_random_projection(features, eps=0.5).shape
    (50, 187)
    """
    x = as_stimulus_matrix(features, "features", min_stimuli=1)
    n_stimuli, n_features = x.shape
    if n_components is None:
        n_components = johnson_lindenstrauss_components(n_stimuli, eps)
        if n_components > n_features:
            raise ValueError(
                f"the Johnson-Lindenstrauss bound for {n_stimuli} stimuli at eps={eps} is {n_components} "
                f"components, more than the {n_features} features; pass n_components, a larger eps, "
                "or use the features unprojected"
            )
    if not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    if density is None:
        density = 1 / math.sqrt(n_features)
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    transposed = _sparse_matrix(n_features, n_components, density, seed, x.device, x.dtype)
    return as_output((transposed @ x.T).T.contiguous(), features)
