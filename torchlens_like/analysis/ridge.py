"""Ridge regression onto many targets with efficient leave-one-out alpha selection.

Design decisions
----------------
* One eigendecomposition serves every alpha and every target: of the Gram
  matrix ``X X'`` when ``n_samples <= n_features``, else of ``X' X`` (then
  ``U = X V / s``, dropping numerically null directions).  With ``Z = U' y``
  and ``h = lambda / (lambda + alpha)``, the leave-one-out residuals for an alpha
  are ``(y - U (h * Z)) / (1 - diag(U diag(h) U'))`` (Rifkin & Lippert 2007),
  one ``n x r`` by ``r x targets`` product per alpha and no refit.
* The intercept is fitted as scikit-learn does: columns of ``X`` and ``y`` are
  centred, and the leave-one-out denominator gets the same correction term,
  so the chosen alphas equal ``sklearn.linear_model.RidgeCV(alphas,
  alpha_per_target=True)`` with its default (GCV, mean squared error) scoring,
  ties going to the earlier alpha.
* Unlike scikit-learn, coefficients are formed once, after the alphas are
  chosen (``W (Z / (lambda + alpha_t))`` with ``W = X' U``), instead of once per
  alpha; that is where most of the speed-up over ``RidgeCV`` comes from.
* Targets are processed in blocks sized from a memory budget, so 10,000+
  voxels need only ``n_samples x block`` working memory beyond ``Z`` and the
  coefficients.
* The linear algebra runs in torch, float64 by default for exactness;
  ``dtype=torch.float32`` and ``device="cuda"`` trade precision for speed.
  Fitted attributes are numpy arrays when ``X`` was numpy, else tensors.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .backend import (
    as_output,
    as_stimulus_matrix,
    as_tensor,
    block_length,
    check_finite,
    check_same_stimuli,
    unit_rows,
)

DEFAULT_ALPHAS = tuple(10.0**k for k in range(-2, 7))


def _targets(y, n_samples: int, device, dtype) -> tuple[torch.Tensor, bool]:
    tensor = as_tensor(y, "y", device=device, dtype=dtype)
    if tensor.ndim not in (1, 2):
        raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_targets), got {tuple(tensor.shape)}")
    check_same_stimuli(n_samples, tensor.shape[0], "X", "y")
    check_finite(tensor, "y", "sample")
    return (tensor, False) if tensor.ndim == 2 else (tensor[:, None], True)


def _alpha_grid(alphas) -> torch.Tensor:
    grid = torch.as_tensor(np.asarray(alphas, dtype=np.float64).reshape(-1))
    if grid.numel() == 0 or not bool(torch.isfinite(grid).all()) or bool((grid <= 0).any()):
        raise ValueError(f"alphas must be one or more positive finite numbers, got {alphas!r}")
    return grid


class RidgeGCV:
    """Ridge regression with the penalty chosen per target by leave-one-out error.

    Follows scikit-learn's conventions (``fit`` / ``predict``, ``coef_``,
    ``intercept_``, ``alpha_``, ``best_score_``) and selects the same alphas as
    ``sklearn.linear_model.RidgeCV(alphas, alpha_per_target=True)``.

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties, all positive.
    fit_intercept : bool
        Centre ``X`` and ``y`` and fit an unpenalised intercept.
    alpha_per_target : bool
        Choose an alpha per target (column of ``y``); otherwise one alpha that
        minimises the mean leave-one-out error over all targets.
    dtype : torch.dtype
        Precision of the computation.
    device : str or torch.device, optional
        Where to compute; default: ``X``'s device (CPU for numpy).
    chunk_size : int, optional
        Targets per block; default: chosen from a 256 MiB budget.
    store_loo_predictions : bool
        Keep the leave-one-out predictions at the chosen alphas in
        ``loo_predictions_``.

    Attributes
    ----------
    coef_ : array, shape (n_targets, n_features) or (n_features,)
    intercept_ : array, shape (n_targets,), or float
    alpha_ : array, shape (n_targets,), or float
        The chosen penalties.
    best_score_ : array, shape (n_targets,), or float
        Negative mean squared leave-one-out error at the chosen alpha.
    loo_predictions_ : array, shape (n_samples, n_targets) or (n_samples,)
        Only with ``store_loo_predictions=True``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 20))
    >>> y = X @ rng.normal(size=(20, 3)) + rng.normal(size=(100, 3))
    >>> model = RidgeGCV(alphas=[0.1, 1.0, 10.0, 100.0]).fit(X, y)
    >>> model.coef_.shape, model.alpha_.shape
    ((3, 20), (3,))
    >>> model.predict(X[:2]).shape
    (2, 3)
    """

    def __init__(self, alphas: Sequence[float] = DEFAULT_ALPHAS, *, fit_intercept: bool = True,
                 alpha_per_target: bool = True, dtype: torch.dtype = torch.float64, device=None,
                 chunk_size: int | None = None, store_loo_predictions: bool = False):
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.alpha_per_target = alpha_per_target
        self.dtype = dtype
        self.device = device
        self.chunk_size = chunk_size
        self.store_loo_predictions = store_loo_predictions

    def _decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_samples, n_features = x.shape
        if n_samples <= n_features:
            eigenvalues, u = torch.linalg.eigh(x @ x.T)
            return u, eigenvalues.clamp(min=0), x.T @ u
        eigenvalues, v = torch.linalg.eigh(x.T @ x)
        keep = eigenvalues > eigenvalues.max() * n_samples * torch.finfo(x.dtype).eps
        eigenvalues, v = eigenvalues[keep], v[:, keep]
        singular = eigenvalues.sqrt()
        return (x @ v) / singular, eigenvalues, v * singular

    def fit(self, X, y) -> "RidgeGCV":
        """Fit on ``X`` (n_samples, n_features, ...) and ``y`` (n_samples[, n_targets]).

        Parameters
        ----------
        X : numpy.ndarray or torch.Tensor, shape (n_samples, ...)
            Features, flattened per sample.
        y : numpy.ndarray or torch.Tensor, shape (n_samples,) or (n_samples, n_targets)
            Targets, e.g. voxel responses.

        Returns
        -------
        RidgeGCV
            ``self``, fitted.

        Raises
        ------
        ValueError
            For fewer than 3 samples, different sample counts, NaN or infinite
            values, or invalid alphas.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.arange(12.0).reshape(6, 2) ** 1.5
        >>> RidgeGCV(alphas=[1.0]).fit(X, X.sum(axis=1)).alpha_
        1.0
        """
        grid = _alpha_grid(self.alphas)
        x = as_stimulus_matrix(X, "X", min_stimuli=3, device=self.device, dtype=self.dtype)
        targets, one_target = _targets(y, x.shape[0], x.device, x.dtype)
        n_samples, n_targets = targets.shape
        x_mean = x.mean(dim=0) if self.fit_intercept else torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
        y_mean = targets.mean(dim=0) if self.fit_intercept else torch.zeros(n_targets, dtype=x.dtype, device=x.device)
        x = x - x_mean
        u, eigenvalues, w = self._decompose(x)
        grid = grid.to(device=x.device, dtype=x.dtype)
        u_squared = u * u
        u_sum = u.sum(dim=0)
        z = u.T @ (targets - y_mean)
        block = self.chunk_size or block_length(n_targets, 4 * n_samples * x.element_size())

        def loo_residuals(centred: torch.Tensor, z_block: torch.Tensor, shrink: torch.Tensor) -> torch.Tensor:
            residual = centred - u @ (shrink * z_block)
            denominator = 1 - u_squared @ shrink
            if self.fit_intercept:
                denominator = denominator - (1 - u @ (shrink * u_sum[:, None])) / n_samples
            return residual / denominator

        errors = torch.empty((grid.numel(), n_targets), dtype=x.dtype, device=x.device)
        for start in range(0, n_targets, block):
            stop = min(start + block, n_targets)
            centred = targets[:, start:stop] - y_mean[start:stop]
            for i, alpha in enumerate(grid):
                shrink = (eigenvalues / (eigenvalues + alpha))[:, None]
                errors[i, start:stop] = loo_residuals(centred, z[:, start:stop], shrink).square().mean(dim=0)
        if self.alpha_per_target:
            best = torch.argmin(errors, dim=0)
        else:
            best = torch.full((n_targets,), int(torch.argmin(errors.mean(dim=1))), device=x.device)
        chosen = grid[best]
        coef = torch.empty((n_targets, x.shape[1]), dtype=x.dtype, device=x.device)
        loo = torch.empty_like(targets) if self.store_loo_predictions else None
        for start in range(0, n_targets, block):
            stop = min(start + block, n_targets)
            penalty = eigenvalues[:, None] + chosen[None, start:stop]
            coef[start:stop] = (w @ (z[:, start:stop] / penalty)).T
            if loo is not None:
                centred = targets[:, start:stop] - y_mean[start:stop]
                residual = loo_residuals(centred, z[:, start:stop], eigenvalues[:, None] / penalty)
                loo[:, start:stop] = targets[:, start:stop] - residual
        self._coef = coef
        self._intercept = y_mean - coef @ x_mean
        scores = -errors.gather(0, best[None])[0]

        def public(value: torch.Tensor, squeeze_axis: int | None):
            if one_target and squeeze_axis is not None:
                value = value.squeeze(squeeze_axis)
            if value.ndim == 0 and not isinstance(X, torch.Tensor):
                return float(value)
            return as_output(value, X)

        self.coef_ = public(coef, 0)
        self.intercept_ = public(self._intercept, 0)
        single_alpha = one_target or not self.alpha_per_target
        self.alpha_ = float(chosen[0]) if single_alpha else as_output(chosen, X)
        self.best_score_ = float(scores.mean()) if single_alpha else as_output(scores, X)
        if loo is not None:
            self.loo_predictions_ = public(loo, 1)
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, X):
        """Predict targets for ``X`` (n_samples, n_features, ...).

        Parameters
        ----------
        X : numpy.ndarray or torch.Tensor
            Features of the same width as in ``fit``.

        Returns
        -------
        numpy.ndarray or torch.Tensor, shape (n_samples, n_targets) or (n_samples,)
            Same kind as ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.arange(12.0).reshape(6, 2) ** 1.5
        >>> RidgeGCV(alphas=[1e-9]).fit(X, X @ [1.0, 2.0] + 3).predict(X[:1]).round(4)
        array([5.])
        """
        if not hasattr(self, "_coef"):
            raise ValueError("this RidgeGCV is not fitted yet; call fit(X, y) first")
        x = as_stimulus_matrix(X, "X", min_stimuli=1, device=self._coef.device, dtype=self._coef.dtype)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features but the model was fitted on {self.n_features_in_}; "
                "pass features from the same layer and preprocessing"
            )
        prediction = x @ self._coef.T + self._intercept
        if np.ndim(self.coef_) == 1:
            prediction = prediction[:, 0]
        return as_output(prediction, X)


def pearson_r(y_true, y_pred):
    """Pearson correlation per column (target) between two arrays.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray or torch.Tensor, shape (n_samples, n_targets) or (n_samples,)

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_targets,), or float
        Same kind as ``y_true``.

    Raises
    ------
    ValueError
        For different shapes, fewer than 3 samples, NaN or infinite values,
        or constant columns (r undefined).

    Examples
    --------
    >>> import numpy as np
    >>> pearson_r(np.array([[1.0, 1.0], [2.0, 3.0], [3.0, 2.0]]), np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]))
    array([ 1. , -0.5])
    """
    truth = as_tensor(y_true, "y_true", dtype=torch.float64)
    guess = as_tensor(y_pred, "y_pred", device=truth.device, dtype=torch.float64)
    if truth.shape != guess.shape or truth.ndim not in (1, 2):
        raise ValueError(
            f"y_true {tuple(truth.shape)} and y_pred {tuple(guess.shape)} must have the same shape, "
            "(n_samples,) or (n_samples, n_targets)"
        )
    if truth.shape[0] < 3:
        raise ValueError(f"y_true has {truth.shape[0]} samples; a correlation needs at least 3")
    check_finite(truth, "y_true", "sample")
    check_finite(guess, "y_pred", "sample")
    one = truth.ndim == 1
    columns = [
        unit_rows((t - t.mean(dim=0)).T, name, what="constant", hint="drop constant targets", axis_name="columns")
        for t, name in ((truth.reshape(truth.shape[0], -1), "y_true"), (guess.reshape(guess.shape[0], -1), "y_pred"))
    ]
    r = (columns[0] * columns[1]).sum(dim=1).clamp(-1, 1)
    return float(r[0]) if one else as_output(r, y_true)


def fold_splits(n_stimuli: int, folds=5, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Train and test stimulus indices of each cross-validation fold.

    Parameters
    ----------
    n_stimuli : int
        Stimuli to split.
    folds : int or sequence of (train_indices, test_indices)
        Number of folds of a seeded random permutation (test sets of nearly
        equal size that together cover every stimulus once), or explicit splits.
    seed : int
        Seed of the permutation.

    Returns
    -------
    list of (torch.Tensor, torch.Tensor)
        ``(train, test)`` int64 index tensors per fold.

    Raises
    ------
    ValueError
        For a fold count outside ``2 .. n_stimuli / 3``.

    Examples
    --------
    >>> [(len(train), len(test)) for train, test in fold_splits(10, 3)]
    [(6, 4), (7, 3), (7, 3)]
    """
    if isinstance(folds, int):
        if not 2 <= folds <= n_stimuli // 3:
            raise ValueError(f"folds must be between 2 and n_stimuli / 3 = {n_stimuli // 3}, got {folds}")
        order = torch.randperm(n_stimuli, generator=torch.Generator().manual_seed(seed))
        tests = list(torch.tensor_split(order, folds))
        return [(torch.cat([t for j, t in enumerate(tests) if j != i]), test) for i, test in enumerate(tests)]
    return [(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))) for a, b in folds]


def cross_validated_scores(features, responses, folds=5, *, alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0,
                           dtype: torch.dtype = torch.float64, device=None):
    """Held-out Pearson r per target of ridge encoding models, averaged over folds.

    For each fold, a :class:`RidgeGCV` (alpha per target, chosen by
    leave-one-out on the training stimuli) is fitted on the other stimuli and
    scored on the held-out ones.

    Parameters
    ----------
    features : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)
    responses : numpy.ndarray or torch.Tensor, shape (n_stimuli, n_targets)
    folds : int or sequence of (train_indices, test_indices)
        Number of shuffled folds (seeded by ``seed``), or explicit splits.
    alphas : sequence of float
        Candidate penalties.
    seed : int
        Seed of the fold assignment.
    dtype, device
        As for :class:`RidgeGCV`.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_targets,)
        Same kind as ``responses``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 10))
    >>> Y = X @ rng.normal(size=(10, 4)) + 0.5 * rng.normal(size=(60, 4))
    >>> bool((cross_validated_scores(X, Y, folds=3) > 0.8).all())
    True
    """
    x = as_stimulus_matrix(features, "features", min_stimuli=4, device=device, dtype=dtype)
    y = as_tensor(responses, "responses", device=x.device, dtype=x.dtype)
    if y.ndim != 2:
        raise ValueError(f"responses must have shape (n_stimuli, n_targets), got {tuple(y.shape)}")
    check_same_stimuli(x.shape[0], y.shape[0], "features", "responses")
    splits = fold_splits(x.shape[0], folds, seed)
    scores = []
    for train, test in splits:
        model = RidgeGCV(alphas, dtype=dtype, device=x.device).fit(x[train.to(x.device)], y[train.to(x.device)])
        scores.append(pearson_r(y[test.to(x.device)], model.predict(x[test.to(x.device)])))
    return as_output(torch.stack(scores).mean(dim=0), responses)
