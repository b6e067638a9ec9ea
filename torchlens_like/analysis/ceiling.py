"""Noise ceilings: how well any model could do, given the noise in the data.

Design decisions
----------------
* RDM comparisons (:func:`rdm_noise_ceiling`) follow rsatoolbox's
  ``boot_noise_ceiling`` (Nili et al. 2014): each subject's RDM is compared
  with the pool of the other subjects' RDMs (lower bound) and with the pool of
  all RDMs (upper bound), and both are averaged over subjects.  The pool is the
  RDM that does best under the comparison method, as rsatoolbox builds it: the
  mean of z-scored RDMs for Pearson, the mean of rank-transformed RDMs for
  Spearman and Kendall.  For ``kendall`` the comparison is Kendall's tau-a, as
  in rsatoolbox: the pooled ranks have ties, and tau-a does not reward a
  predictor for them.  Each method is an entry of :data:`RDM_CEILINGS`.
* The Pearson ceiling needs no pooled vector at all: with z-scored RDMs
  ``z_s`` and their ``S x S`` Gram matrix ``G``, the correlation of ``z_s``
  with the pool of all is ``sum_t G_st / sqrt(N sum G)`` and with the pool of
  the others ``(sum_t G_st - N) / sqrt(N (sum G - 2 sum_t G_st + N))``.  The
  Gram matrix is accumulated over blocks of pairs in float64, so RDMs of
  20,000 stimuli (2 * 10^8 pairs) are read in their own dtype and never
  copied whole.
* For encoding models, the noise ceiling comes from repeated presentations of
  the same stimuli, ``repeats`` of shape ``(n_repeats, n_stimuli,
  n_targets)``.  :func:`split_half_reliability` correlates the mean of the
  even-numbered repeats with the mean of the odd-numbered ones over stimuli and
  applies the Spearman-Brown correction ``2 r / (1 + r)`` (the reliability of
  the mean of all repeats).  :func:`ncsnr` follows the Natural Scenes Dataset
  (Allen et al. 2022): noise variance = mean over stimuli of the variance over
  repeats (unbiased); signal variance = total variance of all responses minus
  the noise variance, rectified at 0 (for z-scored responses the total is 1,
  as in NSD); ``ncsnr = signal sd / noise sd``.
  :func:`ncsnr_noise_ceiling` turns it into the fraction of the variance of an
  average of ``n`` repeats that is signal, ``ncsnr^2 / (ncsnr^2 + 1 / n)``
  (NSD reports 100 times this), which a perfect model's R^2 reaches.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.stats
import torch

from .backend import as_output, as_tensor, block_length, check_finite, lookup, unit_rows
from .compare import rank
from .rdm import n_from_condensed, upper_triangle
from .rdms import RDMs


def subject_vectors(subject_rdms) -> torch.Tensor:
    """Subjects' RDMs as condensed rows ``(n_subjects, n_pairs)``, validated, in their own dtype.

    Parameters
    ----------
    subject_rdms : RDMs, numpy.ndarray or torch.Tensor
        An :class:`~torchlens_like.analysis.RDMs`, or an array of shape
        ``(n_subjects, n_pairs)`` or ``(n_subjects, n, n)``.

    Returns
    -------
    torch.Tensor, shape (n_subjects, n_pairs)

    Examples
    --------
    >>> import numpy as np
    >>> subject_vectors(np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0]])).shape
    torch.Size([2, 3])
    """
    data = subject_rdms.dissimilarities if isinstance(subject_rdms, RDMs) else subject_rdms
    tensor = as_tensor(data, "subject_rdms")
    if tensor.ndim == 3 and tensor.shape[1] == tensor.shape[2]:
        tensor = torch.stack([upper_triangle(square) for square in tensor])
    if tensor.ndim != 2:
        raise ValueError(
            f"subject_rdms must have shape (n_subjects, n_pairs) or (n_subjects, n, n), got {tuple(tensor.shape)}"
        )
    n_from_condensed(tensor.shape[1], "each subject's RDM")
    if tensor.shape[0] < 2 or tensor.shape[1] < 3:
        raise ValueError(
            f"subject_rdms holds {tensor.shape[0]} RDMs of {tensor.shape[1]} pairs; a noise ceiling needs at least "
            "2 subjects and 3 stimuli"
        )
    check_finite(tensor, "subject_rdms", "subject")
    constant = (tensor.amax(dim=1) == tensor.amin(dim=1)).nonzero().flatten()
    if constant.numel():
        raise ValueError(
            f"subject_rdms has RDMs with the same dissimilarity for every pair (subjects {constant.tolist()}), "
            "so their correlation with anything is undefined; check how they were computed"
        )
    return tensor


def _pearson(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n_subjects, n_pairs = vectors.shape
    block = block_length(n_pairs, 4 * n_subjects * 8)
    sums = torch.zeros(n_subjects, dtype=torch.float64, device=vectors.device)
    for start in range(0, n_pairs, block):
        sums += vectors[:, start : start + block].double().sum(dim=1)
    means = sums / n_pairs
    gram = torch.zeros((n_subjects, n_subjects), dtype=torch.float64, device=vectors.device)
    for start in range(0, n_pairs, block):
        centred = vectors[:, start : start + block].double() - means[:, None]
        gram += centred @ centred.T
    z_gram = gram / torch.sqrt(gram.diagonal()[:, None] * gram.diagonal()[None, :]) * n_pairs
    with_all = z_gram.sum(dim=1)
    upper = with_all / torch.sqrt(n_pairs * z_gram.sum())
    lower = (with_all - n_pairs) / torch.sqrt(n_pairs * (z_gram.sum() - 2 * with_all + n_pairs))
    return lower.clamp(-1, 1), upper.clamp(-1, 1)


def _pearson_rows(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    def unit(rows):
        return unit_rows(rows - rows.mean(dim=1, keepdim=True), "pooled RDM", what="constant", hint="check the RDMs")

    return (unit(first) * unit(second)).sum(dim=1).clamp(-1, 1)


def _pooled_ranks(ranks: torch.Tensor, compare) -> tuple[torch.Tensor, torch.Tensor]:
    total = ranks.sum(dim=0)
    n_subjects = ranks.shape[0]
    lower = torch.stack([compare((total - row) / (n_subjects - 1), row) for row in ranks])
    upper = torch.stack([compare(total / n_subjects, row) for row in ranks])
    return lower, upper


def _spearman(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ranks = rank(vectors)
    return _pooled_ranks(ranks, lambda pool, row: _pearson_rows(rank(pool)[None], row[None])[0])


def _tied_pairs(values: np.ndarray) -> int:
    counts = np.unique(values, return_counts=True)[1]
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau_a(first, second) -> float:
    """Kendall's tau-a: (concordant - discordant pairs) / all pairs, ties counted in neither.

    Parameters
    ----------
    first, second : array-like, shape (n,)

    Returns
    -------
    float

    Examples
    --------
    >>> round(kendall_tau_a([1, 2, 2, 3], [1, 2, 3, 4]), 6)  # 5 of 6 pairs concordant, one tied
    0.833333
    """
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    pairs = first.size * (first.size - 1) // 2
    tau_b = scipy.stats.kendalltau(first, second).statistic
    untied = np.sqrt(float(pairs - _tied_pairs(first))) * np.sqrt(float(pairs - _tied_pairs(second)))
    return float(np.clip(tau_b * untied / pairs, -1, 1))


def _kendall(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    def tau_a(pool, row):
        return torch.tensor(kendall_tau_a(pool.cpu().numpy(), row.cpu().numpy()), dtype=torch.float64)

    lower, upper = _pooled_ranks(rank(vectors), tau_a)
    return lower.to(vectors.device), upper.to(vectors.device)


RDM_CEILINGS: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "pearson": _pearson,
    "spearman": _spearman,
    "kendall": _kendall,
}
"""RDM noise ceilings by comparison method: ``(n_subjects, n_pairs) -> (lower, upper)`` per subject."""


def subject_noise_ceilings(subject_rdms, method: str = "pearson") -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper noise-ceiling bound of every subject (float64, on the RDMs' device).

    Parameters
    ----------
    subject_rdms, method
        As for :func:`rdm_noise_ceiling`.

    Returns
    -------
    lower, upper : torch.Tensor, shape (n_subjects,)
        Each subject's correlation with the pool of the others and with the
        pool of all.

    Examples
    --------
    >>> import numpy as np
    >>> lower, upper = subject_noise_ceilings(np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0]]))
    >>> lower.round(decimals=6).tolist(), upper.round(decimals=6).tolist()
    ([0.5, 0.5], [0.866025, 0.866025])
    """
    ceiling = lookup(RDM_CEILINGS, method, "method")
    return ceiling(subject_vectors(subject_rdms))


def rdm_noise_ceiling(subject_rdms, method: str = "pearson") -> tuple[float, float]:
    """Noise ceiling of RDM comparisons across subjects (rsatoolbox's ``boot_noise_ceiling``).

    Parameters
    ----------
    subject_rdms : RDMs, numpy.ndarray or torch.Tensor
        One RDM per subject over the same stimuli: an
        :class:`~torchlens_like.analysis.RDMs`, or an array of shape
        ``(n_subjects, n_pairs)`` (condensed) or ``(n_subjects, n, n)``.
    method : {"pearson", "spearman", "kendall"}
        The comparison the models are scored with.  The pool is the mean of
        z-scored RDMs (Pearson) or of ranked RDMs (Spearman, Kendall); Kendall
        uses tau-a.

    Returns
    -------
    lower, upper : float
        Mean over subjects of the correlation of each subject's RDM with the
        pool of the other subjects (lower bound) and with the pool of all
        subjects (upper bound).

    Raises
    ------
    ValueError
        For fewer than 2 subjects or 3 stimuli, NaN or infinite values,
        constant RDMs, or an unknown method.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=45)
    >>> subjects = truth + 0.5 * rng.normal(size=(6, 45))
    >>> lower, upper = rdm_noise_ceiling(subjects, "spearman")
    >>> bool(0.5 < lower < upper < 1)
    True
    """
    lower, upper = subject_noise_ceilings(subject_rdms, method)
    return float(lower.mean()), float(upper.mean())


def _repeats(repeats, name: str = "repeats") -> torch.Tensor:
    tensor = as_tensor(repeats, name)
    if tensor.ndim != 3:
        raise ValueError(
            f"{name} must have shape (n_repeats, n_stimuli, n_targets), got {tuple(tensor.shape)}; "
            f"for one target, pass {name}[..., None]"
        )
    n_repeats, n_stimuli, _ = tensor.shape
    if n_repeats < 2 or n_stimuli < 3:
        raise ValueError(
            f"{name} has {n_repeats} repeats of {n_stimuli} stimuli; a noise ceiling needs at least 2 repeats "
            "and 3 stimuli"
        )
    check_finite(tensor.transpose(0, 1), name, "stimulus")
    return tensor


def _slab_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over the first (repeat) axis, accumulated slab by slab in place (torch reduces a short
    leading axis of a large tensor slowly, and every temporary of that size costs page faults)."""
    mean = tensor[0].clone()
    for slab in tensor[1:]:
        mean += slab
    return mean.div_(tensor.shape[0])


def _squares_about(tensor: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Per target, the sum over repeats and stimuli of ``(tensor - centre)^2``, through one buffer."""
    buffer = torch.empty_like(tensor[0])
    total = torch.zeros(tensor.shape[2], dtype=tensor.dtype, device=tensor.device)
    for slab in tensor:
        total += torch.sub(slab, centre, out=buffer).square_().sum(dim=0)
    return total


def split_half_reliability(repeats):
    """Split-half reliability per target, Spearman-Brown corrected to all repeats.

    Parameters
    ----------
    repeats : numpy.ndarray or torch.Tensor, shape (n_repeats, n_stimuli, n_targets)
        Responses to repeated presentations of the same stimuli (e.g. trials
        of one subject), for each target (voxel, neuron, ...).

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_targets,)
        ``2 r / (1 + r)``, ``r`` the Pearson correlation over stimuli between
        the mean of the even-numbered repeats (0, 2, ...) and the mean of the
        odd-numbered ones; same kind as ``repeats``, float64.

    Raises
    ------
    ValueError
        For fewer than 2 repeats or 3 stimuli, NaN or infinite values, or a
        half-mean that is constant over stimuli.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=(1, 2000, 1))
    >>> reliability = split_half_reliability(signal + rng.normal(size=(4, 2000, 1)))
    >>> round(float(reliability[0]), 1)  # 1 / (1 + 1 / 4)
    0.8
    """
    tensor = _repeats(repeats).double()
    centred = [half.sub_(half.mean(dim=0)) for half in (_slab_mean(tensor[start::2]) for start in (0, 1))]
    norms = [torch.linalg.vector_norm(half, dim=0) for half in centred]
    constant = ((norms[0] == 0) | (norms[1] == 0)).nonzero().flatten()
    if constant.numel():
        raise ValueError(
            f"repeats has targets whose even- or odd-repeat mean is constant over stimuli (targets "
            f"{constant[:5].tolist()}), so their reliability is undefined; drop those targets"
        )
    r = (centred[0].mul_(centred[1]).sum(dim=0) / (norms[0] * norms[1])).clamp(-1, 1)
    return as_output(2 * r / (1 + r), repeats)


def ncsnr(repeats):
    """Noise-ceiling signal-to-noise ratio per target, as in the Natural Scenes Dataset.

    Parameters
    ----------
    repeats : numpy.ndarray or torch.Tensor, shape (n_repeats, n_stimuli, n_targets)
        Responses to repeated presentations of the same stimuli.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_targets,)
        ``sqrt(max(0, total variance - noise variance)) / sqrt(noise
        variance)``: noise variance the mean over stimuli of the unbiased
        variance over repeats, total variance the unbiased variance of all
        ``n_repeats * n_stimuli`` responses; same kind as ``repeats``, float64.

    Raises
    ------
    ValueError
        For fewer than 2 repeats or 3 stimuli, NaN or infinite values, or
        targets whose repeats are identical (no noise: the ratio is undefined).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = 2 * rng.normal(size=(1, 5000, 1))
    >>> round(float(ncsnr(signal + rng.normal(size=(3, 5000, 1)))[0]), 1)
    2.0
    """
    tensor = _repeats(repeats).double()
    n_repeats, n_stimuli = tensor.shape[:2]
    mean = _slab_mean(tensor)
    noise = _squares_about(tensor, mean) / ((n_repeats - 1) * n_stimuli)
    silent = (noise <= 64 * torch.finfo(noise.dtype).eps * mean.square().mean(dim=0)).nonzero().flatten()
    if silent.numel():
        raise ValueError(
            f"repeats has targets whose repeats are identical (targets {silent[:5].tolist()}), so their noise is 0 "
            "and the ncsnr is undefined; pass single-trial responses, not copies of an average"
        )
    total = _squares_about(tensor, mean.mean(dim=0)) / (n_repeats * n_stimuli - 1)
    return as_output(torch.sqrt((total - noise).clamp(min=0) / noise), repeats)


def ncsnr_noise_ceiling(ncsnr_values, n_averaged: int):
    """Fraction of the variance of an average of ``n_averaged`` repeats that is signal.

    Parameters
    ----------
    ncsnr_values : numpy.ndarray or torch.Tensor, shape (n_targets,)
        From :func:`ncsnr`.
    n_averaged : int
        Repeats averaged in the responses the model is scored against.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_targets,)
        ``ncsnr^2 / (ncsnr^2 + 1 / n_averaged)``, between 0 and 1: the R^2 a
        perfect model reaches (NSD reports it in percent); same kind as
        ``ncsnr_values``.

    Examples
    --------
    >>> import numpy as np
    >>> ncsnr_noise_ceiling(np.array([0.0, 1.0]), 3)
    array([0.  , 0.75])
    """
    if not isinstance(n_averaged, (int, np.integer)) or n_averaged < 1:
        raise ValueError(f"n_averaged must be a positive number of repeats, got {n_averaged!r}")
    values = as_tensor(ncsnr_values, "ncsnr_values", dtype=torch.float64)
    if bool((values < 0).any()) or bool(torch.isnan(values).any()):
        raise ValueError("ncsnr_values must be non-negative numbers, as returned by ncsnr(repeats)")
    squared = values.square()
    return as_output(squared / (squared + 1 / n_averaged), ncsnr_values)
