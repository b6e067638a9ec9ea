"""RidgeGCV against scikit-learn's RidgeCV / Ridge and himalaya's ridge solver on the same data."""

import numpy as np
import pytest
import scipy.stats
import torch
from himalaya.ridge import solve_ridge_svd
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold

from torchlens_like.analysis import RidgeGCV, cross_validated_scores, pearson_r

ALPHAS = np.logspace(-3, 5, 17)


def make_data(n_samples, n_features, n_targets=60, seed=0):
    """Targets with different signal strengths, so that different alphas win."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) + rng.normal(size=n_features)
    weights = rng.normal(size=(n_features, n_targets)) * np.logspace(-2, 0.5, n_targets)
    return X, X @ weights + rng.normal(size=(n_samples, n_targets)) + 3.0


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n_samples, n_features", [(40, 90), (90, 25), (50, 50)])
def test_alphas_and_coefficients_match_sklearn_ridgecv(n_samples, n_features, fit_intercept):
    X, Y = make_data(n_samples, n_features)
    X_before, Y_before = X.copy(), Y.copy()
    ours = RidgeGCV(ALPHAS, fit_intercept=fit_intercept).fit(X, Y)
    reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True, fit_intercept=fit_intercept).fit(X, Y)
    assert len(np.unique(reference.alpha_)) >= 4
    np.testing.assert_array_equal(ours.alpha_, reference.alpha_)
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-8, atol=1e-10 * np.abs(reference.coef_).max())
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(ours.best_score_, reference.best_score_, rtol=1e-8)
    np.testing.assert_allclose(ours.predict(X[:7]), reference.predict(X[:7]), rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(Y, Y_before)


def test_one_alpha_for_all_targets_matches_sklearn():
    X, Y = make_data(45, 30)
    ours = RidgeGCV(ALPHAS, alpha_per_target=False).fit(X, Y)
    reference = RidgeCV(alphas=ALPHAS).fit(X, Y)
    assert ours.alpha_ == reference.alpha_
    assert ours.best_score_ == pytest.approx(reference.best_score_, rel=1e-10)
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-8, atol=1e-12)


def test_one_dimensional_target_matches_sklearn_shapes_and_values():
    X, Y = make_data(45, 30)
    ours = RidgeGCV(ALPHAS).fit(X, Y[:, 5])
    reference = RidgeCV(alphas=ALPHAS).fit(X, Y[:, 5])
    assert isinstance(ours.alpha_, float) and ours.alpha_ == reference.alpha_
    assert ours.coef_.shape == reference.coef_.shape == (30,)
    assert ours.intercept_ == pytest.approx(reference.intercept_, rel=1e-10)
    np.testing.assert_allclose(ours.predict(X), reference.predict(X), rtol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 7])
def test_target_chunks_do_not_change_the_result(chunk_size):
    X, Y = make_data(40, 60, n_targets=23)
    ours = RidgeGCV(ALPHAS, chunk_size=chunk_size).fit(X, Y)
    reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
    np.testing.assert_array_equal(ours.alpha_, reference.alpha_)
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-8, atol=1e-12)


def test_coefficients_match_himalaya_at_the_chosen_alphas():
    X, Y = make_data(40, 90)
    ours = RidgeGCV(ALPHAS).fit(X, Y)
    weights, intercept = solve_ridge_svd(X, Y, alpha=ours.alpha_, fit_intercept=True, warn=False)
    np.testing.assert_allclose(ours.coef_, weights.T, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_, intercept, rtol=1e-8)


@pytest.mark.parametrize("n_samples, n_features", [(30, 70), (70, 20)])
def test_loo_predictions_match_sklearn_and_explicit_refits(n_samples, n_features):
    X, Y = make_data(n_samples, n_features, n_targets=8)
    ours = RidgeGCV(ALPHAS, store_loo_predictions=True).fit(X, Y)
    reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True, scoring="neg_mean_squared_error",
                        store_cv_results=True).fit(X, Y)
    chosen = np.searchsorted(ALPHAS, reference.alpha_)
    np.testing.assert_allclose(ours.loo_predictions_, reference.cv_results_[:, np.arange(8), chosen], rtol=1e-8)
    for left_out in (0, n_samples // 2):
        keep = np.arange(n_samples) != left_out
        for target in (0, 7):
            refit = Ridge(alpha=ours.alpha_[target]).fit(X[keep], Y[keep, target])
            assert ours.loo_predictions_[left_out, target] == pytest.approx(refit.predict(X[[left_out]])[0], rel=1e-8)


def test_float32_and_torch_input():
    X, Y = make_data(40, 30)
    reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
    fast = RidgeGCV(ALPHAS, dtype=torch.float32).fit(torch.from_numpy(X), torch.from_numpy(Y))
    assert isinstance(fast.coef_, torch.Tensor) and fast.coef_.dtype == torch.float32
    np.testing.assert_allclose(fast.predict(torch.from_numpy(X)).numpy(), reference.predict(X), rtol=1e-3, atol=1e-3)


def test_pearson_r_matches_scipy_per_column():
    rng = np.random.default_rng(3)
    truth, guess = rng.normal(size=(2, 25, 6))
    guess = guess + truth
    expected = [scipy.stats.pearsonr(truth[:, j], guess[:, j])[0] for j in range(6)]
    np.testing.assert_allclose(pearson_r(truth, guess), expected, atol=1e-12)
    assert pearson_r(truth[:, 0], guess[:, 0]) == pytest.approx(expected[0], abs=1e-12)


def test_cross_validated_scores_match_sklearn_folds():
    X, Y = make_data(60, 20, n_targets=10)
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    expected = np.zeros(10)
    for train, test in folds:
        predicted = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X[train], Y[train]).predict(X[test])
        expected += [scipy.stats.pearsonr(Y[test, j], predicted[:, j])[0] / 4 for j in range(10)]
    np.testing.assert_allclose(cross_validated_scores(X, Y, folds, alphas=ALPHAS), expected, atol=1e-10)


def test_mismatched_samples_are_named():
    with pytest.raises(ValueError, match="X has 10 stimuli but y has 9"):
        RidgeGCV().fit(np.ones((10, 3)), np.ones((9, 2)))


def test_nan_target_is_named():
    X, Y = make_data(20, 5)
    Y[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN or infinite values at sample \[4\]"):
        RidgeGCV().fit(X, Y)


@pytest.mark.parametrize("alphas", [[], [1.0, -1.0], [np.inf]])
def test_bad_alphas(alphas):
    with pytest.raises(ValueError, match="alphas must be one or more positive finite numbers"):
        RidgeGCV(alphas).fit(np.eye(5), np.ones(5))


def test_too_few_samples_and_wrong_width_at_predict():
    with pytest.raises(ValueError, match="X has 2 stimuli, but this needs at least 3"):
        RidgeGCV().fit(np.ones((2, 3)), np.ones(2))
    model = RidgeGCV().fit(*make_data(20, 5))
    with pytest.raises(ValueError, match="X has 4 features but the model was fitted on 5"):
        model.predict(np.ones((3, 4)))
    with pytest.raises(ValueError, match="not fitted yet"):
        RidgeGCV().predict(np.ones((3, 4)))


def test_constant_column_has_no_correlation():
    with pytest.raises(ValueError, match=r"y_true has 1 constant columns \(columns \[1\]\)"):
        pearson_r(np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]]), np.ones((3, 2)) + np.eye(3, 2))
