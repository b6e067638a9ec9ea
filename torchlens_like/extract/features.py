"""``Features``: what an extraction returns, and ``load_features`` to get it back from disk."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .manifest import Manifest
from .writers import get_writer

STIMULI_FILE = "stimuli.csv"


class Features(Mapping):
    """Layer key -> array ``(n_stimuli, ...)``, in stimulus order.

    What each array is depends on where the features are (every kind is
    indexed like a numpy array and becomes one with ``np.asarray``):

    * no output folder: numpy arrays in memory;
    * ``npy``: read-only numpy memory maps (pages read on access);
    * ``hdf5`` / ``zarr``: :class:`~.disk_arrays.DiskArray` over the h5py
      dataset / zarr array (``.stored``), read on access; any selection of
      stimuli (slices, integer lists in any order, boolean masks) works;
    * ``mat``, ``pt``, ``txt``: numpy arrays read into memory.

    Attributes
    ----------
    stimulus_ids : list of str
        Row ``i`` of every array is stimulus ``stimulus_ids[i]`` (a path
        relative to the image folder, or an index).
    stimulus_labels : list of str
        Class subfolder of each stimulus (``""`` when none).
    layer_labels : dict
        Layer key -> the op label it resolved to (``"layer3"`` -> ``"relu_29_105"``).
    manifest : dict
        Everything recorded about the extraction (see :mod:`.manifest`).
    skipped : dict
        Stimulus index -> why it was skipped (rows filled with NaN).
    validation : list of dict
        The checks of the extraction's passes (see
        :func:`~torchlens_like.extract_features`): per check the stimuli,
        layers, which pass ran, the result and the library version.
    """

    def __init__(self, arrays, stimulus_ids, stimulus_labels, layer_labels, manifest, skipped):
        self._arrays = dict(arrays)
        self.stimulus_ids = list(stimulus_ids)
        self.stimulus_labels = list(stimulus_labels)
        self.layer_labels = dict(layer_labels)
        self.manifest = manifest
        self.skipped = dict(skipped)

    @property
    def validation(self):
        return list(self.manifest.get("validation", []))

    def __getitem__(self, key):
        try:
            return self._arrays[str(key)]
        except KeyError:
            raise KeyError(f"no features for layer {key!r}; extracted: "
                           f"{', '.join(self._arrays)}") from None

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def __repr__(self):
        rows = ", ".join(f"{k} ({self.layer_labels.get(k, k)}): {tuple(v.shape)}"
                         for k, v in self._arrays.items())
        return f"Features({len(self.stimulus_ids)} stimuli; {rows})"


def write_stimuli_table(directory, ids, labels):
    """``stimuli.csv`` (index, path, label), written atomically; returns its text."""
    from .writers import replace_atomically

    text = pd.DataFrame({"index": range(len(ids)), "path": ids, "label": labels}).to_csv(
        index=False)
    path = os.path.join(directory, STIMULI_FILE)

    def write(tmp):
        with open(tmp, "w") as file:
            file.write(text)

    replace_atomically(path, write)
    return text


def read_stimuli_table(directory):
    """``stimuli.csv`` as a DataFrame (ids and labels as strings)."""
    return pd.read_csv(os.path.join(directory, STIMULI_FILE), dtype={"path": str, "label": str},
                       keep_default_na=False)


class DamagedFeaturesError(ValueError):
    """Rows of a finished output no longer match the checksums its manifest recorded."""


def load_features(output_dir, verify=True):
    """The :class:`Features` of a finished extraction in ``output_dir``.

    Parameters
    ----------
    output_dir : str
        A folder ``extract_features(..., output_dir=...)`` wrote.
    verify : bool
        Check every batch's rows against the CRC-32 the manifest recorded
        when they were written (one read of every file); damaged rows raise
        :class:`DamagedFeaturesError` naming the layer and rows.

    Returns
    -------
    Features
        Layer key -> ``(n_stimuli, ...)`` array, in stimulus order: a memory
        map for ``npy``, a :class:`~.disk_arrays.DiskArray` (read on access)
        for ``hdf5`` and ``zarr``, a numpy array for ``mat``, ``pt`` and
        ``txt``. Index any of them like numpy (``feats["layer3"][[5, 2]]``)
        or load one whole with ``np.asarray``.

    Examples
    --------
    >>> import tempfile, torch, torchlens_like as tll
    >>> data = torch.utils.data.TensorDataset(torch.rand(4, 3))
    >>> out = tempfile.mkdtemp()
    >>> _ = tll.extract_features(torch.nn.Linear(3, 2), data, [-2], output_dir=out, progress=False)
    >>> tll.load_features(out)["-2"].shape
    (4, 2)
    """
    manifest = Manifest.load(output_dir)
    if not manifest.complete:
        done = min((manifest.done(k) for k in manifest.layers), default=0)
        raise RuntimeError(f"the extraction in {output_dir!r} is not finished ({done} of "
                           f"{manifest.n_stimuli} stimuli in every layer); run extract_features "
                           "again with the same arguments to finish it")
    features = features_from_manifest(manifest)
    if verify:
        damage = damaged_rows(manifest, features)
        if damage:
            rows = "; ".join(f"layer {key!r}: rows " + ", ".join(f"{a}-{b - 1}" for a, b in found)
                             for key, found in damage.items())
            raise DamagedFeaturesError(
                f"the features in {output_dir!r} were changed after they were written ({rows}): "
                "their bytes no longer match the checksums in manifest.json. Run "
                "extract_features again with the same arguments to extract those rows again, "
                "or pass verify=False to read them as they are.")
    return features


def damaged_rows(manifest, features):
    """``{layer key: [(start, stop), ...]}`` of the batches whose rows no longer match their CRC."""
    damage = {}
    for key in manifest.layers:
        array = features[key]
        found = manifest.damaged(key, lambda a, b, array=array: np.asarray(array[a:b]))
        if found:
            damage[key] = found
    return damage


def features_from_manifest(manifest):
    """Open the arrays a finished manifest describes."""
    layouts = {key: (tuple(info["shape"]), info["dtype"]) for key, info in manifest.layers.items()}
    writer = get_writer(manifest.identity["format"])(manifest.directory, layouts,
                                                     manifest.n_stimuli)
    table = read_stimuli_table(manifest.directory)
    return Features({key: writer.read(key) for key in layouts}, table["path"], table["label"],
                    {key: info["label"] for key, info in manifest.layers.items()},
                    manifest.to_dict(), manifest.skipped)
