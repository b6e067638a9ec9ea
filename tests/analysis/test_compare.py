"""correlate_rdms / compare_rdms against scipy.stats and rsatoolbox.rdm.compare on the same RDMs."""

import itertools

import numpy as np
import pandas as pd
import pytest
import rsatoolbox
import scipy.stats
from scipy.spatial.distance import pdist, squareform

from torchlens_like.analysis import RDMs, compare_rdms, correlate_rdms

SCIPY = {"pearson": scipy.stats.pearsonr, "spearman": scipy.stats.spearmanr, "kendall": scipy.stats.kendalltau}
RSATOOLBOX = {"pearson": "corr", "spearman": "spearman", "kendall": "kendall"}


@pytest.fixture
def rdms():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(25, 10))
    return {
        name: squareform(pdist(shared + noise * rng.normal(size=shared.shape), "correlation"))
        for name, noise in [("a", 0.5), ("b", 1.0), ("c", 3.0)]
    }


@pytest.fixture
def tied():
    """Integer-valued RDMs with many ties, where rank methods must average ranks."""
    rng = np.random.default_rng(1)
    first = rng.integers(0, 6, size=190).astype(float)
    second = first + rng.integers(0, 4, size=190)
    return squareform(first), squareform(second)


def tau_b_by_definition(x, y):
    """Kendall's tau-b from all pairs of pairs, without sorting."""
    dx = np.sign(x[:, None] - x[None, :])[np.triu_indices(len(x), 1)]
    dy = np.sign(y[:, None] - y[None, :])[np.triu_indices(len(y), 1)]
    return (dx * dy).sum() / np.sqrt((dx != 0).sum() * (dy != 0).sum())


@pytest.mark.parametrize("method", sorted(SCIPY))
def test_correlate_matches_scipy_on_upper_triangles(rdms, method):
    before = rdms["a"].copy()
    expected = SCIPY[method](squareform(rdms["a"]), squareform(rdms["b"]))[0]
    assert correlate_rdms(rdms["a"], rdms["b"], method) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_array_equal(rdms["a"], before)


@pytest.mark.parametrize("method", sorted(SCIPY))
def test_ties_match_scipy(tied, method):
    expected = SCIPY[method](squareform(tied[0]), squareform(tied[1]))[0]
    assert correlate_rdms(*tied, method=method) == pytest.approx(expected, abs=1e-12)


def test_kendall_is_tau_b_by_definition(tied):
    expected = tau_b_by_definition(squareform(tied[0]), squareform(tied[1]))
    assert correlate_rdms(*tied, method="kendall") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("method", sorted(RSATOOLBOX))
def test_correlate_matches_rsatoolbox_compare(rdms, tied, method):
    for first, second in [(rdms["a"], rdms["c"]), tied]:
        reference = rsatoolbox.rdm.compare(
            rsatoolbox.rdm.RDMs(squareform(first)[None]), rsatoolbox.rdm.RDMs(squareform(second)[None]),
            method=RSATOOLBOX[method],
        )
        assert correlate_rdms(first, second, method) == pytest.approx(reference[0, 0], abs=1e-10)


def test_condensed_and_square_inputs_agree(rdms):
    square = correlate_rdms(rdms["a"], rdms["b"], "spearman")
    condensed = correlate_rdms(squareform(rdms["a"]), squareform(rdms["b"]), "spearman")
    assert square == condensed


@pytest.mark.parametrize("method", sorted(SCIPY))
def test_compare_rdms_table_matches_pairwise_scipy(rdms, method):
    table = compare_rdms(rdms, method)
    assert list(table.index) == list(table.columns) == ["a", "b", "c"]
    for first, second in itertools.product(rdms, repeat=2):
        expected = SCIPY[method](squareform(rdms[first]), squareform(rdms[second]))[0]
        assert table.loc[first, second] == pytest.approx(expected, abs=1e-12)


def test_compare_rdms_matches_rsatoolbox_all_pairs(rdms):
    stacked = np.stack([squareform(rdm) for rdm in rdms.values()])
    reference = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(stacked), rsatoolbox.rdm.RDMs(stacked), method="spearman")
    np.testing.assert_allclose(compare_rdms(rdms, "spearman").to_numpy(), reference, atol=1e-10)


def test_compare_rdms_accepts_container_with_descriptor_index(rdms):
    container = RDMs(
        np.stack([squareform(rdm) for rdm in rdms.values()]),
        descriptors={"region": ["V1", "V1", "IT"], "subj_id": [1, 2, 1]},
    )
    table = compare_rdms(container)
    assert isinstance(table.index, pd.MultiIndex) and table.index.names == ["region", "subj_id"]
    expected = scipy.stats.pearsonr(squareform(rdms["a"]), squareform(rdms["c"]))[0]
    assert table.loc[("V1", 1), ("IT", 1)] == pytest.approx(expected, abs=1e-12)


def test_mismatched_sizes_name_both(rdms):
    with pytest.raises(ValueError, match="rdm1 covers 25 stimuli but rdm2 covers 24"):
        correlate_rdms(rdms["a"], rdms["b"][:24, :24])
    with pytest.raises(ValueError, match=r"rdms\['b'\] covers 24 stimuli but rdms\['a'\] covers 25"):
        compare_rdms({"a": rdms["a"], "b": rdms["b"][:24, :24]})


def test_constant_rdm_is_rejected(rdms):
    with pytest.raises(ValueError, match="rdm2 has the same dissimilarity for every pair"):
        correlate_rdms(rdms["a"], np.ones((25, 25)))


def test_nan_is_rejected(rdms):
    broken = rdms["a"].copy()
    broken[0, 3] = np.nan
    with pytest.raises(ValueError, match=r"rdm1 contains NaN or infinite values at condensed positions \[2\]"):
        correlate_rdms(broken, rdms["b"])


def test_too_few_stimuli():
    with pytest.raises(ValueError, match="fewer than 3 stimuli"):
        correlate_rdms(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 2.0], [2.0, 0.0]]))


def test_not_square_or_triangular():
    with pytest.raises(ValueError, match="5 entries, which is not n \\(n - 1\\) / 2"):
        correlate_rdms(np.arange(5.0), np.arange(5.0))
    with pytest.raises(ValueError, match="must be a square RDM"):
        correlate_rdms(np.ones((3, 4)), np.ones((3, 4)))


def test_unknown_method_lists_valid_names(rdms):
    with pytest.raises(ValueError, match="unknown method 'corr'; choose one of: kendall, pearson, spearman"):
        correlate_rdms(rdms["a"], rdms["b"], "corr")
