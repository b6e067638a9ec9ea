"""Benchmark: file loading against numpy / h5py / scipy.io / pandas, region RDMs against scipy."""

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.stats
from scipy.spatial.distance import pdist

from torchlens_like.analysis import Benchmark


@pytest.fixture
def responses():
    return np.random.default_rng(0).normal(size=(12, 9))


@pytest.fixture
def labels():
    return pd.DataFrame({"region": ["V1"] * 5 + ["IT"] * 7, "subj_id": [1, 2] * 6})


def test_region_rdms_match_pdist_per_region_and_subject(responses, labels):
    before = responses.copy()
    benchmark = Benchmark(responses, regions=labels.region, subjects=labels.subj_id)
    rdms = benchmark.build_rdms("correlation")
    assert benchmark.targets() == [("V1", 1), ("V1", 2), ("IT", 2), ("IT", 1)]
    for k, (region, subject) in enumerate(benchmark.targets()):
        rows = (labels.region == region) & (labels.subj_id == subject)
        np.testing.assert_allclose(rdms.dissimilarities[k], pdist(responses[rows.to_numpy()].T, "correlation"),
                                   atol=1e-12)
        assert (rdms.descriptors["region"][k], rdms.descriptors["subj_id"][k]) == (region, subject)
    np.testing.assert_array_equal(responses, before)


def test_overlapping_regions_from_masks_and_indices(responses):
    benchmark = Benchmark(responses, regions={"EVC": np.arange(12) < 6, "V1": [0, 1, 2]})
    rdms = benchmark.build_rdms("euclidean")
    np.testing.assert_allclose(rdms.select(region="EVC").dissimilarities[0], pdist(responses[:6].T), atol=1e-12)
    np.testing.assert_allclose(rdms.select(region="V1").dissimilarities[0], pdist(responses[:3].T), atol=1e-12)


@pytest.mark.parametrize("suffix", [".npy", ".h5", ".mat", ".csv"])
def test_loads_each_file_format(tmp_path, responses, labels, suffix):
    path = tmp_path / f"responses{suffix}"
    if suffix == ".npy":
        np.save(path, responses)
    elif suffix == ".h5":
        with h5py.File(path, "w") as file:
            file.create_dataset("group/betas", data=responses)
    elif suffix == ".mat":
        scipy.io.savemat(path, {"betas": responses})
    else:
        pd.DataFrame(responses, index=[f"voxel{i}" for i in range(12)],
                     columns=[f"image{j}" for j in range(9)]).to_csv(path)
    labels.to_csv(tmp_path / "neuroids.csv", index=False)
    pd.DataFrame({"file": [f"image{j}.png" for j in range(9)]}).to_csv(tmp_path / "stimuli.csv", index=False)
    benchmark = Benchmark.from_files(path, tmp_path / "neuroids.csv", tmp_path / "stimuli.csv")
    pandas_2_decimal_parsing = 1e-13 if suffix == ".csv" else 0
    np.testing.assert_allclose(benchmark.responses, responses, rtol=pandas_2_decimal_parsing, atol=0)
    assert benchmark.targets() == [("V1", 1), ("V1", 2), ("IT", 2), ("IT", 1)]
    assert benchmark.stimulus_data.file.tolist() == [f"image{j}.png" for j in range(9)]
    if suffix == ".csv":
        assert list(benchmark.neuroid_data.index) == [f"voxel{i}" for i in range(12)]


def test_file_with_several_arrays_needs_a_key(tmp_path, responses):
    path = tmp_path / "data.mat"
    scipy.io.savemat(path, {"betas": responses, "noise": responses[:2]})
    with pytest.raises(ValueError, match="holds 2 variables \\(betas, noise\\); pass key= to pick one"):
        Benchmark.from_files(path)
    np.testing.assert_array_equal(Benchmark.from_files(path, key="betas").responses, responses)


def test_unknown_suffix_lists_formats(tmp_path):
    with pytest.raises(ValueError, match="unknown file suffix '.txt'; choose one of: .csv, .h5, .hdf5, .mat, .npy"):
        Benchmark.from_files(tmp_path / "responses.txt")


def test_synthetic_planted_structure_is_visible_to_scipy():
    """Each region's responses correlate best, across stimuli pairs, with the RDM of its planted layer."""
    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=80, region_layers={"EVC": 0, "OTC": 2}, seed=3)
    layers = list(feature_maps)
    for region, planted in {"EVC": 0, "OTC": 2}.items():
        brain = pdist(benchmark.responses[benchmark.neuroids(region, 1)].T, "correlation")
        scores = [scipy.stats.pearsonr(pdist(feature_maps[name].reshape(80, -1), "correlation"), brain)[0]
                  for name in layers]
        assert int(np.argmax(scores)) == planted


@pytest.mark.parametrize("kwargs, message", [
    ({"regions": ["V1"] * 11}, "regions has 11 entries but responses has 12 neuroids"),
    ({"subjects": [1] * 13}, "subjects has 13 entries but responses has 12 neuroids"),
    ({"stimulus_data": pd.DataFrame({"a": range(8)})}, "stimulus_data has 8 rows but responses has 9 stimuli"),
    ({"regions": {"V1": [0, 12]}}, r"regions\['V1'\] must list neuroid rows from 0 to 11"),
])
def test_mismatched_metadata_is_named(responses, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Benchmark(responses, **kwargs)


def test_nan_response_names_the_stimulus(responses):
    responses = responses.copy()
    responses[3, 7] = np.nan
    with pytest.raises(ValueError, match=r"responses contains NaN or infinite values at stimulus \[7\]"):
        Benchmark(responses)


def test_missing_region_or_subject(responses, labels):
    benchmark = Benchmark(responses, regions=labels.region, subjects=labels.subj_id)
    with pytest.raises(ValueError, match="unknown region 'V4'; choose one of: IT, V1"):
        benchmark.neuroids("V4", 1)
    with pytest.raises(ValueError, match="region 'V1' has no neuroids of subject 3"):
        benchmark.neuroids("V1", 3)


def test_repeats_are_checked_against_responses_and_averaged_when_responses_are_none(responses):
    rng = np.random.default_rng(1)
    repeats = responses.T[None] + rng.normal(size=(3, 9, 12))
    repeats -= repeats.mean(axis=0) - responses.T
    benchmark = Benchmark(responses, repeats=repeats)
    np.testing.assert_array_equal(benchmark.repeats, repeats)
    from_repeats = Benchmark(None, repeats=repeats)
    np.testing.assert_allclose(from_repeats.responses, repeats.mean(axis=0).T, rtol=1e-15)
    with pytest.warns(UserWarning, match="responses are not the average of repeats"):
        Benchmark(responses + 1, repeats=repeats)
    with pytest.raises(ValueError, match="pass repeats of shape \\(n_repeats >= 2, 9, 12\\)"):
        Benchmark(responses, repeats=repeats[:, :5])
    with pytest.raises(ValueError, match="responses is None and no repeats were given"):
        Benchmark(None)


def test_synthetic_plants_repeats_whose_average_is_the_responses_and_keeps_the_planted_ncsnr():
    benchmark, _ = Benchmark.synthetic(n_stimuli=50, n_repeats=5, noise=2.0, seed=3)
    assert benchmark.repeats.shape == (5, 50, 120)
    np.testing.assert_allclose(benchmark.responses, benchmark.repeats.mean(axis=0).T, rtol=1e-15)
    residual_sd = (benchmark.repeats - benchmark.repeats.mean(axis=0)).std(axis=(0, 1), ddof=0) * np.sqrt(5 / 4)
    assert residual_sd.mean() == pytest.approx(2.0, rel=0.05)
    signal_sd = 2.0 * benchmark.neuroid_data["planted_ncsnr"].to_numpy()
    averaged_variance = benchmark.responses.var(axis=1, ddof=1)
    assert averaged_variance.mean() == pytest.approx((signal_sd**2).mean() + 2.0**2 / 5, rel=0.05)
