"""Sparse random projection against scikit-learn's JL bound and scipy's pairwise distances."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from torchlens_like.analysis import johnson_lindenstrauss_components, sparse_random_projection


@pytest.mark.parametrize("n_samples", [2, 60, 1000, 26000])
@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3, 0.8])
def test_components_match_sklearn_bound(n_samples, eps):
    assert johnson_lindenstrauss_components(n_samples, eps) == johnson_lindenstrauss_min_dim(n_samples, eps=eps)


def test_default_components_are_the_bound():
    features = np.random.default_rng(0).normal(size=(40, 3000))
    assert sparse_random_projection(features, eps=0.3).shape == (40, johnson_lindenstrauss_min_dim(40, eps=0.3))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps", [0.3, 0.5])
def test_pairwise_squared_distances_stay_within_eps(eps, seed):
    """With (4 + 2 beta) ln(n) / (eps^2/2 - eps^3/3) components, all n points keep their squared
    distances within 1 +- eps with probability at least 1 - n^-beta (Achlioptas 2003); beta = 1 here."""
    n_stimuli = 40
    features = np.random.default_rng(seed).normal(size=(n_stimuli, 3000))
    before = features.copy()
    n_components = int(np.ceil(6 * np.log(n_stimuli) / (eps**2 / 2 - eps**3 / 3)))
    projected = sparse_random_projection(features, n_components=n_components, seed=seed)
    ratio = pdist(projected, "sqeuclidean") / pdist(features, "sqeuclidean")
    assert ratio.min() >= 1 - eps and ratio.max() <= 1 + eps
    assert abs(ratio.mean() - 1) < 3 * np.sqrt(2 / n_components)
    np.testing.assert_array_equal(features, before)


def test_matrix_has_li_hastie_church_entries():
    n_features, n_components = 900, 400
    matrix = sparse_random_projection(np.eye(n_features), n_components=n_components, seed=1)
    density = 1 / np.sqrt(n_features)
    nonzero = matrix[matrix != 0]
    assert set(np.round(np.abs(nonzero), 12)) == {round(np.sqrt(1 / (density * n_components)), 12)}
    expected, spread = density * matrix.size, np.sqrt(density * (1 - density) * matrix.size)
    assert abs(nonzero.size - expected) < 4 * spread
    assert abs((nonzero > 0).mean() - 0.5) < 4 * np.sqrt(0.25 / nonzero.size)


def test_projection_is_linear_and_seeded():
    rng = np.random.default_rng(2)
    features, other = rng.normal(size=(2, 10, 500))
    project = lambda x, seed=7: sparse_random_projection(x, n_components=50, seed=seed)  # noqa: E731
    np.testing.assert_allclose(project(features + 2 * other), project(features) + 2 * project(other), atol=1e-10)
    np.testing.assert_allclose(project(features[:4]), project(features)[:4], rtol=1e-12, atol=1e-12)
    assert not np.allclose(project(features, seed=8), project(features))


def test_bound_above_feature_count_is_an_error():
    bound = johnson_lindenstrauss_min_dim(50, eps=0.1)
    with pytest.raises(ValueError, match=f"bound for 50 stimuli at eps=0.1 is {bound} components, more than the 200"):
        sparse_random_projection(np.ones((50, 200)))


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": 1.5}, "eps must be strictly between 0 and 1"),
    ({"n_components": 0}, "n_components must be a positive integer"),
    ({"n_components": 5, "density": 0.0}, r"density must be in \(0, 1\]"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sparse_random_projection(np.ones((5, 20)), **kwargs)
