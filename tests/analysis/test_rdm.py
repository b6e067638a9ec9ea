"""compute_rdm against scipy's pdist and rsatoolbox's calc_rdm on the same features."""

import numpy as np
import pytest
import rsatoolbox
import torch
from scipy.spatial.distance import pdist, squareform

from torchlens_like.analysis import compute_rdm
from torchlens_like.analysis.rdm import DISSIMILARITIES, square_from_condensed, upper_triangle


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(37, 3, 5)) + rng.normal(size=(37, 1, 1))


def scipy_rdm(features, method):
    flat = features.reshape(len(features), -1)
    if method == "gaussian":
        squared = squareform(pdist(flat, "sqeuclidean"))
        return 1 - np.exp(-squared / squared.mean())
    return squareform(pdist(flat, method))


@pytest.mark.parametrize("method", sorted(DISSIMILARITIES))
@pytest.mark.parametrize("chunk_size", [None, 1, 5, 36])
def test_matches_scipy_pdist(features, method, chunk_size):
    before = features.copy()
    rdm = compute_rdm(features, method, chunk_size=chunk_size)
    np.testing.assert_allclose(rdm, scipy_rdm(features, method), rtol=1e-10, atol=1e-12)
    assert np.array_equal(rdm, rdm.T) and not rdm.diagonal().any()
    np.testing.assert_array_equal(features, before)


@pytest.mark.parametrize("method", sorted(DISSIMILARITIES))
def test_condensed_is_pdist_order(features, method):
    condensed = compute_rdm(features, method, condensed=True, chunk_size=4)
    np.testing.assert_allclose(condensed, squareform(scipy_rdm(features, method), checks=False), rtol=1e-10, atol=1e-12)


def test_correlation_matches_rsatoolbox(features):
    flat = features.reshape(len(features), -1)
    reference = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(flat), method="correlation")
    np.testing.assert_allclose(compute_rdm(features, condensed=True), reference.dissimilarities[0], rtol=1e-10)


def test_euclidean_matches_rsatoolbox_squared_per_channel(features):
    flat = features.reshape(len(features), -1)
    reference = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(flat), method="euclidean")
    ours = compute_rdm(features, "euclidean", condensed=True) ** 2 / flat.shape[1]
    np.testing.assert_allclose(ours, reference.dissimilarities[0], rtol=1e-9)


def test_float32_input_stays_float32_and_close(features):
    rdm = compute_rdm(features.astype(np.float32))
    assert rdm.dtype == np.float32
    np.testing.assert_allclose(rdm, scipy_rdm(features.astype(np.float32).astype(np.float64), "correlation"), atol=2e-6)


def test_integer_input_promoted_to_float64():
    counts = np.random.default_rng(1).integers(0, 9, size=(12, 20))
    rdm = compute_rdm(counts, "cosine")
    assert rdm.dtype == np.float64
    np.testing.assert_allclose(rdm, squareform(pdist(counts.astype(float), "cosine")), atol=1e-12)


def test_upper_triangle_and_square_round_trip_match_squareform(features):
    square = scipy_rdm(features, "euclidean")
    vector = upper_triangle(torch.from_numpy(square)).numpy()
    np.testing.assert_array_equal(vector, squareform(square, checks=False))
    np.testing.assert_array_equal(square_from_condensed(torch.from_numpy(vector)).numpy(), squareform(vector))


def test_constant_feature_vector_is_rejected_for_correlation(features):
    flat = features.reshape(len(features), -1).copy()
    flat[[4, 9]] = 3.7
    with pytest.raises(ValueError, match=r"features has 2 constant .*\[4, 9\].*method='euclidean'"):
        compute_rdm(flat, "correlation")
    np.testing.assert_allclose(compute_rdm(flat, "euclidean"), squareform(pdist(flat)), atol=1e-10)


def test_zero_vector_is_rejected_for_cosine(features):
    flat = features.reshape(len(features), -1).copy()
    flat[2] = 0
    with pytest.raises(ValueError, match=r"features has 1 all-zero rows \(rows \[2\]\)"):
        compute_rdm(flat, "cosine")


def test_nan_names_the_stimulus(features):
    broken = features.copy()
    broken[6, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"features contains NaN or infinite values at stimulus \[6\]"):
        compute_rdm(broken)


@pytest.mark.parametrize("bad, message", [
    (np.ones((1, 4)), "features has 1 stimuli, but this needs at least 2"),
    (np.ones(5), r"must have shape \(n_stimuli, n_features, ...\)"),
    (np.ones((3, 0)), "features has no features"),
    ("features.h5", "features must be an array .* got str"),
])
def test_bad_shapes_and_types(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        compute_rdm(bad)


def test_unknown_method_lists_valid_names(features):
    valid = "correlation, cosine, euclidean, gaussian"
    with pytest.raises(ValueError, match=f"unknown method 'pearson'; choose one of: {valid}"):
        compute_rdm(features, "pearson")


def test_identical_stimuli_make_gaussian_bandwidth_zero():
    with pytest.raises(ValueError, match="Gaussian bandwidth"):
        compute_rdm(np.ones((4, 3)), "gaussian")


class CountingStore:
    """An array in a file stand-in that records every read (the stored array of a DiskArray)."""

    def __init__(self, array):
        self.array, self.reads = array, []
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, index):
        values = self.array[index]
        self.reads.append(len(values) if np.ndim(values) else 1)
        return values


@pytest.mark.parametrize("method", sorted(DISSIMILARITIES))
@pytest.mark.parametrize("condensed", [False, True])
def test_features_in_an_hdf5_file_are_read_block_by_block(features, method, condensed, tmp_path):
    import h5py

    from torchlens_like.extract.disk_arrays import DiskArray

    with h5py.File(tmp_path / "features.h5", "w") as file:
        file["layer"] = features
    with h5py.File(tmp_path / "features.h5", "r") as file:
        on_disk = DiskArray(file["layer"])
        result = compute_rdm(on_disk, method, condensed=condensed, chunk_size=8)
        whole = compute_rdm(on_disk, method, condensed=condensed)
    expected = scipy_rdm(features, method)
    expected = squareform(expected, checks=False) if condensed else expected
    assert isinstance(result, np.ndarray)
    np.testing.assert_allclose(result, expected, atol=1e-10)
    np.testing.assert_allclose(whole, expected, atol=1e-10)
    counted = CountingStore(features)
    compute_rdm(DiskArray(counted), method, chunk_size=8)
    assert max(counted.reads) <= 8, "never more than one block of stimuli at a time"


def test_a_memory_map_and_a_nan_in_a_later_block_are_named_by_stimulus(features, tmp_path):
    broken = features.copy()
    broken[30, 1, 2] = np.nan
    np.save(tmp_path / "broken.npy", broken)
    mapped = np.load(tmp_path / "broken.npy", mmap_mode="r")
    with pytest.raises(ValueError, match=r"NaN or infinite values at stimulus \[30\]"):
        compute_rdm(mapped, chunk_size=8)
    np.save(tmp_path / "features.npy", features)
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    np.testing.assert_allclose(compute_rdm(mapped, "cosine", chunk_size=8), scipy_rdm(features, "cosine"),
                               atol=1e-10)


def test_dtype_argument_asks_for_float64_or_float32(features):
    single = features.astype(np.float32)
    double = compute_rdm(single, dtype="float64")
    assert double.dtype == np.float64
    np.testing.assert_allclose(double, scipy_rdm(single.astype(np.float64), "correlation"), rtol=1e-10, atol=1e-12)
    assert compute_rdm(torch.from_numpy(features), dtype=torch.float32).dtype == torch.float32
    assert compute_rdm(features, "euclidean", condensed=True, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="unknown dtype 'float16'; choose one of: float32, float64"):
        compute_rdm(features, dtype="float16")


@pytest.mark.parametrize("n", [2, 7, 300])
def test_condensed_row_sums_equal_the_square_matrix_row_sums(n):
    from torchlens_like.analysis.rdm import condensed_row_sums

    vector = np.random.default_rng(n).normal(size=n * (n - 1) // 2)
    np.testing.assert_allclose(condensed_row_sums(torch.from_numpy(vector)).numpy(), squareform(vector).sum(axis=1),
                               rtol=1e-12, atol=1e-12)
