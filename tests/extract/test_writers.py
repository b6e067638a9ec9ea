"""Every storage format read back with its own library, against forward hooks."""

import h5py
import numpy as np
import pytest
import scipy.io
import torch
import zarr

import torchlens_like as tll
from torchlens_like.extract import ManifestMismatch

from stimulus_images import SMALL_TRANSFORM, transformed

READERS = {
    "npy": lambda out, stem: np.load(out / f"{stem}.npy"),
    "hdf5": lambda out, stem: h5py.File(out / "features.h5", "r")[stem][:],
    "zarr": lambda out, stem: zarr.open_group(str(out / "features.zarr"), mode="r")[stem][:],
    "mat": lambda out, stem: scipy.io.loadmat(out / f"{stem}.mat")["features"],
    "pt": lambda out, stem: torch.load(out / f"{stem}.pt", weights_only=True).numpy(),
    "txt": lambda out, stem: np.loadtxt(out / f"{stem}.txt", ndmin=2, dtype=np.float32),
}


@pytest.mark.parametrize("fmt", list(READERS))
def test_each_format_round_trips_through_its_own_reader(fmt, tmp_path, image_root, small_model):
    out = tmp_path / fmt
    feats = tll.extract_features(small_model, str(image_root), ["layer3", "fc"], batch_size=3,
                                 output_dir=str(out), format=fmt, progress=False, num_workers=0)
    seen = {}
    for name in ("layer3", "fc"):
        small_model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o.detach().numpy()))
    with torch.no_grad():
        small_model(transformed(sorted(image_root.rglob("img*"))))
    for name, expected in seen.items():
        on_disk = READERS[fmt](out, name)
        if fmt == "txt":
            expected = expected.reshape(len(expected), -1)
        assert on_disk.shape == expected.shape
        np.testing.assert_allclose(on_disk, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(feats[name]).reshape(on_disk.shape), on_disk)
    assert not (out / "partial").exists()
    reloaded = tll.load_features(str(out))
    assert reloaded.stimulus_ids == feats.stimulus_ids
    assert reloaded.layer_labels == feats.layer_labels
    ids = np.loadtxt(out / "stimuli.csv", delimiter=",", skiprows=1, dtype=str)
    assert ids[:, 1].tolist() == [str(p.relative_to(image_root))
                                  for p in sorted(image_root.rglob("img*"))]


def test_finished_output_is_a_no_op_and_other_arguments_are_refused(tmp_path, image_root,
                                                                    small_model):
    out = str(tmp_path / "out")
    first = tll.extract_features(small_model, str(image_root), ["layer4"], output_dir=out,
                                 progress=False, num_workers=0)
    calls = []
    hook = small_model.register_forward_hook(lambda *a: calls.append(1))
    again = tll.extract_features(small_model, str(image_root), ["layer4"], output_dir=out,
                                 progress=False, num_workers=0)
    hook.remove()
    assert calls == []
    np.testing.assert_array_equal(first["layer4"], again["layer4"])
    with pytest.raises(ManifestMismatch, match=r"layers=\['layer4'\], not \['layer3'\]"):
        tll.extract_features(small_model, str(image_root), ["layer3"], output_dir=out,
                             progress=False, num_workers=0)
    other, _ = tll.load_model("resnet18", source="torchvision", seed=1)
    with pytest.raises(ManifestMismatch, match="model_checksum"):
        tll.extract_features(other, str(image_root), ["layer4"], output_dir=out,
                             progress=False, num_workers=0)


def test_memory_groups_write_the_same_features(tmp_path, image_root, small_model):
    layers = ["layer1", "layer2", "layer3", "avgpool"]
    whole = tll.extract_features(small_model, str(image_root), layers, progress=False,
                                 num_workers=0)
    grouped = tll.extract_features(small_model, str(image_root), layers, progress=False,
                                   num_workers=0, output_dir=str(tmp_path / "g"),
                                   memory_limit="150KB", format="hdf5")
    assert len({tuple(r[:2]) for r in grouped.manifest["progress"].values()
                for r in r}) == 1
    for key in layers:
        np.testing.assert_array_equal(grouped[key][:], whole[key])


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.mark.parametrize("fmt", list(READERS))
def test_identical_runs_a_few_seconds_apart_write_byte_identical_files(fmt, tmp_path, image_root):
    import time

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.LazyLinear(3))
    model(torch.rand(1, 3, 32, 32))
    model.eval()
    runs = []
    for run in range(2):
        if run:
            time.sleep(2.1)  # past any clock with a resolution of one or two seconds
        out = tmp_path / f"run{run}"
        tll.extract_features(model, tll.ImageFolder(image_root, SMALL_TRANSFORM), ["1", "3"],
                             batch_size=3, output_dir=out, format=fmt, progress=False,
                             num_workers=0)
        runs.append(_files(out))
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) >= 3
    differing = [str(name) for name in runs[0] if runs[0][name] != runs[1][name]]
    assert not differing
    reread = READERS[fmt](tmp_path / "run0", "3")
    assert reread.shape == (len(list(image_root.rglob("img*"))), 3)
