"""Noise ceilings against rsatoolbox's boot_noise_ceiling, against the split-half and NSD formulas
written out with numpy, and against planted noise levels."""

import itertools
import warnings

import numpy as np
import pytest
import rsatoolbox
import torch
from rsatoolbox.inference.noise_ceiling import boot_noise_ceiling
from scipy.spatial.distance import pdist

from torchlens_like.analysis import (
    RDMs,
    Benchmark,
    ncsnr,
    ncsnr_noise_ceiling,
    rdm_noise_ceiling,
    split_half_reliability,
)
from torchlens_like.analysis import ceiling as ceiling_module
from torchlens_like.analysis.ceiling import kendall_tau_a

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
RSATOOLBOX_METHODS = {"pearson": "corr", "spearman": "spearman", "kendall": "tau-a"}


def subject_rdms(n_subjects=5, n_stimuli=14, seed=0, decimals=None):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n_stimuli, 6))
    rdms = np.stack([pdist(truth + rng.normal(size=truth.shape), "correlation") for _ in range(n_subjects)])
    return rdms if decimals is None else rdms.round(decimals)


def rsatoolbox_ceiling(vectors, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lower, upper = boot_noise_ceiling(rsatoolbox.rdm.RDMs(np.asarray(vectors, dtype=np.float64)),
                                          method=RSATOOLBOX_METHODS[method])
    return lower, upper


@pytest.mark.parametrize("method", sorted(RSATOOLBOX_METHODS))
@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "with ties"])
def test_rdm_noise_ceiling_equals_rsatoolbox(method, decimals):
    vectors = subject_rdms(decimals=decimals)
    assert rdm_noise_ceiling(vectors, method) == pytest.approx(rsatoolbox_ceiling(vectors, method), abs=1e-6)


@pytest.mark.parametrize("method", sorted(RSATOOLBOX_METHODS))
def test_every_input_form_gives_the_same_ceiling(method):
    vectors = subject_rdms(n_subjects=3, seed=1)
    expected = rsatoolbox_ceiling(vectors, method)
    squares = np.stack([rsatoolbox.rdm.RDMs(v).get_matrices()[0] for v in vectors])
    for form in (RDMs(vectors), squares, torch.from_numpy(vectors), vectors.astype(np.float32)):
        tolerance = 1e-6 if getattr(form, "dtype", None) != np.float32 else 1e-5
        assert rdm_noise_ceiling(form, method) == pytest.approx(expected, abs=tolerance)


def test_pearson_ceiling_in_blocks_of_pairs_equals_rsatoolbox(monkeypatch):
    vectors = subject_rdms(n_subjects=4, n_stimuli=30, seed=2)
    monkeypatch.setattr(ceiling_module, "block_length", lambda total, per_item: 17)
    assert rdm_noise_ceiling(vectors, "pearson") == pytest.approx(rsatoolbox_ceiling(vectors, "pearson"), abs=1e-9)


def test_kendall_tau_a_counts_pairs():
    rng = np.random.default_rng(3)
    first, second = rng.integers(0, 4, size=25), rng.integers(0, 5, size=25)
    signs = [np.sign(first[i] - first[j]) * np.sign(second[i] - second[j])
             for i, j in itertools.combinations(range(25), 2)]
    assert kendall_tau_a(first, second) == pytest.approx(np.sum(signs) / len(signs), abs=1e-12)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_rdm_noise_ceiling_of_tensors_on_their_device(device):
    vectors = subject_rdms(seed=4)
    for method in RSATOOLBOX_METHODS:
        ours = rdm_noise_ceiling(torch.from_numpy(vectors).to(device), method)
        assert ours == pytest.approx(rsatoolbox_ceiling(vectors, method), abs=1e-6)


def trials(n_repeats=4, n_stimuli=300, n_targets=5, seed=5):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(1, n_stimuli, n_targets)) * np.linspace(0.3, 3, n_targets)
    return signal + rng.normal(size=(n_repeats, n_stimuli, n_targets))


@pytest.mark.parametrize("n_repeats", [2, 3, 6])
def test_split_half_reliability_equals_numpy_spearman_brown(n_repeats):
    repeats = trials(n_repeats)
    even, odd = repeats[0::2].mean(axis=0), repeats[1::2].mean(axis=0)
    r = np.array([np.corrcoef(even[:, t], odd[:, t])[0, 1] for t in range(repeats.shape[2])])
    np.testing.assert_allclose(split_half_reliability(repeats), 2 * r / (1 + r), rtol=1e-12)


def test_ncsnr_equals_the_nsd_formula():
    repeats = trials()
    noise_variance = repeats.var(axis=0, ddof=1).mean(axis=0)
    total_variance = repeats.reshape(-1, repeats.shape[2]).var(axis=0, ddof=1)
    expected = np.sqrt(np.maximum(total_variance - noise_variance, 0) / noise_variance)
    np.testing.assert_allclose(ncsnr(repeats), expected, rtol=1e-12)
    np.testing.assert_allclose(ncsnr_noise_ceiling(expected, 4), expected**2 / (expected**2 + 1 / 4), rtol=1e-12)


def test_z_scored_responses_give_nsd_signal_variance_one_minus_noise():
    repeats = trials()
    flat = repeats.reshape(-1, repeats.shape[2])
    z = ((flat - flat.mean(axis=0)) / flat.std(axis=0, ddof=1)).reshape(repeats.shape)
    noise_sd = np.sqrt(z.var(axis=0, ddof=1).mean(axis=0))
    np.testing.assert_allclose(ncsnr(z), np.sqrt(np.maximum(1 - noise_sd**2, 0)) / noise_sd, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_noise_is_recovered_within_the_stated_tolerance(seed):
    benchmark, _ = Benchmark.synthetic(500, n_repeats=4, noise=0.5, seed=seed)
    planted = benchmark.neuroid_data["planted_ncsnr"].to_numpy()
    estimated = ncsnr(benchmark.repeats)
    above = planted > 0.75
    assert above.mean() > 0.9
    np.testing.assert_allclose(estimated[above], planted[above], rtol=0.10)
    planted_ceiling = ncsnr_noise_ceiling(planted, 4)
    np.testing.assert_allclose(ncsnr_noise_ceiling(estimated, 4), planted_ceiling, atol=0.03)
    np.testing.assert_allclose(split_half_reliability(benchmark.repeats), planted_ceiling, atol=0.05)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_encoding_ceilings_tensor_in_tensor_out(device):
    repeats = trials()
    tensor = torch.from_numpy(repeats).to(device)
    for function in (ncsnr, split_half_reliability):
        out = function(tensor)
        assert isinstance(out, torch.Tensor) and out.device.type == device
        np.testing.assert_allclose(out.cpu().numpy(), function(repeats), rtol=1e-12)
    assert ncsnr_noise_ceiling(ncsnr(tensor), 2).device.type == device


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rdm_noise_ceiling(subject_rdms()[:1]), "at least 2 subjects"),
        (lambda: rdm_noise_ceiling(subject_rdms(), "cosine"), "unknown method 'cosine'; choose one of: kendall"),
        (lambda: rdm_noise_ceiling(np.ones((3, 10))), "same dissimilarity for every pair \\(subjects \\[0, 1, 2\\]"),
        (lambda: rdm_noise_ceiling(np.ones((3, 7))), "7 entries, which is not n \\(n - 1\\) / 2"),
        (lambda: ncsnr(trials()[0]), "repeats must have shape \\(n_repeats, n_stimuli, n_targets\\)"),
        (lambda: ncsnr(trials()[:1]), "at least 2 repeats"),
        (lambda: ncsnr(np.repeat(trials()[:1], 3, axis=0)), "repeats are identical"),
        (lambda: ncsnr_noise_ceiling(np.ones(3), 0), "n_averaged must be a positive number"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
