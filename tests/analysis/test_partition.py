"""variance_partitioning against the same fits done by hand with scikit-learn's RidgeCV on the same
folds and de Heer et al.'s Venn formulas written out; a planted case with known unique and shared parts."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from torchlens_like.analysis import variance_partitioning

ALPHAS = np.logspace(-2, 5, 8)


def planted(n=400, noise=0.7, seed=0):
    """Latent factors a (only in A), b (only in B), s (in A and B), c (only in C), each of unit variance."""
    rng = np.random.default_rng(seed)
    a, b, s, c = rng.normal(size=(4, n, 3))
    features = {
        "A": np.c_[a, s] @ rng.normal(size=(6, 15)),
        "B": np.c_[b, s] @ rng.normal(size=(6, 12)),
        "C": c @ rng.normal(size=(3, 8)),
    }
    weights = {"a": 0.8, "b": 0.6, "s": 1.0, "c": 0.5}
    y = (weights["a"] * a[:, :1] + weights["b"] * b[:, :1] + weights["s"] * s[:, :1] + weights["c"] * c[:, :1]
         + noise * rng.normal(size=(n, 4)))
    total = sum(w**2 for w in weights.values()) + noise**2
    truth = {"A": weights["a"] ** 2 / total, "B": weights["b"] ** 2 / total, "C": weights["c"] ** 2 / total,
             "A & B": weights["s"] ** 2 / total, "A & C": 0.0, "B & C": 0.0, "A & B & C": 0.0}
    return features, y, truth


def sklearn_r2(features, y, names, folds):
    x = np.concatenate([features[name].reshape(len(y), -1) for name in names], axis=1)
    scores = []
    for train, test in folds:
        model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[train], y[train])
        scores.append(r2_score(y[test], model.predict(x[test]), multioutput="raw_values"))
    return np.mean(scores, axis=0)


def de_heer_parts(r2):
    if "C" not in r2:
        return {"A": r2["A+B"] - r2["B"], "B": r2["A+B"] - r2["A"], "A & B": r2["A"] + r2["B"] - r2["A+B"]}
    return {
        "A": r2["A+B+C"] - r2["B+C"],
        "B": r2["A+B+C"] - r2["A+C"],
        "C": r2["A+B+C"] - r2["A+B"],
        "A & B": r2["A+C"] + r2["B+C"] - r2["C"] - r2["A+B+C"],
        "A & C": r2["A+B"] + r2["B+C"] - r2["B"] - r2["A+B+C"],
        "B & C": r2["A+B"] + r2["A+C"] - r2["A"] - r2["A+B+C"],
        "A & B & C": r2["A"] + r2["B"] + r2["C"] - r2["A+B"] - r2["A+C"] - r2["B+C"] + r2["A+B+C"],
    }


@pytest.mark.parametrize("names", [("A", "B"), ("A", "B", "C")])
def test_equals_sklearn_ridgecv_on_the_same_folds_and_the_venn_formulas(names):
    features, y, _ = planted(n=120, seed=1)
    chosen = {name: features[name] for name in names}
    before = {name: array.copy() for name, array in chosen.items()}
    partition = variance_partitioning(chosen, y, folds=4, alphas=ALPHAS, seed=3)
    assert len(partition.folds) == 4
    assert sorted(np.concatenate([test for _, test in partition.folds])) == list(range(120))
    r2 = {}
    for size in range(1, len(names) + 1):
        for union in itertools.combinations(names, size):
            r2["+".join(union)] = sklearn_r2(features, y, union, partition.folds)
            np.testing.assert_allclose(partition.r2["+".join(union)], r2["+".join(union)], rtol=1e-6, atol=1e-8)
    expected = de_heer_parts(r2)
    assert list(partition.parts.columns) == list(expected)
    for part, values in expected.items():
        np.testing.assert_allclose(partition.parts[part], values, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(partition.parts.sum(axis=1), partition.r2["+".join(names)], atol=1e-12)
    for name in names:
        np.testing.assert_array_equal(chosen[name], before[name])


def test_planted_unique_and_shared_parts_are_recovered():
    features, y, truth = planted(n=1500, noise=0.5, seed=2)
    partition = variance_partitioning(features, y, folds=5, alphas=ALPHAS)
    means = partition.parts.mean()
    for part, value in truth.items():
        assert means[part] == pytest.approx(value, abs=0.03), part


def test_negative_parts_are_reported_not_clipped():
    rng = np.random.default_rng(4)
    signal = rng.normal(size=(90, 4))
    y = signal[:, :1] + rng.normal(size=(90, 30))
    partition = variance_partitioning({"signal": signal, "noise": rng.normal(size=(90, 40))}, y, folds=3)
    expected_unique_noise = partition.r2["signal+noise"] - partition.r2["signal"]
    np.testing.assert_array_equal(partition.parts["noise"], expected_unique_noise)
    assert (partition.parts["noise"] < 0).any()
    summary = partition.summary()
    assert summary.loc["noise", "negative_targets"] == int((expected_unique_noise < 0).sum())
    assert summary.loc["signal", "mean"] == pytest.approx(partition.parts["signal"].mean())


def test_tensors_give_the_same_partition():
    features, y, _ = planted(n=60, seed=5)
    two = {"A": features["A"], "B": features["B"]}
    from_numpy = variance_partitioning(two, y, folds=3)
    from_torch = variance_partitioning({k: torch.from_numpy(v) for k, v in two.items()}, torch.from_numpy(y), folds=3)
    np.testing.assert_allclose(from_torch.parts, from_numpy.parts, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "sets, message",
    [
        (lambda f: {"A": f["A"]}, "must be a dict of 2 or 3 named feature arrays"),
        (lambda f: {**f, "D": f["A"]}, "must be a dict of 2 or 3 named feature arrays"),
        (lambda f: {"A": f["A"], "B+C": f["B"]}, "contain no '\\+'"),
        (lambda f: {"A": f["A"], "B": f["B"][:-1]}, "feature_sets\\['A'\\] has 60 stimuli but feature_sets\\['B'\\] has 59"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(sets, message):
    features, y, _ = planted(n=60, seed=6)
    with pytest.raises(ValueError, match=message):
        variance_partitioning(sets(features), y, folds=3)
