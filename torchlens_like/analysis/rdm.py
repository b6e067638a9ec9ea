"""Representational dissimilarity matrices (RDMs) from features.

Design decisions
----------------
* Every measure is a function of the Gram matrix of prepared features:
  correlation and cosine normalise the rows so that ``1 - G`` is the distance;
  Euclidean and Gaussian centre the columns (distances do not change, rounding
  error does) and use ``|x|^2 + |y|^2 - 2 G``.  One matrix product does the work,
  on the device of the features.
* The measures live in the registry :data:`DISSIMILARITIES` (name ->
  :class:`Dissimilarity`: how to prepare rows and how to turn a Gram block into
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
* Features in a file (a ``DiskArray`` from ``load_features``, an h5py dataset, a
  zarr array, a memory map) larger than one block are never loaded whole.  A
  measure is written row-wise for that reason: ``prepare`` turns any block of
  rows into prepared rows, given statistics of all stimuli (the column mean
  for the distances); one pass over the file gathers those statistics, and
  each row block is then computed against the blocks from it onwards, read
  again as needed (about ``b^2 / 2`` block reads for ``b`` blocks, each of the
  256 MiB budget).  Features that fit one block are read once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch

from .backend import (as_output, as_stimulus_matrix, block_length, check_finite, floating_dtype, lookup,
                      row_reader, unit_rows)

_UNDEFINED_HINT = "drop those stimuli or use method='euclidean'"


@dataclasses.dataclass(frozen=True)
class Dissimilarity:
    """One measure, written so that it can be computed one block of stimuli at a time.

    Attributes
    ----------
    prepare : callable (rows, mean, name, offset) -> torch.Tensor
        Prepared rows of a block of stimuli; ``mean`` is the column mean of
        all stimuli (None unless ``centred``), ``offset`` the block's first
        stimulus (for error messages).
    finish : callable (gram, sq_rows, sq_columns, scale) -> torch.Tensor
        Dissimilarities from a block of the Gram matrix of prepared rows and
        the squared norms of its rows' and columns' prepared rows.
    centred : bool
        Whether ``prepare`` needs the column mean.
    scale : callable (sq, name) -> float, optional
        A constant from the squared norms of all prepared rows (the Gaussian
        bandwidth).
    """

    prepare: Callable
    finish: Callable
    centred: bool = False
    scale: Callable | None = None


def _correlation_rows(x: torch.Tensor, mean, name: str, offset: int) -> torch.Tensor:
    return unit_rows(x - x.mean(dim=1, keepdim=True), name, reference=torch.linalg.vector_norm(x, dim=1),
                     what="constant", hint=_UNDEFINED_HINT, offset=offset)


def _cosine_rows(x: torch.Tensor, mean, name: str, offset: int) -> torch.Tensor:
    return unit_rows(x, name, hint=_UNDEFINED_HINT, offset=offset)


def _centred_rows(x: torch.Tensor, mean, name: str, offset: int) -> torch.Tensor:
    return x - mean


def _one_minus_similarity(gram, sq_rows, sq_columns, scale):
    return 1 - gram.clamp_(-1, 1)


def _squared_distances(gram: torch.Tensor, sq_rows: torch.Tensor, sq_columns: torch.Tensor) -> torch.Tensor:
    return (sq_rows[:, None] + sq_columns[None, :] - 2 * gram).clamp_(min=0)


def _euclidean(gram, sq_rows, sq_columns, scale):
    return _squared_distances(gram, sq_rows, sq_columns).sqrt_()


def _gaussian(gram, sq_rows, sq_columns, bandwidth):
    return 1 - torch.exp(_squared_distances(gram, sq_rows, sq_columns) / -bandwidth)


def _gaussian_bandwidth(sq: torch.Tensor, name: str) -> float:
    bandwidth = 2 * sq.mean()
    if not bandwidth > 0:
        raise ValueError(
            f"{name} is the same for every stimulus, so the Gaussian bandwidth (mean squared distance) is 0; "
            "pass features that differ between stimuli"
        )
    return bandwidth


DISSIMILARITIES: dict[str, Dissimilarity] = {
    "correlation": Dissimilarity(_correlation_rows, _one_minus_similarity),
    "cosine": Dissimilarity(_cosine_rows, _one_minus_similarity),
    "euclidean": Dissimilarity(_centred_rows, _euclidean, centred=True),
    "gaussian": Dissimilarity(_centred_rows, _gaussian, centred=True, scale=_gaussian_bandwidth),
}
"""Dissimilarity measures by name (see :class:`Dissimilarity`)."""


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


def compute_rdm(features, method: str = "correlation", *, condensed: bool = False, device=None, chunk_size=None,
                dtype=None):
    """Representational dissimilarity matrix between stimuli.

    Parameters
    ----------
    features : array-like, shape (n_stimuli, ...)
        One feature array per stimulus; trailing axes are flattened.  Numpy,
        torch, or features in a file (a ``DiskArray`` from ``load_features``,
        an h5py dataset, a zarr array, a memory map), which are read block by
        block rather than loaded whole.
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
    dtype : {None, "float32", "float64"} or a numpy or torch dtype
        Precision of the computation and the result; default: that of the
        features (float32 stays float32, integers give float64).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Shape ``(n_stimuli, n_stimuli)``, symmetric with zeros on the diagonal
        (or the condensed vector); numpy for numpy input, else a tensor on the
        computing device.  Features from a file give numpy.

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
    >>> compute_rdm(features.astype(np.float32)).dtype, compute_rdm(features, dtype="float32").dtype
    (dtype('float32'), dtype('float32'))
    """
    measure = lookup(DISSIMILARITIES, method, "method")
    precision = floating_dtype(dtype)
    read = row_reader(features, "features", device=device, dtype=precision)
    file_rows = _file_block_rows(features, chunk_size) if read is not None else 0
    if read is not None and len(features.shape) >= 2 and file_rows < len(features):
        blocks = _FileBlocks(read, measure, len(features), file_rows)
    else:
        x = as_stimulus_matrix(features, "features", min_stimuli=2, device=device, dtype=precision)
        blocks = _MemoryBlocks(x, measure, _block_rows(x.shape[0], x.element_size(), chunk_size))
    n = blocks.n
    out = torch.empty((n * (n - 1) // 2,) if condensed else (n, n), dtype=blocks.dtype, device=blocks.device)
    for start in range(0, n, blocks.rows):
        stop = min(start + blocks.rows, n)
        block = measure.finish(blocks.gram(start, stop), blocks.sq[start:stop], blocks.sq[start:], blocks.scale)
        if condensed:
            _write_condensed(out, block, start, n)
        else:
            _write_square(out, block, start)
    return as_output(out, features)


class _MemoryBlocks:
    """Prepared rows of features in memory: Gram blocks are slices of one matrix product."""

    def __init__(self, x: torch.Tensor, measure: Dissimilarity, rows: int):
        mean = x.mean(dim=0, keepdim=True) if measure.centred else None
        self.z = measure.prepare(x, mean, "features", 0)
        self.n, self.dtype, self.device, self.rows = self.z.shape[0], self.z.dtype, self.z.device, rows
        self.sq = torch.einsum("ij,ij->i", self.z, self.z)
        self.scale = measure.scale(self.sq, "features") if measure.scale else None

    def gram(self, start: int, stop: int) -> torch.Tensor:
        return self.z[start:stop] @ self.z[start:].T


class _FileBlocks:
    """Prepared rows of features in a file, read ``rows`` stimuli at a time, never all at once.

    One pass gathers the column mean (distances only), a second the squared
    norms of the prepared rows; then the Gram block of rows ``start:stop``
    reads the blocks from ``start`` onwards.
    """

    def __init__(self, read, measure: Dissimilarity, n: int, rows: int):
        self.read, self.measure, self.n, self.rows = read, measure, n, rows
        first = read(0, 1)
        self.dtype, self.device = first.dtype, first.device
        if first.shape[1] == 0:
            raise ValueError("features has no features; pass a non-empty array")
        self.mean = self._column_mean() if measure.centred else None
        self.sq = torch.cat([torch.einsum("ij,ij->i", z, z) for z in self._prepared(0)])
        self.scale = measure.scale(self.sq, "features") if measure.scale else None

    def _block(self, start: int) -> torch.Tensor:
        block = self.read(start, min(start + self.rows, self.n))
        check_finite(block, "features", offset=start)
        return block

    def _column_mean(self) -> torch.Tensor:
        total = sum(self._block(start).sum(dim=0, keepdim=True, dtype=torch.float64)
                    for start in range(0, self.n, self.rows))
        return (total / self.n).to(self.dtype)

    def _prepared(self, start: int):
        for low in range(start, self.n, self.rows):
            yield self.measure.prepare(self._block(low), self.mean, "features", low)

    def gram(self, start: int, stop: int) -> torch.Tensor:
        blocks = self._prepared(start)
        rows = next(blocks)
        return torch.cat([rows @ rows.T] + [rows @ z.T for z in blocks], dim=1)


def _file_block_rows(features, chunk_size) -> int:
    """Stimuli per block read from a file: the block and its rows of the output fit the budget."""
    if chunk_size is not None:
        return _block_rows(len(features), 8, chunk_size)
    n = len(features)
    features_per_row = int(np.prod(features.shape[1:], dtype=np.int64))
    return block_length(n, 8 * max(features_per_row, 4 * n))


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


def condensed_row_sums(vector: torch.Tensor) -> torch.Tensor:
    """Row sums of the symmetric zero-diagonal matrix of a condensed vector, without forming it.

    Parameters
    ----------
    vector : torch.Tensor, shape (n (n - 1) / 2,)

    Returns
    -------
    torch.Tensor, shape (n,)

    Examples
    --------
    >>> import torch
    >>> condensed_row_sums(torch.tensor([1.0, 2.0, 3.0]))
    tensor([3., 4., 5.])
    """
    n = n_from_condensed(vector.numel(), "vector")
    sums = torch.zeros(n, dtype=vector.dtype, device=vector.device)
    rows = _block_rows(n, vector.element_size(), None)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = torch.zeros((stop - start, n - start), dtype=vector.dtype, device=vector.device)
        upper = torch.ones(block.shape, dtype=torch.bool, device=vector.device).triu_(1)
        block[upper] = vector[_offset(start, n) : _offset(stop, n)]
        sums[start:stop] += block.sum(dim=1)
        sums[start:] += block.sum(dim=0)
    return sums
