"""Comparing RDMs: Pearson, Spearman and Kendall correlation of their upper triangles.

Design decisions
----------------
* RDMs are compared on their upper triangles (above the diagonal); square
  matrices and condensed vectors are both accepted.  The comparison runs in
  float64 with torch, on the device of the first RDM given as a tensor.
* Each method in the registry :data:`COMPARISONS` maps two stacks of condensed
  RDMs ``(k, n_pairs)`` and ``(m, n_pairs)`` to the ``(k, m)`` matrix of
  correlations, so :func:`correlate_rdms` (one pair) and :func:`compare_rdms`
  (all pairs of a set) share one code path and ranks are computed once per RDM.
* Spearman's rho is Pearson's r of average ranks (ties share their mean rank,
  as ``scipy.stats.rankdata`` does).
* Ranking sorts the IEEE-754 bit patterns of the float64 values as integers
  (negative values with their 63 low bits flipped, which makes the integer
  order the numeric order; ``x + 0.0`` first turns -0.0 into 0.0 so that equal
  values have equal keys), because torch's radix sort of integers is several
  times faster than its float sort on the CPU, and ties can then be found on
  the sorted keys without gathering the values.
* Kendall's tau is tau-b, computed on the CPU with ``scipy.stats.kendalltau``
  (``O(n log n)`` merge counting; a torch port of it was slower).
* An RDM with the same value everywhere makes every correlation undefined; it
  is rejected with an error naming it rather than turned into NaN.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd
import scipy.stats
import torch

from .backend import as_tensor, check_finite, lookup, unit_rows
from .rdm import n_from_condensed, upper_triangle
from .rdms import RDMs


def as_condensed(rdm, name: str, device=None) -> torch.Tensor:
    """A square or condensed RDM as a float64 condensed vector.

    Parameters
    ----------
    rdm : numpy.ndarray or torch.Tensor
        Shape ``(n, n)`` (upper triangle used) or ``(n (n - 1) / 2,)``.
    name : str
        The argument's name, for error messages.
    device : torch.device, optional
        Where to put the vector; default: where ``rdm`` is.

    Returns
    -------
    torch.Tensor, shape (n (n - 1) / 2,)

    Examples
    --------
    >>> import numpy as np
    >>> as_condensed(np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]), "rdm")
    tensor([1., 2., 3.], dtype=torch.float64)
    """
    tensor = as_tensor(rdm, name, dtype=torch.float64, device=device)
    if tensor.ndim == 2 and tensor.shape[0] == tensor.shape[1]:
        vector = upper_triangle(tensor)
    elif tensor.ndim == 1:
        n_from_condensed(tensor.numel(), name)
        vector = tensor
    else:
        raise ValueError(
            f"{name} must be a square RDM (n, n) or its condensed upper triangle, got shape {tuple(tensor.shape)}"
        )
    if vector.numel() < 3:
        raise ValueError(f"{name} covers fewer than 3 stimuli; comparing RDMs needs at least 3 stimuli (3 pairs)")
    check_finite(vector, name, "condensed positions")
    if bool(vector.max() == vector.min()):
        raise ValueError(
            f"{name} has the same dissimilarity for every pair of stimuli, so its correlation with another RDM "
            "is undefined; check how it was computed"
        )
    return vector


_LOW_63_BITS = 0x7FFFFFFFFFFFFFFF


def rank(vectors: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based, ties share their mean rank) along the last axis.

    Parameters
    ----------
    vectors : torch.Tensor, shape (..., n)

    Returns
    -------
    torch.Tensor
        Same shape, float64.

    Examples
    --------
    >>> import torch
    >>> rank(torch.tensor([10.0, 30.0, 20.0, 20.0]))
    tensor([1.0000, 4.0000, 2.5000, 2.5000], dtype=torch.float64)
    """
    flat = vectors.to(torch.float64).reshape(-1, vectors.shape[-1])
    ranks = torch.empty(flat.shape, dtype=torch.float64, device=vectors.device)
    for row, out in zip(flat, ranks):
        bits = (row + 0.0).view(torch.int64)
        keys, order = torch.sort(torch.where(bits < 0, bits ^ _LOW_63_BITS, bits), stable=True)
        _, group, counts = torch.unique_consecutive(keys, return_inverse=True, return_counts=True)
        mean_rank = torch.cumsum(counts, 0).double() - (counts.double() - 1) / 2
        out[order] = mean_rank[group]
    return ranks.reshape(vectors.shape)


def _pearson(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    def unit(rows):
        return unit_rows(rows - rows.mean(dim=1, keepdim=True), "rdms", what="constant", hint="check the RDMs")

    return (unit(first) @ unit(second).T).clamp(-1, 1)


def _spearman(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return _pearson(rank(first), rank(second))


def _kendall(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    first_rows, second_rows = first.cpu().numpy(), second.cpu().numpy()
    table = [[scipy.stats.kendalltau(row, other).statistic for other in second_rows] for row in first_rows]
    return torch.tensor(table, dtype=torch.float64, device=first.device)


COMPARISONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "pearson": _pearson,
    "spearman": _spearman,
    "kendall": _kendall,
}
"""RDM comparison methods by name: ``(k, n_pairs), (m, n_pairs) -> (k, m)`` correlations."""


def correlate_rdms(rdm1, rdm2, method: str = "pearson") -> float:
    """Correlation between the upper triangles of two RDMs.

    Parameters
    ----------
    rdm1, rdm2 : numpy.ndarray or torch.Tensor
        Square RDMs of shape ``(n, n)`` or condensed ones of shape
        ``(n (n - 1) / 2,)``, over the same stimuli in the same order.
    method : {"pearson", "spearman", "kendall"}
        Pearson's r, Spearman's rho (average ranks for ties) or Kendall's tau-b.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For RDMs of different sizes, fewer than 3 stimuli, NaN or infinite
        entries, constant RDMs, or an unknown method.

    Examples
    --------
    >>> import numpy as np
    >>> from torchlens_like.analysis import compute_rdm
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(20, 50))
    >>> rdm1 = compute_rdm(features)
    >>> rdm2 = compute_rdm(features + rng.normal(scale=0.1, size=features.shape))
    >>> correlate_rdms(rdm1, rdm2, method="spearman") > 0.9
    True
    """
    compare = lookup(COMPARISONS, method, "method")
    first = as_condensed(rdm1, "rdm1")
    second = as_condensed(rdm2, "rdm2", device=first.device)
    if first.numel() != second.numel():
        raise ValueError(
            f"rdm1 covers {n_from_condensed(first.numel(), 'rdm1')} stimuli but rdm2 covers "
            f"{n_from_condensed(second.numel(), 'rdm2')}; both must be computed over the same stimuli"
        )
    return float(compare(first[None], second[None])[0, 0])


def compare_rdms(rdms, method: str = "pearson") -> pd.DataFrame:
    """Correlations between all pairs of a set of RDMs.

    Parameters
    ----------
    rdms : dict of str to array, or RDMs
        Named square or condensed RDMs over the same stimuli, e.g. one per
        model or layer; or an :class:`~torchlens_like.analysis.RDMs` container,
        whose descriptors name the rows.
    method : {"pearson", "spearman", "kendall"}
        As for :func:`correlate_rdms`.

    Returns
    -------
    pandas.DataFrame, shape (n_rdms, n_rdms)
        Indexed and labelled by the names (a MultiIndex for several
        descriptors); symmetric with ones on the diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> from torchlens_like.analysis import compute_rdm
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 10, 30))
    >>> table = compare_rdms({"a": compute_rdm(a), "b": compute_rdm(b), "a2": compute_rdm(2 * a)})
    >>> round(float(table.loc["a", "a2"]), 6)
    1.0
    """
    compare = lookup(COMPARISONS, method, "method")
    if isinstance(rdms, RDMs):
        names = rdms.labels()
        if len(rdms.descriptors) > 1:
            index = pd.MultiIndex.from_frame(pd.DataFrame(rdms.descriptors))
        elif rdms.descriptors:
            (key, values), = rdms.descriptors.items()
            index = pd.Index(values, name=key)
        else:
            index = pd.Index(names)
        vectors = [as_condensed(row, f"rdms[{name!r}]") for name, row in zip(names, rdms.dissimilarities)]
    elif isinstance(rdms, Mapping):
        names = list(rdms)
        index = pd.Index(names)
        vectors = []
        for name in names:
            device = vectors[0].device if vectors else None
            vectors.append(as_condensed(rdms[name], f"rdms[{name!r}]", device=device))
    else:
        raise TypeError(f"rdms must be a dict of name -> RDM or an RDMs container, got {type(rdms).__name__}")
    if len(vectors) < 1:
        raise ValueError("rdms is empty; pass at least one named RDM")
    for name, vector in zip(names, vectors):
        if vector.numel() != vectors[0].numel():
            raise ValueError(
                f"rdms[{name!r}] covers {n_from_condensed(vector.numel(), name)} stimuli but "
                f"rdms[{names[0]!r}] covers {n_from_condensed(vectors[0].numel(), names[0])}; "
                "all RDMs must be computed over the same stimuli"
            )
    stacked = torch.stack(vectors)
    table = compare(stacked, stacked).cpu().numpy()
    np.fill_diagonal(table, 1.0)
    return pd.DataFrame(table, index=index, columns=index)
