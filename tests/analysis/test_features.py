"""center_features, normalize_features and relative_representations against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import StandardScaler, normalize

from torchlens_like.analysis import center_features, normalize_features, relative_representations


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(loc=2.0, size=(30, 4, 3))


def test_center_matches_sklearn_standard_scaler_without_std(features):
    before = features.copy()
    flat = features.reshape(30, -1)
    expected = StandardScaler(with_std=False).fit_transform(flat)
    np.testing.assert_allclose(center_features(features), expected, atol=1e-12)
    np.testing.assert_array_equal(features, before)


def test_normalize_matches_sklearn_l2_normalize(features):
    before = features.copy()
    np.testing.assert_allclose(normalize_features(features), normalize(features.reshape(30, -1)), atol=1e-12)
    np.testing.assert_array_equal(features, before)


def test_relative_representations_match_sklearn_cosine_similarity(features):
    anchors = np.random.default_rng(1).normal(size=(5, 12))
    flat = features.reshape(30, -1)
    expected = cosine_similarity(flat, anchors)
    np.testing.assert_allclose(relative_representations(features, anchors), expected, atol=1e-12)


def test_normalize_rejects_zero_rows(features):
    flat = features.reshape(30, -1).copy()
    flat[11] = 0
    with pytest.raises(ValueError, match=r"features has 1 all-zero rows \(rows \[11\]\).*drop those stimuli"):
        normalize_features(flat)


def test_relative_representations_need_matching_width(features):
    with pytest.raises(ValueError, match="anchors have 7 features but embeddings have 12"):
        relative_representations(features, np.ones((2, 7)))


def test_nan_is_named(features):
    broken = features.copy()
    broken[3, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"features contains NaN or infinite values at stimulus \[3\]"):
        center_features(broken)
