"""The array contract of every public function: numpy in gives numpy out, a tensor in gives a tensor
on the same device, the values agree across backends, and the caller's arrays are never modified."""

import numpy as np
import pytest
import torch

from torchlens_like.analysis import (
    cka,
    ncsnr,
    split_half_reliability,
    RidgeGCV,
    center_features,
    compute_rdm,
    correlate_rdms,
    cross_validated_scores,
    effective_dimensionality,
    normalize_features,
    pearson_r,
    relative_representations,
    sparse_random_projection,
)

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(24, 2, 5))
OTHER = RNG.normal(size=(24, 10))
RESPONSES = FEATURES.reshape(24, -1) @ RNG.normal(size=(10, 3)) + RNG.normal(size=(24, 3))

REPEATS = RESPONSES[None] + RNG.normal(size=(3, 24, 3))

CALLS = {
    "compute_rdm": (lambda f: compute_rdm(f, "gaussian"), [FEATURES]),
    "compute_rdm condensed": (lambda f: compute_rdm(f, condensed=True, chunk_size=5), [FEATURES]),
    "correlate_rdms": (lambda a, b: correlate_rdms(compute_rdm(a), compute_rdm(b), "spearman"), [FEATURES, OTHER]),
    "center_features": (center_features, [FEATURES]),
    "normalize_features": (normalize_features, [FEATURES]),
    "relative_representations": (relative_representations, [FEATURES, OTHER[:4]]),
    "sparse_random_projection": (lambda f: sparse_random_projection(f, n_components=6, seed=2), [FEATURES]),
    "effective_dimensionality": (effective_dimensionality, [FEATURES]),
    "pearson_r": (pearson_r, [RESPONSES, OTHER[:, :3]]),
    "cross_validated_scores": (lambda x, y: cross_validated_scores(x, y, folds=3), [FEATURES, RESPONSES]),
    "RidgeGCV.predict": (lambda x, y: RidgeGCV().fit(x, y).predict(x), [FEATURES, RESPONSES]),
    "RidgeGCV.coef_": (lambda x, y: RidgeGCV().fit(x, y).coef_, [FEATURES, RESPONSES]),
    "cka linear": (lambda x, y: cka(x, y, debiased=True), [FEATURES, OTHER]),
    "cka rbf": (lambda x, y: cka(x, y, "rbf"), [FEATURES, OTHER]),
    "ncsnr": (ncsnr, [REPEATS]),
    "split_half_reliability": (split_half_reliability, [REPEATS]),
}

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@pytest.mark.parametrize("name", sorted(CALLS))
def test_numpy_in_numpy_out_and_inputs_untouched(name):
    function, inputs = CALLS[name]
    copies = [array.copy() for array in inputs]
    result = function(*inputs)
    assert isinstance(result, (np.ndarray, float))
    for array, copy in zip(inputs, copies):
        np.testing.assert_array_equal(array, copy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_tensor_in_tensor_out_on_its_device(name, device):
    function, inputs = CALLS[name]
    tensors = [torch.from_numpy(array).to(device) for array in inputs]
    copies = [tensor.clone() for tensor in tensors]
    result = function(*tensors)
    expected = function(*inputs)
    if isinstance(expected, float):
        assert result == pytest.approx(expected, rel=1e-9)
    else:
        assert isinstance(result, torch.Tensor) and result.device.type == device
        np.testing.assert_allclose(result.cpu().numpy(), expected, rtol=1e-9, atol=1e-9)
    for tensor, copy in zip(tensors, copies):
        assert torch.equal(tensor, copy)


def test_float32_tensor_keeps_float32():
    result = compute_rdm(torch.from_numpy(FEATURES).float())
    assert result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), compute_rdm(FEATURES), atol=1e-5)


def test_tensor_that_requires_grad_is_accepted_and_not_changed():
    tensor = torch.from_numpy(FEATURES).requires_grad_()
    result = center_features(tensor)
    assert not result.requires_grad and tensor.grad is None
    np.testing.assert_allclose(result.numpy(), center_features(FEATURES), atol=1e-12)


def test_read_only_numpy_array_is_accepted():
    frozen = FEATURES.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(compute_rdm(frozen), compute_rdm(FEATURES))


@pytest.mark.parametrize("bad, error, message", [
    (FEATURES.astype(object), TypeError, "features must hold numbers, got a numpy array of dtype object"),
    (FEATURES.astype(complex), TypeError, "features must be real-valued"),
    ("features.npy", TypeError, r"features must be an array \(numpy, torch, .*got str"),
])
def test_wrong_kinds_are_named(bad, error, message):
    with pytest.raises(error, match=message):
        center_features(bad)


def _memory_map(array, folder):
    path = folder / f"array{len(list(folder.iterdir()))}.npy"
    np.save(path, array)
    return np.load(path, mmap_mode="r")


def _disk_array(array, folder):
    import h5py

    from torchlens_like.extract.disk_arrays import DiskArray

    file = h5py.File(folder / f"array{len(list(folder.iterdir()))}.h5", "w")
    file["features"] = array
    return DiskArray(file["features"])


class ArrayProtocolOnly:
    """An array-like that numpy knows only through ``__array__`` (like xarray, pandas, zarr)."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)


ARRAY_LIKES = {"memory map": _memory_map, "DiskArray (hdf5)": _disk_array,
               "__array__ only": lambda array, folder: ArrayProtocolOnly(array),
               "nested lists": lambda array, folder: array.tolist()}


@pytest.mark.parametrize("kind", sorted(ARRAY_LIKES))
@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_array_like_is_accepted_without_wrapping(name, kind, tmp_path):
    function, inputs = CALLS[name]
    converted = [ARRAY_LIKES[kind](array, tmp_path) for array in inputs]
    result, expected = function(*converted), function(*inputs)
    if isinstance(expected, float):
        assert result == pytest.approx(expected, rel=1e-12)
    else:
        assert isinstance(result, np.ndarray)
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


def test_finite_values_whose_sum_overflows_pass_and_nan_rows_are_named():
    from torchlens_like.analysis.backend import check_finite

    huge = torch.full((4, 3), 3e38, dtype=torch.float32)
    assert not torch.isfinite(huge.sum())
    check_finite(huge, "features")
    huge[2, 1] = float("nan")
    huge[3, 0] = float("-inf")
    with pytest.raises(ValueError, match="features contains NaN or infinite values at stimulus \\[2, 3\\] \\(2 in all\\)"):
        check_finite(huge, "features")
