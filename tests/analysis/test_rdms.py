"""The RDMs container against scipy's squareform/pdist on the same data."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from torchlens_like.analysis import RDMs


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(size=(3, 9, 4))


def test_from_matrices_keeps_pdist_order(features):
    squares = np.stack([squareform(pdist(f)) for f in features])
    before = squares.copy()
    rdms = RDMs.from_matrices(squares, measure="euclidean", descriptors={"layer": ["a", "b", "c"]})
    np.testing.assert_array_equal(rdms.dissimilarities, np.stack([pdist(f) for f in features]))
    np.testing.assert_array_equal(rdms.get_matrices(), squares)
    np.testing.assert_array_equal(squares, before)
    assert (rdms.n_rdms, rdms.n_stimuli, len(rdms)) == (3, 9, 3)


def test_container_does_not_alias_caller_array(features):
    vectors = np.stack([pdist(f) for f in features])
    rdms = RDMs(vectors)
    vectors[0, 0] = -1.0
    assert rdms.dissimilarities[0, 0] == pdist(features[0])[0]


def test_subset_stimuli_equals_pdist_of_subset(features):
    order = [7, 2, 5, 0]
    rdms = RDMs(np.stack([pdist(f) for f in features]), stimulus_descriptors={"image": list("abcdefghi")})
    subset = rdms.subset_stimuli(order)
    np.testing.assert_array_equal(subset.dissimilarities, np.stack([pdist(f[order]) for f in features]))
    assert subset.stimulus_descriptors["image"] == ["h", "c", "f", "a"]


def test_select_and_labels(features):
    rdms = RDMs(np.stack([pdist(f) for f in features]), descriptors={"region": ["V1", "IT", "V1"], "subj": [1, 1, 2]})
    chosen = rdms.select(region="V1")
    np.testing.assert_array_equal(chosen.dissimilarities, np.stack([pdist(features[0]), pdist(features[2])]))
    assert chosen.labels() == ["V1/1", "V1/2"]
    with pytest.raises(ValueError, match="unknown descriptor 'roi'; the descriptors are: region, subj"):
        rdms.select(roi="V1")
    with pytest.raises(ValueError, match="no RDM matches"):
        rdms.select(region="V4")


def test_dict_round_trip_through_json(features):
    rdms = RDMs(np.stack([pdist(f) for f in features]), measure="euclidean",
                descriptors={"layer": ["a", "b", "c"]}, stimulus_descriptors={"id": list(range(9))})
    again = RDMs.from_dict(json.loads(json.dumps(rdms.to_dict())))
    np.testing.assert_array_equal(again.dissimilarities, rdms.dissimilarities)
    assert (again.measure, again.descriptors, again.stimulus_descriptors) == (
        rdms.measure, rdms.descriptors, rdms.stimulus_descriptors)


@pytest.mark.parametrize("bad, message", [
    (np.ones((2, 5)), "5 entries, which is not n"),
    (np.ones((2, 3, 3)), r"must have shape \(n_rdms, n_pairs\)"),
])
def test_bad_dissimilarities(bad, message):
    with pytest.raises(ValueError, match=message):
        RDMs(bad)


def test_descriptor_length_is_checked():
    with pytest.raises(ValueError, match=r"descriptors\['region'\] has 1 entries but there are 2 RDMs"):
        RDMs(np.ones((2, 3)), descriptors={"region": ["V1"]})


@pytest.mark.parametrize("indices", [[1], [0, 0, 2], [0, 9]])
def test_bad_subset_indices(features, indices):
    with pytest.raises(ValueError, match="at least two distinct stimulus positions"):
        RDMs(pdist(features[0])).subset_stimuli(indices)
