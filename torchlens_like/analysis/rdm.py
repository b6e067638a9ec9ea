"""Representational dissimilarity matrices (RDMs) from features.

Design decisions
----------------
* Every measure is a function of the Gram matrix of prepared features:
  correlation and cosine normalise the rows so that ``1 - G`` is the distance;
  Euclidean and Gaussian centre the columns (distances do not change, rounding
  error does) and use ``|x|^2 + |y|^2 - 2 G``.  One matrix product does the work,
  on the device of the features.
* The measures live in the registry :data:`DISSIMILARITIES` (name -> function
  that prepares the features and returns how to turn a Gram block into
  dissimilarities); adding a measure is adding an entry.
* The matrix is built in blocks of rows.  Block ``i`` multiplies its rows with
  the rows from ``i`` onwards only, so about half the products of a full
  ``X @ X.T`` are computed, and memory beyond the output stays bounded by a
  block (26,000 stimuli fit in a few GiB).  ``condensed=True`` writes the upper
  triangle straight into a vector of length ``n (n - 1) / 2`` (scipy's ``pdist``
  order), halving the output memory as well.
* The Gaussian measure follows THINGSvision: ``1 - exp(-d^2 / mean(d^2))`` with
  the mean over all ``n x n`` entries of the squared-distance matrix.  That mean
  equals twice the total variance of the features, so it is computed in closed
  form before the blocks.
* The output is exactly symmetric with a zero diagonal: the diagonal blocks are
  symmetrised and mirrored rather than computed twice.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .backend import as_output, as_stimulus_matrix, block_length, lookup, unit_rows

Finish = Callable[[torch.Tensor, int, int], torch.Tensor]

_UNDEFINED_HINT = "drop those stimuli or use method='euclidean'"


def _correlation(x: torch.Tensor, name: str) -> tuple[torch.Tensor, Finish]:
    z = unit_rows(
        x - x.mean(dim=1, keepdim=True),
        name,
        reference=torch.linalg.vector_norm(x, dim=1),
        what="constant",
        hint=_UNDEFINED_HINT,
    )
    return z, lambda gram, start, stop: 1 - gram.clamp_(-1, 1)


def _cosine(x: torch.Tensor, name: str) -> tuple[torch.Tensor, Finish]:
    z = unit_rows(x, name, hint=_UNDEFINED_HINT)
    return z, lambda gram, start, stop: 1 - gram.clamp_(-1, 1)


def _centred_squared_norms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = x - x.mean(dim=0, keepdim=True)
    return z, torch.einsum("ij,ij->i", z, z)


def _squared_distances(gram: torch.Tensor, sq: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    return (sq[start:stop, None] + sq[None, start:] - 2 * gram).clamp_(min=0)


def _euclidean(x: torch.Tensor, name: str) -> tuple[torch.Tensor, Finish]:
    z, sq = _centred_squared_norms(x)
    return z, lambda gram, start, stop: _squared_distances(gram, sq, start, stop).sqrt_()


def _gaussian(x: torch.Tensor, name: str) -> tuple[torch.Tensor, Finish]:
    z, sq = _centred_squared_norms(x)
    bandwidth = 2 * sq.mean()
    if not bandwidth > 0:
        raise ValueError(
            f"{name} is the same for every stimulus, so the Gaussian bandwidth (mean squared distance) is 0; "
            "pass features that differ between stimuli"
        )
    return z, lambda gram, start, stop: 1 - torch.exp(_squared_distances(gram, sq, start, stop) / -bandwidth)


DISSIMILARITIES: dict[str, Callable[[torch.Tensor, str], tuple[torch.Tensor, Finish]]] = {
    "correlation": _correlation,
    "cosine": _cosine,
    "euclidean": _euclidean,
    "gaussian": _gaussian,
}
"""Dissimilarity measures by name: ``prepare(features, argument_name) -> (z, finish)``."""


def _offset(row: int, n: int) -> int:
    return row * n - row * (row + 1) // 2


def _write_condensed(out: torch.Tensor, block: torch.Tensor, start: int, n: int) -> None:
    upper = torch.ones(block.shape, dtype=torch.bool, device=block.device).triu_(1)
    out[_offset(start, n) : _offset(start + block.shape[0], n)] = block[upper]


def _write_square(out: torch.Tensor, block: torch.Tensor, start: int) -> None:
    rows = block.shape[0]
    head = block[:, :rows].triu(1)
    block[:, :rows] = head + head.T
    out[start : start + rows, start:] = block
    out[start:, start : start + rows] = block.T


def _block_rows(n: int, itemsize: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        return chunk_size
    balanced = max(256, math.ceil(n / 8))
    return min(balanced, block_length(n, 4 * n * itemsize))


def compute_rdm(features, method: str = "correlation", *, condensed: bool = False, device=None, chunk_size=None):
    """Representational dissimilarity matrix between stimuli.

    Parameters
    ----------
    features : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)
        One feature array per stimulus; trailing axes are flattened.
    method : {"correlation", "cosine", "euclidean", "gaussian"}
        Dissimilarity measure: ``1 - Pearson r``, ``1 - cosine similarity``,
        Euclidean distance, or ``1 - exp(-d^2 / mean(d^2))`` over squared
        Euclidean distances ``d^2`` (mean over all ``n x n`` entries).
    condensed : bool
        Return the upper triangle as a vector of length ``n (n - 1) / 2`` in
        scipy ``pdist`` order instead of the square matrix.
    device : str or torch.device, optional
        Compute there (e.g. ``"cuda"`` for a numpy input); default: the
        tensor's device, or the CPU for numpy input.
    chunk_size : int, optional
        Stimuli per block; default: chosen from a 256 MiB budget.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Shape ``(n_stimuli, n_stimuli)``, symmetric with zeros on the diagonal
        (or the condensed vector); numpy for numpy input, else a tensor on the
        computing device.  Float inputs keep their precision; integers give
        float64.

    Raises
    ------
    ValueError
        For fewer than two stimuli, NaN or infinite values, constant feature
        vectors (correlation) or all-zero ones (cosine), or an unknown method.

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 2.0, 4.0]])
    >>> compute_rdm(features).round(3)
    array([[0.   , 2.   , 0.018],
           [2.   , 0.   , 1.982],
           [0.018, 1.982, 0.   ]])
    """
    prepare = lookup(DISSIMILARITIES, method, "method")
    x = as_stimulus_matrix(features, "features", min_stimuli=2, device=device)
    z, finish = prepare(x, "features")
    n = z.shape[0]
    out = torch.empty((n * (n - 1) // 2,) if condensed else (n, n), dtype=z.dtype, device=z.device)
    rows = _block_rows(n, z.element_size(), chunk_size)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = finish(z[start:stop] @ z[start:].T, start, stop)
        if condensed:
            _write_condensed(out, block, start, n)
        else:
            _write_square(out, block, start)
    return as_output(out, features)


def upper_triangle(square: torch.Tensor) -> torch.Tensor:
    """Upper triangle (above the diagonal) of a square matrix, row by row.

    Parameters
    ----------
    square : torch.Tensor, shape (n, n)

    Returns
    -------
    torch.Tensor, shape (n (n - 1) / 2,)
        Same order as ``scipy.spatial.distance.squareform``.

    Examples
    --------
    >>> import torch
    >>> upper_triangle(torch.arange(9.0).reshape(3, 3))
    tensor([1., 2., 5.])
    """
    n = square.shape[0]
    out = torch.empty(n * (n - 1) // 2, dtype=square.dtype, device=square.device)
    rows = _block_rows(n, square.element_size(), None)
    for start in range(0, n, rows):
        _write_condensed(out, square[start : start + rows, start:], start, n)
    return out


def n_from_condensed(length: int, name: str) -> int:
    """Number of stimuli of a condensed RDM of ``length`` entries.

    Parameters
    ----------
    length : int
        Entries of the condensed vector.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    int
        ``n`` with ``n (n - 1) / 2 == length``.

    Raises
    ------
    ValueError
        If ``length`` is not of that form.

    Examples
    --------
    >>> n_from_condensed(6, "rdm")
    4
    """
    n = (1 + math.isqrt(1 + 8 * length)) // 2
    if n * (n - 1) // 2 != length:
        raise ValueError(
            f"{name} has {length} entries, which is not n (n - 1) / 2 for any n; "
            "pass a square RDM or the upper triangle of one"
        )
    return n


def condensed_positions(indices, n: int) -> np.ndarray:
    """Positions in a condensed RDM of ``n`` stimuli of the pairs among ``indices``.

    ``rdm[condensed_positions(idx, n)]`` is the condensed RDM of the stimuli
    ``idx`` (in that order), without building a square matrix.

    Parameters
    ----------
    indices : sequence of int
        At least two distinct stimulus positions below ``n``.
    n : int
        Stimuli of the full RDM.

    Returns
    -------
    numpy.ndarray of int64, shape (m (m - 1) / 2,)

    Raises
    ------
    ValueError
        For fewer than two, repeated or out-of-range indices.

    Examples
    --------
    >>> condensed_positions([2, 0], 3)
    array([1])
    """
    index = np.asarray(indices)
    if (
        index.ndim != 1
        or index.size < 2
        or not np.issubdtype(index.dtype, np.integer)
        or index.min() < 0
        or index.max() >= n
        or np.unique(index).size != index.size
    ):
        raise ValueError(
            f"indices must list at least two distinct stimulus positions from 0 to {n - 1}, got {indices!r}"
        )
    first, second = np.triu_indices(index.size, 1)
    low = np.minimum(index[first], index[second]).astype(np.int64)
    high = np.maximum(index[first], index[second]).astype(np.int64)
    return low * n - low * (low + 1) // 2 + high - low - 1


def square_from_condensed(vector: torch.Tensor) -> torch.Tensor:
    """Symmetric square matrix with zero diagonal from a condensed vector.

    Parameters
    ----------
    vector : torch.Tensor, shape (n (n - 1) / 2,)

    Returns
    -------
    torch.Tensor, shape (n, n)

    Examples
    --------
    >>> import torch
    >>> square_from_condensed(torch.tensor([1.0, 2.0, 3.0]))
    tensor([[0., 1., 2.],
            [1., 0., 3.],
            [2., 3., 0.]])
    """
    n = n_from_condensed(vector.numel(), "vector")
    out = torch.empty((n, n), dtype=vector.dtype, device=vector.device)
    rows = _block_rows(n, vector.element_size(), None)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = torch.zeros((stop - start, n - start), dtype=vector.dtype, device=vector.device)
        upper = torch.ones(block.shape, dtype=torch.bool, device=vector.device).triu_(1)
        block[upper] = vector[_offset(start, n) : _offset(stop, n)]
        _write_square(out, block, start)
    return out
