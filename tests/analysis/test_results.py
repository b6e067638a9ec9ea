"""get_results_max against a plain loop over the groups of a random results table."""

import itertools

import numpy as np
import pandas as pd
import pytest

from torchlens_like.analysis import get_results_max


@pytest.fixture
def results():
    rng = np.random.default_rng(0)
    rows = [
        {"model_layer": f"layer{index}", "model_layer_index": index, "metric": metric, "region": region,
         "subj_id": subject, "cv_split": split, "score": rng.normal()}
        for index, metric, region, subject, split in itertools.product(
            range(1, 7), ["cRSA", "eReg"], ["EVC", "OTC", "PPA"], [1, 2], ["train", "test"])
    ]
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)


def best_by_loop(results, regions):
    expected = {}
    for metric, region, subject in itertools.product(["cRSA", "eReg"], regions, [1, 2]):
        scores = {}
        for row in results.itertuples():
            if (row.metric, row.region, row.subj_id) == (metric, region, subject):
                scores.setdefault(row.model_layer, {})[row.cv_split] = row.score
        layer = max(scores, key=lambda name: scores[name]["train"])
        expected[(metric, region, subject)] = (layer, scores[layer]["test"], scores[layer]["train"])
    return expected


def test_chooses_on_train_and_reports_test(results):
    before = results.copy()
    best = get_results_max(results)
    expected = best_by_loop(results, ["EVC", "OTC", "PPA"])
    assert len(best) == len(expected) and set(best.cv_split) == {"test"}
    for row in best.itertuples():
        layer, test_score, train_score = expected[(row.metric, row.region, row.subj_id)]
        assert (row.model_layer, row.score, row.criterion_score) == (layer, test_score, train_score)
        assert row.model_layer_index == int(layer.removeprefix("layer"))
    pd.testing.assert_frame_equal(results, before)


def test_filters_restrict_the_groups(results):
    best = get_results_max(results, filters={"region": ["EVC", "OTC"]})
    expected = best_by_loop(results, ["EVC", "OTC"])
    assert {(r.metric, r.region, r.subj_id): r.model_layer for r in best.itertuples()} == {
        key: value[0] for key, value in expected.items()}


def test_missing_columns_are_listed(results):
    with pytest.raises(ValueError, match=r"group_vars names columns \['subject'\] that results does not have"):
        get_results_max(results, group_vars=["metric", "subject"])
    with pytest.raises(ValueError, match="no rows of results match criterion"):
        get_results_max(results, criterion={"cv_split": "validation"})
