"""Features in hdf5 and zarr files index like numpy, checked against h5py and zarr read directly."""

import h5py
import numpy as np
import pytest
import torch
import zarr

import torchlens_like as tll

DIRECT = {
    "npy": lambda out: np.load(out / "0.npy"),
    "hdf5": lambda out: h5py.File(out / "features.h5", "r")["0"][:],
    "zarr": lambda out: zarr.open_group(str(out / "features.zarr"), mode="r")["0"][:],
    "mat": lambda out: __import__("scipy.io").io.loadmat(out / "0.mat")["features"],
}
SELECTIONS = {
    "one stimulus": 3,
    "last stimulus": -1,
    "slice": slice(2, 7),
    "strided slice": slice(None, None, 3),
    "increasing list": [0, 2, 5],
    "any order, repeated": [6, 1, 6, -2],
    "boolean mask": np.arange(9) % 2 == 0,
    "list and a feature": ([5, 0], 2),
    "list and feature list": ([5, 0], [1, 3]),
    "2-d index array": np.array([[8, 0], [3, 3]]),
    "empty list": np.array([], dtype=int),
    "ellipsis": (Ellipsis, 1),
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5)).eval()
    data = torch.utils.data.TensorDataset(torch.rand(9, 3))
    found = {}
    for fmt in DIRECT:
        out = tmp_path_factory.mktemp(fmt)
        tll.extract_features(model, data, ["0"], batch_size=4, output_dir=str(out), format=fmt,
                             progress=False, num_workers=0)
        found[fmt] = (tll.load_features(str(out))["0"], DIRECT[fmt](out))
    return found


@pytest.mark.parametrize("fmt", list(DIRECT))
@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_indexing_matches_numpy_on_the_file_read_directly(outputs, fmt, selection):
    features, direct = outputs[fmt]
    index = SELECTIONS[selection]
    np.testing.assert_array_equal(features[index], direct[index])
    assert np.asarray(features[index]).dtype == direct.dtype


@pytest.mark.parametrize("fmt", list(DIRECT))
def test_whole_array_shape_and_length(outputs, fmt):
    features, direct = outputs[fmt]
    np.testing.assert_array_equal(np.asarray(features), direct)
    assert (features.shape, features.dtype, len(features)) == (direct.shape, direct.dtype, 9)


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_a_bad_selection_says_why(outputs, fmt):
    features, _ = outputs[fmt]
    with pytest.raises(IndexError, match="out of range for 9 stimuli"):
        features[[0, 9]]
    with pytest.raises(IndexError, match="needs 9 values"):
        features[np.ones(4, bool)]
