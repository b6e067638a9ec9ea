"""score_feature_maps: planted structure, and every score recomputed with scipy and scikit-learn."""

import numpy as np
import pytest
import scipy.stats
from scipy.spatial.distance import pdist
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from torchlens_like.analysis import (
    Benchmark,
    effective_dimensionality,
    get_results_max,
    score_feature_maps,
    sparse_random_projection,
)

ALPHAS = np.logspace(-2, 5, 8)


@pytest.fixture(scope="module")
def planted():
    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=90, region_layers={"EVC": 0, "OTC": 2}, seed=5)
    results = score_feature_maps(feature_maps, benchmark, alphas=ALPHAS, seed=1)
    return benchmark, feature_maps, results


def test_the_planted_layer_wins_every_region_metric_and_subject(planted):
    _, _, results = planted
    best = get_results_max(results)
    assert len(best) == 3 * 2 * 2
    for row in best.itertuples():
        assert row.model_layer == {"EVC": "layer1", "OTC": "layer3"}[row.region]
        others = results.query("metric == @row.metric and region == @row.region and subj_id == @row.subj_id "
                               "and cv_split == 'test' and model_layer != @row.model_layer")
        assert row.score > others.score.max() + 0.3


def test_long_format(planted):
    benchmark, feature_maps, results = planted
    assert list(results.columns) == ["model_layer", "model_layer_index", "model_layer_depth", "region", "subj_id",
                                     "cv_split", "metric", "score"]
    assert len(results) == len(feature_maps) * len(benchmark.targets()) * 2 * 3
    assert not results.duplicated(["model_layer", "region", "subj_id", "cv_split", "metric"]).any()
    layers = results.drop_duplicates("model_layer")
    assert layers.model_layer.tolist() == list(feature_maps)
    assert layers.model_layer_index.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(layers.model_layer_depth, [0.25, 0.5, 0.75, 1.0])


def reference_scores(features, encoded, responses, neuroids, splits):
    """cRSA, eReg and eRSA of one region, with scipy and scikit-learn only."""
    train, test = splits["train"], splits["test"]
    model = RidgeCV(alphas=ALPHAS, alpha_per_target=True, scoring="neg_mean_squared_error",
                    store_cv_results=True).fit(encoded[train], responses[train])
    chosen = np.searchsorted(ALPHAS, model.alpha_)
    predicted = {"train": model.cv_results_[:, np.arange(responses.shape[1]), chosen],
                 "test": model.predict(encoded[test])}
    scores = {}
    for split, index in splits.items():
        brain = pdist(responses[index][:, neuroids], "correlation")
        scores[("cRSA", split)] = scipy.stats.pearsonr(pdist(features[index], "correlation"), brain)[0]
        scores[("eReg", split)] = np.mean([scipy.stats.pearsonr(responses[index, j], predicted[split][:, j])[0]
                                           for j in neuroids])
        scores[("eRSA", split)] = scipy.stats.pearsonr(pdist(predicted[split][:, neuroids], "correlation"), brain)[0]
    return scores


def test_scores_equal_scipy_and_sklearn_recomputation():
    """layer1 (192 features) is wider than the JL bound at eps=0.5 and gets projected before the ridge."""
    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=48, layer_shapes=((3, 8, 8), (40,)), n_subjects=1,
                                                  region_layers={"V1": 0, "IT": 1}, seed=2)
    order = np.random.default_rng(0).permutation(48)
    splits = {"train": np.sort(order[:30]), "test": np.sort(order[30:])}
    results = score_feature_maps(feature_maps, benchmark, splits=splits, alphas=ALPHAS, eps=0.5, seed=4)
    responses = benchmark.responses.T
    for name, feature_map in feature_maps.items():
        features = feature_map.reshape(48, -1)
        wide = features.shape[1] > johnson_lindenstrauss_min_dim(48, eps=0.5)
        assert wide == (name == "layer1")
        encoded = sparse_random_projection(features, eps=0.5, seed=4) if wide else features
        for region in ("V1", "IT"):
            expected = reference_scores(features, encoded, responses, benchmark.neuroids(region, 1), splits)
            for (metric, split), value in expected.items():
                row = results.query("model_layer == @name and region == @region and metric == @metric "
                                    "and cv_split == @split")
                assert row.score.item() == pytest.approx(value, abs=1e-8), (name, region, metric, split)


def test_feature_map_stats_column_matches_pca():
    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=40, n_subjects=1, seed=0)
    results = score_feature_maps(feature_maps, benchmark, ["cRSA"],
                                 feature_map_stats={"effective_dimensionality": effective_dimensionality})
    for name, feature_map in feature_maps.items():
        eigenvalues = PCA().fit(feature_map.reshape(40, -1)).explained_variance_
        expected = eigenvalues.sum() ** 2 / (eigenvalues**2).sum()
        np.testing.assert_allclose(results.query("model_layer == @name").effective_dimensionality, expected,
                                   rtol=1e-5)


def test_inputs_are_left_unchanged():
    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=30, n_subjects=1, seed=0)
    copies = {name: array.copy() for name, array in feature_maps.items()}
    responses = benchmark.responses.copy()
    score_feature_maps(feature_maps, benchmark, ["eRSA"])
    for name, array in feature_maps.items():
        np.testing.assert_array_equal(array, copies[name])
    np.testing.assert_array_equal(benchmark.responses, responses)


def test_errors_name_the_problem():
    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=30, n_subjects=1, seed=0)
    with pytest.raises(ValueError, match=r"feature_maps\['layer2'\] has 29 stimuli but benchmark has 30"):
        score_feature_maps({**feature_maps, "layer2": feature_maps["layer2"][:29]}, benchmark)
    with pytest.raises(ValueError, match="unknown procedure 'RSA'; choose one of: cRSA, eRSA, eReg"):
        score_feature_maps(feature_maps, benchmark, ["RSA"])
    with pytest.raises(ValueError, match="share stimuli"):
        score_feature_maps(feature_maps, benchmark, splits={"train": np.arange(20), "test": np.arange(15, 30)})
    with pytest.raises(ValueError, match=r"splits\['test'\] must list at least 4 stimulus indices"):
        score_feature_maps(feature_maps, benchmark, splits={"train": np.arange(27), "test": np.arange(27, 30)})
    with pytest.raises(TypeError, match="benchmark must be a Benchmark"):
        score_feature_maps(feature_maps, benchmark.responses)


def test_fraction_of_ceiling_uses_rsatoolbox_pool_and_the_nsd_ceiling():
    import rsatoolbox
    from rsatoolbox.util.pooling import pool_rdm

    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=60, n_repeats=3, noise=0.8, seed=2)
    results = score_feature_maps(feature_maps, benchmark, ["cRSA", "eReg"], alphas=ALPHAS, seed=0, ceiling=True)
    test = results.query("cv_split == 'test'")
    np.testing.assert_allclose(test.fraction_of_ceiling, test.score / test.ceiling, rtol=1e-12)
    order = np.random.default_rng(0).permutation(60)
    held_out = np.sort(order[:30])
    for region in ("EVC", "OTC"):
        rows = {s: benchmark.neuroids(region, s) for s in (1, 2)}
        vectors = np.stack([pdist(benchmark.responses[rows[s]][:, held_out].T, "correlation") for s in (1, 2)])
        pooled = pool_rdm(rsatoolbox.rdm.RDMs(vectors), method="corr")
        for s in (1, 2):
            expected = rsatoolbox.rdm.compare(pooled, rsatoolbox.rdm.RDMs(vectors[s - 1]), method="corr")[0, 0]
            got = test.query("metric == 'cRSA' and region == @region and subj_id == @s").ceiling.unique()
            np.testing.assert_allclose(got, [expected], rtol=1e-10)
            trials = benchmark.repeats[:, held_out][:, :, rows[s]]
            noise = trials.var(axis=0, ddof=1).mean(axis=0)
            signal = np.maximum(trials.reshape(-1, len(rows[s])).var(axis=0, ddof=1) - noise, 0)
            snr2 = signal / noise
            expected = np.sqrt(snr2 / (snr2 + 1 / 3)).mean()
            got = test.query("metric == 'eReg' and region == @region and subj_id == @s").ceiling.unique()
            np.testing.assert_allclose(got, [expected], rtol=1e-10)
    best = test.query("metric == 'eReg' and ((region == 'EVC' and model_layer == 'layer1') or "
                      "(region == 'OTC' and model_layer == 'layer3'))")
    assert len(best) == 4 and (best.fraction_of_ceiling > 0.9).all() and (best.fraction_of_ceiling < 1.1).all()


def test_ceiling_needs_repeats_for_ereg_and_two_subjects_for_rsa():
    benchmark, feature_maps = Benchmark.synthetic(n_stimuli=40, n_subjects=1, seed=0)
    with pytest.raises(ValueError, match="region 'EVC' has only subject 1"):
        score_feature_maps(feature_maps, benchmark, ["cRSA"], ceiling=True)
    with pytest.raises(ValueError, match="eReg's noise ceiling comes from repeated presentations"):
        score_feature_maps(feature_maps, benchmark, ["eReg"], ceiling=True)
