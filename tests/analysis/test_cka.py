"""cka against the formulas of Kornblith et al. (2019) written out here, against ckatorch, and on the
measure's properties."""

import numpy as np
import pytest
import torch
from ckatorch.core import cka_base
from ckatorch.utils import center_gram_matrix, rbf_kernel
from scipy.spatial.distance import pdist, squareform
from torch.utils._python_dispatch import TorchDispatchMode

from torchlens_like.analysis import cka

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def representations(n, width_x, width_y, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width_x))
    y = np.tanh(x @ rng.normal(size=(width_x, width_y)) / np.sqrt(width_x)) + 0.5 * rng.normal(size=(n, width_y))
    return x, y


def linear_gram(features):
    return features @ features.T


def rbf_gram(features, sigma):
    squared = squareform(pdist(features, "sqeuclidean"))
    bandwidth = sigma * np.median(pdist(features))
    return np.exp(-squared / (2 * bandwidth**2))


def hsic_biased(k, m):
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ m @ h) / (n - 1) ** 2


def hsic_unbiased(k, m):
    """Song et al. (2012), eq. 5."""
    n = len(k)
    k, m = k - np.diag(np.diag(k)), m - np.diag(np.diag(m))
    ones = np.ones(n)
    return (np.trace(k @ m) + ones @ k @ ones * (ones @ m @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * ones @ k @ m @ ones) / (n * (n - 3))


def feature_space_debiased_linear_cka(x, y):
    """Kornblith et al.'s feature-space form of the debiased linear CKA."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    n = len(x)

    def debiased(cross, rows_x, rows_y):
        return cross - n / (n - 2) * rows_x @ rows_y + rows_x.sum() * rows_y.sum() / ((n - 1) * (n - 2))

    rows_x, rows_y = (x**2).sum(axis=1), (y**2).sum(axis=1)
    return debiased(np.linalg.norm(x.T @ y) ** 2, rows_x, rows_y) / np.sqrt(
        debiased(np.linalg.norm(x.T @ x) ** 2, rows_x, rows_x) * debiased(np.linalg.norm(y.T @ y) ** 2, rows_y, rows_y)
    )


def formula_cka(k, m, debiased):
    hsic = hsic_unbiased if debiased else hsic_biased
    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(80, 6, 9), (30, 70, 45), (40, 20, 90)], ids=["features", "gram", "mixed"])
def test_linear_equals_kornblith_formula(shape, debiased):
    x, y = representations(*shape)
    expected = formula_cka(linear_gram(x), linear_gram(y), debiased)
    assert cka(x, y, debiased=debiased) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("sigma", [0.4, 1.0, 3.0])
def test_rbf_equals_kornblith_formula_with_median_of_distinct_pairs(sigma, debiased):
    x, y = representations(51, 8, 5, seed=1)
    expected = formula_cka(rbf_gram(x, sigma), rbf_gram(y, sigma), debiased)
    assert cka(x, y, "rbf", debiased, sigma) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(80, 6, 9), (30, 70, 45)])
def test_linear_equals_ckatorch(shape, debiased):
    x, y = representations(*shape, seed=2)
    reference = cka_base(torch.from_numpy(x), torch.from_numpy(y), "linear", unbiased=debiased)
    assert cka(x, y, debiased=debiased) == pytest.approx(float(reference), rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_equals_ckatorch_kernels_and_centring(debiased):
    """ckatorch's bandwidth is a multiple of the median squared distance over all n x n entries
    (diagonal included); its multiple is chosen here so that its kernel is ours."""
    x, y = representations(60, 7, 4, seed=3)
    sigma = 0.8
    grams = []
    for features in (x, y):
        tensor = torch.from_numpy(features)
        squared = torch.cdist(tensor, tensor) ** 2
        threshold = sigma * np.median(pdist(features)) / np.sqrt(float(torch.median(squared)))
        grams.append(center_gram_matrix(rbf_kernel(tensor, threshold), unbiased=debiased))
    reference = (grams[0] * grams[1]).sum() / (grams[0].norm() * grams[1].norm())
    assert cka(x, y, "rbf", debiased, sigma) == pytest.approx(float(reference), rel=1e-9)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_properties_one_with_itself_invariant_to_rotation_and_scaling(kernel, debiased):
    rng = np.random.default_rng(4)
    x, y = representations(70, 12, 8, seed=4)
    rotation = np.linalg.qr(rng.normal(size=(12, 12)))[0]
    assert cka(x, x, kernel, debiased) == pytest.approx(1.0, abs=1e-12)
    base = cka(x, y, kernel, debiased)
    assert cka(2.5 * x @ rotation + 7.0, y, kernel, debiased) == pytest.approx(base, rel=1e-9)
    assert cka(x, 0.1 * y, kernel, debiased) == pytest.approx(base, rel=1e-9)
    assert 0.05 < base < 0.99


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_not_invariant_to_an_arbitrary_invertible_map(kernel):
    rng = np.random.default_rng(5)
    x, _ = representations(100, 10, 3, seed=5)
    stretch = np.diag(np.logspace(0, 2, 10)) @ rng.normal(size=(10, 10))
    assert abs(np.linalg.det(stretch)) > 1e-6
    assert cka(x, x @ stretch, kernel) < 0.95


def test_linear_with_many_stimuli_forms_no_stimulus_by_stimulus_matrix():
    n = 3000
    x, y = representations(n, 40, 25, seed=6)
    sizes = []

    class Sizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            sizes.extend(t.numel() for t in (out if isinstance(out, (tuple, list)) else [out])
                         if isinstance(t, torch.Tensor))
            return out

    with Sizes():
        value = cka(torch.from_numpy(x), torch.from_numpy(y), debiased=True)
    assert max(sizes) <= n * 40
    assert float(value) == pytest.approx(feature_space_debiased_linear_cka(x, y), rel=1e-9)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_tensor_in_tensor_out_numpy_in_float_out_inputs_untouched(device):
    x, y = representations(40, 6, 30, seed=7)
    copies = x.copy(), y.copy()
    numpy_value = cka(x, y, "rbf", True)
    assert isinstance(numpy_value, float)
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(y, copies[1])
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    value = cka(tx, ty, "rbf", True)
    assert isinstance(value, torch.Tensor) and value.ndim == 0 and value.device.type == device
    assert float(value) == pytest.approx(numpy_value, rel=1e-9)
    assert float(cka(tx.float(), ty.float())) == pytest.approx(cka(x, y), rel=1e-6)


def test_float32_computation_close_to_float64():
    x, y = representations(200, 30, 20, seed=8)
    assert cka(x, y, dtype="float32") == pytest.approx(cka(x, y), rel=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x, y: cka(x, y[:-1]), "x has 20 stimuli but y has 19"),
        (lambda x, y: cka(x, y, kernel="poly"), "unknown kernel 'poly'; choose one of: linear, rbf"),
        (lambda x, y: cka(x, y, "rbf", sigma=0), "sigma must be a positive number"),
        (lambda x, y: cka(x[:3], y[:3], debiased=True), "needs at least 4"),
        (lambda x, y: cka(np.ones_like(x), y), "x does not vary across the stimuli"),
        (lambda x, y: cka(x, np.ones_like(y), "rbf"), "median distance between the stimuli of y is 0"),
        (lambda x, y: cka(x, np.where(np.arange(20)[:, None] == 3, np.nan, y)), "y contains NaN"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call, message):
    x, y = representations(20, 4, 3, seed=9)
    with pytest.raises(ValueError, match=message):
        call(x, y)
