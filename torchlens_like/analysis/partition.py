"""Variance partitioning: which part of a response one feature set explains that others do not.

Design decisions
----------------
* For two or three feature sets, every union of the sets (features
  concatenated per stimulus, in the order given) is fitted with
  :class:`~torchlens_like.analysis.RidgeGCV` (one alpha per target and fit,
  chosen by leave-one-out on the training stimuli) and scored by the
  coefficient of determination ``R^2 = 1 - SS_res / SS_tot`` on held-out folds
  (``SS_tot`` around the held-out mean, as ``sklearn.metrics.r2_score``),
  averaged over folds.  The folds are those of
  :func:`~torchlens_like.analysis.ridge.fold_splits` and are kept in the result.
* The Venn arithmetic (Lescroart et al. 2015; de Heer et al. 2017; Net2Brain)
  is one rule for any number of sets: the part explained by exactly the sets
  ``S`` (and none of the others, ``S'``) is
  ``sum over T subset of S, T non-empty or not, of (-1)^(|T| + 1) R^2(S' + T)``
  with ``R^2`` of no features 0.  For sets A and B: unique A =
  ``R^2(A+B) - R^2(B)``, shared = ``R^2(A) + R^2(B) - R^2(A+B)``.  The parts add
  up to ``R^2`` of all sets.
* Parts can come out negative (noise in the held-out estimates, or sets that
  suppress each other's noise); they are reported as computed, never clipped,
  and :meth:`VariancePartition.summary` counts the targets where each part is
  negative.
* Two or three sets only: the number of fits grows as ``2^k - 1`` and the
  parts of more than three sets cannot be drawn as a Venn diagram.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .backend import as_stimulus_matrix, as_tensor, check_finite, check_same_stimuli
from .ridge import DEFAULT_ALPHAS, RidgeGCV, fold_splits

UNION = "+"
SHARED = " & "


@dataclass(frozen=True)
class VariancePartition:
    """Cross-validated R^2 of every union of feature sets, and its Venn parts.

    Attributes
    ----------
    names : tuple of str
        The feature sets, in the order given.
    r2 : pandas.DataFrame, shape (n_targets, 2^k - 1)
        Held-out R^2 per target of each union, columns named by the sets
        joined with ``+`` (``"A"``, ``"A+B"``...).
    parts : pandas.DataFrame, shape (n_targets, 2^k - 1)
        Explained variance per target of each Venn part, columns named by the
        sets the part belongs to joined with ``" & "``: ``"A"`` is unique to
        A, ``"A & B"`` shared by A and B only.  Negative values are kept.
    folds : list of (numpy.ndarray, numpy.ndarray)
        Train and test stimulus indices of each fold.
    """

    names: tuple
    r2: pd.DataFrame
    parts: pd.DataFrame
    folds: list

    def summary(self) -> pd.DataFrame:
        """Mean, standard error and number of negative targets of each part.

        Returns
        -------
        pandas.DataFrame
            One row per part, columns ``mean``, ``sem``, ``negative_targets``.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(2, 90, 4))
        >>> y = a @ rng.normal(size=(4, 3)) + 0.5 * rng.normal(size=(90, 3))
        >>> variance_partitioning({"A": a, "B": b}, y, folds=3).summary().columns.tolist()
        ['mean', 'sem', 'negative_targets']
        """
        n = len(self.parts)
        sem = self.parts.std(ddof=1) / np.sqrt(n) if n > 1 else self.parts.std() * np.nan
        return pd.DataFrame({"mean": self.parts.mean(), "sem": sem, "negative_targets": (self.parts < 0).sum()})


def _subsets(names: Sequence[str]) -> list[tuple[str, ...]]:
    return [combo for size in range(1, len(names) + 1) for combo in itertools.combinations(names, size)]


def venn_parts(r2: Mapping[tuple, np.ndarray], names: Sequence[str]) -> dict[tuple, np.ndarray]:
    """Venn parts from the R^2 of every union of sets.

    Parameters
    ----------
    r2 : dict of tuple to array
        ``{sets: R^2}`` for every non-empty subset of ``names`` (tuples in the
        order of ``names``).
    names : sequence of str

    Returns
    -------
    dict of tuple to array
        ``{sets: part}``: the variance explained by exactly those sets.

    Examples
    --------
    >>> parts = venn_parts({("A",): 0.3, ("B",): 0.2, ("A", "B"): 0.4}, ["A", "B"])
    >>> {k: round(v, 6) for k, v in parts.items()}
    {('A',): 0.2, ('B',): 0.1, ('A', 'B'): 0.1}
    """
    order = {name: i for i, name in enumerate(names)}

    def union(sets) -> tuple:
        return tuple(sorted(set(sets), key=order.__getitem__))

    parts = {}
    for shared in _subsets(names):
        others = [name for name in names if name not in shared]
        total = 0
        for size in range(len(shared) + 1):
            for chosen in itertools.combinations(shared, size):
                sets = union(others + list(chosen))
                if sets:
                    total = total + (-1) ** (size + 1) * r2[sets]
        parts[shared] = total
    return parts


def _r2(truth: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    total = (truth - truth.mean(dim=0)).square().sum(dim=0)
    flat = (total == 0).nonzero().flatten()
    if flat.numel():
        raise ValueError(
            f"responses are constant over the held-out stimuli of a fold for targets {flat[:5].tolist()}, so R^2 "
            "is undefined there; drop those targets or use fewer folds"
        )
    return 1 - (truth - prediction).square().sum(dim=0) / total


def variance_partitioning(feature_sets: Mapping, responses, folds=5, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
                          seed: int = 0, dtype: torch.dtype = torch.float64, device=None) -> VariancePartition:
    """Unique and shared explained variance of two or three feature sets, per target.

    Parameters
    ----------
    feature_sets : dict of str to array
        Two or three named feature arrays of shape ``(n_stimuli, ...)`` over
        the same stimuli (models, layers, hand-made predictors...).
    responses : numpy.ndarray or torch.Tensor, shape (n_stimuli, n_targets) or (n_stimuli,)
        E.g. voxel responses.
    folds : int or sequence of (train_indices, test_indices)
        Number of shuffled folds (seeded by ``seed``), or explicit splits.
    alphas : sequence of float
        Candidate ridge penalties.
    seed : int
        Seed of the fold assignment.
    dtype, device
        As for :class:`~torchlens_like.analysis.RidgeGCV`.

    Returns
    -------
    VariancePartition
        ``r2`` (held-out R^2 of every union), ``parts`` (the Venn parts,
        negative ones kept), ``folds``; ``summary()`` for means over targets.

    Raises
    ------
    ValueError
        For fewer than two or more than three sets, different stimulus counts,
        NaN or infinite values, invalid folds, or targets that are constant
        over a fold's held-out stimuli.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 200, 5))
    >>> y = a[:, :1] + b[:, :1] + 0.5 * rng.normal(size=(200, 1))
    >>> partition = variance_partitioning({"A": a, "B": b}, y, folds=4)
    >>> partition.parts.columns.tolist()
    ['A', 'B', 'A & B']
    >>> partition.parts[["A", "B"]].round(1).iloc[0].tolist()  # each set explains 1 of 2.25 units
    [0.4, 0.4]
    """
    if not isinstance(feature_sets, Mapping) or not 2 <= len(feature_sets) <= 3:
        raise ValueError(
            "feature_sets must be a dict of 2 or 3 named feature arrays, e.g. {'model': features, 'pixels': ...}; "
            f"got {len(feature_sets) if isinstance(feature_sets, Mapping) else type(feature_sets).__name__}"
        )
    names = tuple(str(name) for name in feature_sets)
    if len(set(names)) != len(names) or any(UNION in name or SHARED in name for name in names):
        raise ValueError(f"feature set names must be distinct and contain no '+' or ' & ', got {list(names)}")
    matrices = {}
    for name, features in zip(names, feature_sets.values()):
        device = matrices[names[0]].device if matrices else device
        matrices[name] = as_stimulus_matrix(features, f"feature_sets[{name!r}]", min_stimuli=4, device=device,
                                            dtype=dtype)
        check_same_stimuli(matrices[names[0]].shape[0], matrices[name].shape[0], f"feature_sets[{names[0]!r}]",
                           f"feature_sets[{name!r}]")
    x_device = matrices[names[0]].device
    y = as_tensor(responses, "responses", device=x_device, dtype=dtype)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"responses must have shape (n_stimuli, n_targets), got {tuple(y.shape)}")
    check_same_stimuli(matrices[names[0]].shape[0], y.shape[0], f"feature_sets[{names[0]!r}]", "responses")
    check_finite(y, "responses")
    splits = [(train.to(x_device), test.to(x_device)) for train, test in fold_splits(y.shape[0], folds, seed)]
    r2 = {}
    for sets in _subsets(names):
        x = torch.cat([matrices[name] for name in sets], dim=1)
        scores = []
        for train, test in splits:
            model = RidgeGCV(alphas, dtype=dtype, device=x_device).fit(x[train], y[train])
            scores.append(_r2(y[test], model.predict(x[test])))
        r2[sets] = torch.stack(scores).mean(dim=0).cpu().numpy()
    parts = venn_parts(r2, names)
    return VariancePartition(
        names=names,
        r2=pd.DataFrame({UNION.join(sets): values for sets, values in r2.items()}),
        parts=pd.DataFrame({SHARED.join(sets): values for sets, values in parts.items()}),
        folds=[(train.cpu().numpy(), test.cpu().numpy()) for train, test in splits],
    )
