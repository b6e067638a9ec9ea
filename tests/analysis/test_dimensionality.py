"""effective_dimensionality against the participation ratio of scikit-learn's PCA spectrum."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from torchlens_like.analysis import effective_dimensionality


def participation_ratio(features):
    eigenvalues = PCA().fit(features.reshape(len(features), -1)).explained_variance_
    return eigenvalues.sum() ** 2 / (eigenvalues**2).sum()


@pytest.mark.parametrize("shape", [(80, 12), (15, 40), (20, 3, 4)])
def test_matches_pca_participation_ratio(shape):
    rng = np.random.default_rng(0)
    features = rng.normal(size=shape) * np.linspace(0.1, 3.0, int(np.prod(shape[1:]))).reshape(shape[1:])
    before = features.copy()
    assert effective_dimensionality(features) == pytest.approx(participation_ratio(features), rel=1e-10)
    np.testing.assert_array_equal(features, before)


def test_rank_one_features_have_dimensionality_one():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(50, 1)) @ rng.normal(size=(1, 20))
    assert effective_dimensionality(features) == pytest.approx(participation_ratio(features), rel=1e-9)
    assert effective_dimensionality(features) == pytest.approx(1.0, rel=1e-9)


def test_constant_features_are_rejected():
    with pytest.raises(ValueError, match="features has no variance across stimuli"):
        effective_dimensionality(np.ones((10, 4)))


def test_one_stimulus_is_too_few():
    with pytest.raises(ValueError, match="features has 1 stimuli, but this needs at least 2"):
        effective_dimensionality(np.ones((1, 4)))
