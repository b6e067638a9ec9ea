"""Centered kernel alignment (CKA) between two representations of the same stimuli.

Design decisions
----------------
* CKA is ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for the kernel matrices
  ``K`` and ``L`` of two representations over the same stimuli (Kornblith et
  al. 2019).  Every estimator needs only a few statistics of the kernels
  (:class:`KernelStatistics`): the traces ``tr(K L)``, ``tr(K K)``,
  ``tr(L L)``, the row sums and the diagonals.  They are gathered from blocks
  or from condensed kernels, so no square ``n x n`` matrix is ever formed.
* The estimators live in :data:`ESTIMATORS`: the biased HSIC
  ``tr(K H L H)`` (Gretton et al. 2005; ``H`` the centring matrix) and the
  unbiased HSIC of Song et al. (2012), which drops the kernels' diagonals.
  The factors common to numerator and denominator (``1 / (n - 1)^2``,
  ``1 / (n (n - 3))``) cancel and are left out.
* The kernels live in :data:`KERNELS`.  The linear kernel of centred features
  ``X`` and ``Y`` has zero row sums and ``tr(K L) = ||X' Y||_F^2``, so each
  trace is taken from whichever costs fewer operations: the ``d_x x d_y``
  cross product of the features (Kornblith's feature-space form) or ``n x n``
  Gram blocks.  When the stimuli outnumber the features of both
  representations, the cross products always win, so 20,000 stimuli never
  form an ``n x n`` matrix.
* The RBF kernel is ``exp(-d^2 / (2 b^2))`` with bandwidth ``b = sigma * m``,
  ``m`` the median Euclidean distance between distinct stimuli (diagonal
  excluded; for an even number of pairs the mean of the two middle values, as
  ``numpy.median``).  The median needs the ``n (n - 1) / 2`` distances (a
  condensed Euclidean RDM, half the products of a Gram matrix); the kernel is
  made from them in place and kept condensed, and every statistic is a dot
  product or a row sum of the two condensed kernels, so no product is computed
  twice and no ``n x n`` matrix is formed (memory: the two condensed kernels,
  ``n^2`` numbers in all).
* The computation runs in float64 unless ``dtype`` says otherwise, because the
  debiased estimator subtracts terms of similar size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .backend import as_stimulus_matrix, block_length, check_same_stimuli, floating_dtype, lookup
from .rdm import compute_rdm, condensed_row_sums


@dataclass
class KernelStatistics:
    """What the HSIC estimators need from the kernels ``K`` (of x) and ``L`` (of y).

    Attributes
    ----------
    n : int
        Stimuli.
    cross, self_x, self_y : torch.Tensor
        ``tr(K L)``, ``tr(K K)``, ``tr(L L)`` (0-dim).
    diag_x, diag_y : torch.Tensor, shape (n,)
        Diagonals of ``K`` and ``L``.
    rows_x, rows_y : torch.Tensor, shape (n,)
        Row sums of ``K`` and ``L``.
    """

    n: int
    cross: torch.Tensor
    self_x: torch.Tensor
    self_y: torch.Tensor
    diag_x: torch.Tensor
    diag_y: torch.Tensor
    rows_x: torch.Tensor
    rows_y: torch.Tensor


def _biased_hsic(trace: torch.Tensor, diag_k, diag_l, rows_k: torch.Tensor, rows_l: torch.Tensor,
                 n: int) -> torch.Tensor:
    return trace - 2 / n * (rows_k @ rows_l) + rows_k.sum() * rows_l.sum() / n**2


def _unbiased_hsic(trace: torch.Tensor, diag_k: torch.Tensor, diag_l: torch.Tensor, rows_k: torch.Tensor,
                   rows_l: torch.Tensor, n: int) -> torch.Tensor:
    rows_k, rows_l = rows_k - diag_k, rows_l - diag_l
    return (trace - diag_k @ diag_l + rows_k.sum() * rows_l.sum() / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (rows_k @ rows_l))


ESTIMATORS: dict[bool, Callable[..., torch.Tensor]] = {False: _biased_hsic, True: _unbiased_hsic}
"""HSIC estimators by ``debiased``: ``(tr(KL), diag K, diag L, rows K, rows L, n) -> HSIC`` up to a factor."""


def _rows_per_block(n: int, arrays: int, itemsize: int) -> int:
    return block_length(n, arrays * n * itemsize)


def _trace_of_gram_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``tr(A A' B B') = ||A' B||_F^2`` by the cheaper route."""
    n, width_a = a.shape
    width_b = b.shape[1]
    if width_a * width_b <= n * (width_a + width_b):
        return (a.T @ b).square().sum()
    total = torch.zeros((), dtype=a.dtype, device=a.device)
    rows = _rows_per_block(n, 3, a.element_size())
    for start in range(0, n, rows):
        gram_a = a[start : start + rows] @ a.T
        if b is a:
            total += gram_a.square().sum()
        else:
            total += (gram_a * (b[start : start + rows] @ b.T)).sum()
    return total


def _linear(x: torch.Tensor, y: torch.Tensor, sigma: float) -> KernelStatistics:
    zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    return KernelStatistics(
        n=x.shape[0],
        cross=_trace_of_gram_product(x, y),
        self_x=_trace_of_gram_product(x, x),
        self_y=_trace_of_gram_product(y, y),
        diag_x=torch.einsum("ij,ij->i", x, x),
        diag_y=torch.einsum("ij,ij->i", y, y),
        rows_x=zeros,
        rows_y=zeros,
    )


def _median(values: torch.Tensor) -> torch.Tensor:
    count = values.numel()
    low = torch.kthvalue(values, (count + 1) // 2).values
    return low if count % 2 else (low + torch.kthvalue(values, count // 2 + 1).values) / 2


def _rbf_kernel(features: torch.Tensor, sigma: float, name: str) -> torch.Tensor:
    """The RBF kernel of ``features`` above the diagonal (condensed; the diagonal is 1)."""
    distances = compute_rdm(features, "euclidean", condensed=True)
    median = _median(distances)
    if not median > 0:
        raise ValueError(
            f"the median distance between the stimuli of {name} is 0 (at least half of the pairs have identical "
            "features), so the RBF bandwidth is 0; use kernel='linear' or drop duplicate stimuli"
        )
    return distances.square_().mul_(-1 / (2 * (sigma * median) ** 2)).exp_()


def _rbf(x: torch.Tensor, y: torch.Tensor, sigma: float) -> KernelStatistics:
    n = x.shape[0]
    k, m = _rbf_kernel(x, sigma, "x"), _rbf_kernel(y, sigma, "y")
    ones = torch.ones(n, dtype=x.dtype, device=x.device)
    return KernelStatistics(
        n=n,
        cross=2 * (k @ m) + n,
        self_x=2 * (k @ k) + n,
        self_y=2 * (m @ m) + n,
        diag_x=ones,
        diag_y=ones,
        rows_x=condensed_row_sums(k) + 1,
        rows_y=condensed_row_sums(m) + 1,
    )


KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], KernelStatistics]] = {
    "linear": _linear,
    "rbf": _rbf,
}
"""Kernels by name: ``(centred x, centred y, sigma) -> KernelStatistics``."""


def cka(x, y, kernel: str = "linear", debiased: bool = False, sigma: float = 1.0, *,
        dtype="float64", device=None):
    """Centered kernel alignment between two representations of the same stimuli.

    Parameters
    ----------
    x, y : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)
        Features of two models, layers or brain regions over the same stimuli
        in the same order; trailing axes are flattened.  They may differ in
        width.
    kernel : {"linear", "rbf"}
        Linear kernel, or Gaussian (RBF) kernel with bandwidth ``sigma`` times
        the median Euclidean distance between distinct stimuli, taken per
        representation.
    debiased : bool
        Use the unbiased HSIC estimator (Song et al. 2012) instead of the
        biased one; needs at least 4 stimuli.
    sigma : float
        Bandwidth multiple of the RBF kernel (ignored by the linear kernel).
    dtype : {"float64", "float32"} or a numpy or torch dtype
        Precision of the computation.
    device : str or torch.device, optional
        Where to compute; default: ``x``'s device (the CPU for numpy).

    Returns
    -------
    float or torch.Tensor
        The CKA: a float for numpy input, a 0-dim tensor on the computing device
        for tensor input.  1 for a representation with itself; the biased
        estimator lies in [0, 1], the debiased one can fall slightly below 0.

    Raises
    ------
    ValueError
        For different stimulus counts, too few stimuli, NaN or infinite values,
        an unknown kernel, a non-positive ``sigma``, or a representation without
        variance across stimuli (CKA undefined).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 20))
    >>> rotation = np.linalg.qr(rng.normal(size=(20, 20)))[0]
    >>> round(cka(x, 3 * x @ rotation), 6)
    1.0
    >>> bool(cka(x, rng.normal(size=(500, 30)), debiased=True) < 0.01)
    True
    """
    statistics_of = lookup(KERNELS, kernel, "kernel")
    if not isinstance(debiased, bool):
        raise TypeError(f"debiased must be True or False, got {debiased!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number (a multiple of the median distance), got {sigma!r}")
    min_stimuli = 4 if debiased else 2
    first = as_stimulus_matrix(x, "x", min_stimuli=min_stimuli, device=device)
    second = as_stimulus_matrix(y, "y", min_stimuli=min_stimuli, device=first.device)
    check_same_stimuli(first.shape[0], second.shape[0], "x", "y")
    precision = floating_dtype(dtype)
    centred = []
    for matrix in (first, second):
        copy = matrix.to(dtype=precision, copy=True)
        centred.append(copy.sub_(copy.mean(dim=0)))
    stats = statistics_of(*centred, sigma)
    hsic = ESTIMATORS[debiased]
    hsic_xy = hsic(stats.cross, stats.diag_x, stats.diag_y, stats.rows_x, stats.rows_y, stats.n)
    norms = []
    for name, trace, diag, rows in (("x", stats.self_x, stats.diag_x, stats.rows_x),
                                    ("y", stats.self_y, stats.diag_y, stats.rows_y)):
        value = hsic(trace, diag, diag, rows, rows, stats.n)
        if not value > 0:
            raise ValueError(
                f"the {'unbiased' if debiased else 'biased'} HSIC of {name} with itself is {float(value):.3g}, so CKA "
                f"is undefined: {name} does not vary across the stimuli"
                + (" (or there are too few stimuli for the debiased estimator)" if debiased else "")
            )
        norms.append(value)
    value = hsic_xy / torch.sqrt(norms[0] * norms[1])
    return value if isinstance(x, torch.Tensor) else float(value)
