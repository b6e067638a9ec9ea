"""Brain (or behavioural) benchmark data: responses, regions of interest, stimuli.

Design decisions
----------------
* Responses are stored as DeepJuice's ``response_data`` is: neuroids (voxels,
  neurons, electrodes) in rows, stimuli in columns.  Neuroid metadata (region,
  subject) and stimulus metadata are pandas DataFrames aligned to those axes.
* Regions may overlap (``EVC`` and ``V1`` share voxels): they are given either
  as one label per neuroid or as a mapping from region name to neuroid
  indices or boolean masks.  Every (region, subject) pair with at least one
  neuroid is a scoring target.
* File loading goes through the registry :data:`LOADERS` (file suffix ->
  reader), one small function per format: ``.npy``, ``.h5``/``.hdf5``,
  ``.mat`` and ``.csv``.
* :meth:`Benchmark.synthetic` plants known structure: every layer mixes a
  latent factor set of its own with one shared by all layers, and each region
  responds linearly to one layer's own factors, so the layer that must win each
  region is known.  With ``n_repeats`` it also plants a known noise level:
  single-trial responses are the signal plus independent noise, the responses
  their average, and each neuroid's true ncsnr (signal sd over these stimuli /
  noise sd) is kept in ``neuroid_data["planted_ncsnr"]``.
* Repeated presentations (``repeats``, shape ``(n_repeats, n_stimuli,
  n_neuroids)``: trials of the same stimulus for the same neuroid, not
  subjects, which stay a per-neuroid label) are optional; they are what the
  encoding noise ceiling (:func:`~torchlens_like.analysis.ncsnr`) is computed
  from.  ``responses`` are expected to be their average; a benchmark built
  from repeats alone uses that average.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import warnings

import h5py
import numpy as np
import pandas as pd
import scipy.io

from .backend import as_tensor, check_finite, lookup
from .rdm import compute_rdm
from .rdms import RDMs


def _single_key(keys: Sequence[str], key: str | None, path: Path, what: str) -> str:
    if key is not None:
        if key not in keys:
            raise ValueError(f"{path} has no {what} {key!r}; it has: {', '.join(keys)}")
        return key
    if len(keys) != 1:
        raise ValueError(f"{path} holds {len(keys)} {what}s ({', '.join(keys)}); pass key= to pick one")
    return keys[0]


def _load_npy(path: Path, key: str | None):
    return np.load(path, allow_pickle=False)


def _load_h5(path: Path, key: str | None):
    with h5py.File(path, "r") as file:
        names: list[str] = []
        file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        return np.asarray(file[_single_key(names, key, path, "dataset")])


def _load_mat(path: Path, key: str | None):
    contents = scipy.io.loadmat(path)
    names = [name for name in contents if not name.startswith("__")]
    return np.asarray(contents[_single_key(names, key, path, "variable")])


def _load_csv(path: Path, key: str | None):
    return pd.read_csv(path, index_col=0)


LOADERS = {".npy": _load_npy, ".h5": _load_h5, ".hdf5": _load_h5, ".mat": _load_mat, ".csv": _load_csv}
"""Response file readers by suffix: ``reader(path, key) -> array or DataFrame``."""


def _table(data, argument: str) -> pd.DataFrame | None:
    if data is None or isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, Path)):
        return pd.read_csv(data)
    raise TypeError(f"{argument} must be a pandas DataFrame or the path of a csv file, got {type(data).__name__}")


class Benchmark:
    """Responses of neuroids to stimuli, with region and subject labels.

    Parameters
    ----------
    responses : numpy.ndarray, torch.Tensor or pandas.DataFrame, shape (n_neuroids, n_stimuli)
        One row per neuroid (voxel, neuron, ...), one column per stimulus.  A
        DataFrame's index names the neuroids and its columns the stimuli.
    regions : sequence or dict, optional
        One region label per neuroid, or ``{region: indices or boolean mask}``
        (regions may overlap).  Default: one region ``"all"``.
    subjects : sequence, optional
        One subject id per neuroid.  Default: subject 1 for every neuroid.
    stimulus_data : pandas.DataFrame, optional
        One row per stimulus (file names, captions, categories, ...).
    repeats : numpy.ndarray or torch.Tensor, shape (n_repeats, n_stimuli, n_neuroids), optional
        Single-trial responses to repeated presentations of each stimulus, for
        noise ceilings.  ``responses`` may then be None: the trial average is
        used.

    Attributes
    ----------
    responses : numpy.ndarray, shape (n_neuroids, n_stimuli), float64
    neuroid_data : pandas.DataFrame
        Columns ``subj_id`` and, for label-per-neuroid regions, ``region``.
    stimulus_data : pandas.DataFrame
    region_indices : dict of str to numpy.ndarray
    repeats : numpy.ndarray or None, shape (n_repeats, n_stimuli, n_neuroids), float64
    rdms : RDMs or None
        Set by :meth:`build_rdms`.

    Examples
    --------
    >>> import numpy as np
    >>> responses = np.random.default_rng(0).normal(size=(6, 10))
    >>> benchmark = Benchmark(responses, regions=["V1"] * 3 + ["IT"] * 3)
    >>> benchmark.targets()
    [('V1', 1), ('IT', 1)]
    >>> benchmark.build_rdms().labels()
    ['V1/1', 'IT/1']
    """

    def __init__(self, responses, regions=None, subjects=None, stimulus_data=None, repeats=None):
        trials = None if repeats is None else self._trials(repeats)
        if responses is None:
            if trials is None:
                raise ValueError("responses is None and no repeats were given; pass the (n_neuroids, n_stimuli) "
                                 "responses, or repeats= to average")
            responses = trials.mean(axis=0).T
        if isinstance(responses, pd.DataFrame):
            neuroid_ids, stimulus_ids = list(responses.index), list(responses.columns)
            responses = responses.to_numpy(dtype=np.float64)
        else:
            neuroid_ids = stimulus_ids = None
        tensor = as_tensor(responses, "responses")
        if tensor.ndim != 2:
            raise ValueError(f"responses must have shape (n_neuroids, n_stimuli), got {tuple(tensor.shape)}")
        check_finite(tensor.T, "responses", "stimulus")
        self.responses = tensor.cpu().double().numpy().copy()
        n_neuroids, n_stimuli = self.responses.shape
        self.neuroid_data = pd.DataFrame(index=neuroid_ids if neuroid_ids is not None else range(n_neuroids))
        self.neuroid_data["subj_id"] = self._per_neuroid(subjects if subjects is not None else [1] * n_neuroids,
                                                         "subjects")
        self.region_indices = self._regions(regions)
        if stimulus_data is None:
            stimulus_data = pd.DataFrame(index=stimulus_ids if stimulus_ids is not None else range(n_stimuli))
        if len(stimulus_data) != n_stimuli:
            raise ValueError(
                f"stimulus_data has {len(stimulus_data)} rows but responses has {n_stimuli} stimuli (columns); "
                "give one row per stimulus, in the column order of responses"
            )
        self.stimulus_data = stimulus_data.copy()
        self.repeats = trials
        if trials is not None:
            self._check_repeats(trials)
        self.rdms: RDMs | None = None

    @staticmethod
    def _trials(repeats) -> np.ndarray:
        tensor = as_tensor(repeats, "repeats")
        if tensor.ndim != 3:
            raise ValueError(f"repeats must have shape (n_repeats, n_stimuli, n_neuroids), got {tuple(tensor.shape)}")
        check_finite(tensor.transpose(0, 1), "repeats", "stimulus")
        return tensor.cpu().double().numpy().copy()

    def _check_repeats(self, trials: np.ndarray) -> None:
        n_neuroids, n_stimuli = self.responses.shape
        if trials.shape[1:] != (n_stimuli, n_neuroids) or trials.shape[0] < 2:
            raise ValueError(
                f"repeats has shape {trials.shape}, but responses has {n_stimuli} stimuli and {n_neuroids} neuroids; "
                f"pass repeats of shape (n_repeats >= 2, {n_stimuli}, {n_neuroids})"
            )
        average = trials.mean(axis=0).T
        if not np.allclose(self.responses, average, rtol=1e-6, atol=1e-9 * np.abs(average).max()):
            warnings.warn(
                "responses are not the average of repeats; the encoding noise ceiling is that of the average of "
                f"{trials.shape[0]} repeats, so pass responses=None to use that average, or repeats of the same "
                "preprocessing as responses",
                stacklevel=3,
            )

    def _per_neuroid(self, values, argument: str) -> list:
        values = list(values)
        if len(values) != self.responses.shape[0]:
            raise ValueError(
                f"{argument} has {len(values)} entries but responses has {self.responses.shape[0]} neuroids (rows); "
                "give one entry per neuroid"
            )
        return values

    def _regions(self, regions) -> dict[str, np.ndarray]:
        n_neuroids = self.responses.shape[0]
        if regions is None:
            return {"all": np.arange(n_neuroids)}
        if isinstance(regions, Mapping):
            indices = {}
            for name, members in regions.items():
                members = np.asarray(members)
                if members.dtype == bool:
                    if members.shape != (n_neuroids,):
                        raise ValueError(f"regions[{name!r}] is a mask of shape {members.shape}, not ({n_neuroids},)")
                    members = np.flatnonzero(members)
                if members.size == 0 or members.min() < 0 or members.max() >= n_neuroids:
                    raise ValueError(f"regions[{name!r}] must list neuroid rows from 0 to {n_neuroids - 1}")
                indices[str(name)] = members.astype(np.int64)
            return indices
        labels = self._per_neuroid(regions, "regions")
        self.neuroid_data["region"] = labels
        return {str(name): np.flatnonzero(np.asarray(labels, dtype=object) == name) for name in dict.fromkeys(labels)}

    @property
    def n_stimuli(self) -> int:
        """Number of stimuli (columns of ``responses``).

        Examples
        --------
        >>> import numpy as np
        >>> Benchmark(np.ones((4, 3))).n_stimuli
        3
        """
        return self.responses.shape[1]

    def targets(self) -> list[tuple[str, object]]:
        """The (region, subject) pairs that have neuroids, in order.

        Examples
        --------
        >>> import numpy as np
        >>> Benchmark(np.ones((4, 3)), regions=["A", "A", "B", "B"], subjects=[1, 2, 1, 1]).targets()
        [('A', 1), ('A', 2), ('B', 1)]
        """
        subjects = self.neuroid_data["subj_id"].to_numpy()
        return [
            (region, subject)
            for region, members in self.region_indices.items()
            for subject in dict.fromkeys(subjects[members].tolist())
        ]

    def neuroids(self, region: str, subject) -> np.ndarray:
        """Row indices of the neuroids of ``region`` in ``subject``.

        Examples
        --------
        >>> import numpy as np
        >>> Benchmark(np.ones((4, 3)), regions=["A", "A", "B", "B"], subjects=[1, 2, 1, 1]).neuroids("A", 2)
        array([1])
        """
        members = lookup(self.region_indices, region, "region")
        chosen = members[self.neuroid_data["subj_id"].to_numpy()[members] == subject]
        if chosen.size == 0:
            raise ValueError(f"region {region!r} has no neuroids of subject {subject!r}; see targets()")
        return chosen

    def build_rdms(self, method: str = "correlation") -> RDMs:
        """Compute one RDM over all stimuli per (region, subject); also kept in ``self.rdms``.

        Parameters
        ----------
        method : str
            A dissimilarity measure of :func:`~torchlens_like.analysis.compute_rdm`.

        Returns
        -------
        RDMs
            Descriptors ``region`` and ``subj_id``; stimulus descriptor
            ``stimulus`` from the index of ``stimulus_data``.

        Examples
        --------
        >>> import numpy as np
        >>> Benchmark(np.random.default_rng(0).normal(size=(5, 4))).build_rdms().n_stimuli
        4
        """
        targets = self.targets()
        vectors = [
            compute_rdm(self.responses[self.neuroids(region, subject)].T, method, condensed=True)
            for region, subject in targets
        ]
        self.rdms = RDMs(
            np.stack(vectors),
            measure=method,
            descriptors={"region": [r for r, _ in targets], "subj_id": [s for _, s in targets]},
            stimulus_descriptors={"stimulus": list(self.stimulus_data.index)},
        )
        return self.rdms

    @classmethod
    def from_files(cls, responses, neuroid_data=None, stimulus_data=None, *, key: str | None = None,
                   region_column: str = "region", subject_column: str = "subj_id") -> "Benchmark":
        """Load responses from a ``.npy``, ``.h5``/``.hdf5``, ``.mat`` or ``.csv`` file.

        Parameters
        ----------
        responses : str or pathlib.Path
            File with a (n_neuroids, n_stimuli) array (a csv: neuroid ids in
            the first column, stimulus ids in the header).
        neuroid_data : str, pathlib.Path or pandas.DataFrame, optional
            One row per neuroid, with columns ``region_column`` and optionally
            ``subject_column``.
        stimulus_data : str, pathlib.Path or pandas.DataFrame, optional
            One row per stimulus.
        key : str, optional
            Dataset (h5) or variable (mat) to read when the file holds several.
        region_column, subject_column : str
            Column names in ``neuroid_data``.

        Returns
        -------
        Benchmark

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     np.save(f"{folder}/responses.npy", np.ones((3, 4)))
        ...     Benchmark.from_files(f"{folder}/responses.npy").responses.shape
        (3, 4)
        """
        path = Path(responses)
        loader = lookup(LOADERS, path.suffix.lower(), "file suffix")
        if not path.is_file():
            raise ValueError(f"responses file {str(path)!r} does not exist; check the path")
        data = loader(path, key)
        table = _table(neuroid_data, "neuroid_data")
        regions = subjects = None
        if table is not None:
            if region_column not in table.columns:
                raise ValueError(
                    f"neuroid_data has no column {region_column!r}; its columns are: "
                    f"{', '.join(map(str, table.columns))}; pass region_column="
                )
            regions = table[region_column].tolist()
            if subject_column in table.columns:
                subjects = table[subject_column].tolist()
        return cls(data, regions=regions, subjects=subjects, stimulus_data=_table(stimulus_data, "stimulus_data"))

    @classmethod
    def synthetic(cls, n_stimuli: int = 120, *,
                  layer_shapes: Sequence[tuple[int, ...]] = ((8, 4, 4), (96,), (64,), (32,)),
                  region_layers: Mapping[str, int] | None = None, n_subjects: int = 2, neuroids_per_region: int = 30,
                  n_factors: int = 8, shared: float = 0.3, noise: float = 0.5, n_repeats: int | None = None,
                  seed: int = 0):
        """A benchmark and matching feature maps with planted layer-to-region structure.

        Each layer's features are a random linear map of its latent factors,
        ``sqrt(shared) * S + sqrt(1 - shared) * L_k`` (``S`` common to all
        layers, ``L_k`` its own).  Region ``r`` responds linearly to the latent
        factors of layer ``region_layers[r]`` plus Gaussian noise of standard
        deviation ``noise`` (relative to unit signal variance).

        Parameters
        ----------
        n_stimuli : int
            Number of stimuli.
        layer_shapes : sequence of tuple
            Per-stimulus shape of each layer's feature map, in depth order.
        region_layers : dict of str to int, optional
            Region name -> index into ``layer_shapes`` of the layer it follows;
            default ``{"EVC": 0, "OTC": len(layer_shapes) - 2}``.
        n_subjects : int
            Subjects, each with their own neuroids of every region.
        neuroids_per_region : int
            Neuroids per region and subject.
        n_factors : int
            Latent factors per set.
        shared : float
            Fraction of latent variance common to all layers, in [0, 1).
        noise : float
            Noise standard deviation of the responses (of each trial, with
            ``n_repeats``).
        n_repeats : int, optional
            Plant single trials: ``n_repeats`` noisy repeats per stimulus,
            kept in ``benchmark.repeats``; the responses are their average, and
            ``neuroid_data["planted_ncsnr"]`` holds each neuroid's true
            ncsnr, ``std(signal over stimuli) / noise``.  With 500 stimuli and
            4 repeats, :func:`~torchlens_like.analysis.ncsnr` recovers it
            within 10% (relative) where it is above 0.75, and the noise ceiling
            it implies within 0.03 (absolute).
        seed : int
            Random seed.

        Returns
        -------
        benchmark : Benchmark
        feature_maps : dict of str to numpy.ndarray
            ``{"layer1": (n_stimuli, *layer_shapes[0]), ...}`` in depth order.

        Examples
        --------
        >>> benchmark, feature_maps = Benchmark.synthetic(n_stimuli=50, seed=1)
        >>> benchmark.responses.shape, list(feature_maps)
        ((120, 50), ['layer1', 'layer2', 'layer3', 'layer4'])
        """
        if region_layers is None:
            region_layers = {"EVC": 0, "OTC": len(layer_shapes) - 2}
        if not 0 <= shared < 1:
            raise ValueError(f"shared must be in [0, 1), got {shared!r}")
        for region, layer in region_layers.items():
            if not 0 <= layer < len(layer_shapes):
                raise ValueError(f"region_layers[{region!r}] = {layer} is not a layer index below {len(layer_shapes)}")
        rng = np.random.default_rng(seed)
        common = rng.standard_normal((n_stimuli, n_factors))
        latents = [
            np.sqrt(shared) * common + np.sqrt(1 - shared) * rng.standard_normal((n_stimuli, n_factors))
            for _ in layer_shapes
        ]
        feature_maps = {
            f"layer{k + 1}": (latents[k] @ rng.standard_normal((n_factors, int(np.prod(shape))))).reshape(
                n_stimuli, *shape
            )
            for k, shape in enumerate(layer_shapes)
        }
        if n_repeats is not None and (not isinstance(n_repeats, int) or n_repeats < 2 or not noise > 0):
            raise ValueError(f"n_repeats must be an integer of at least 2, with noise > 0; got n_repeats={n_repeats!r}, "
                             f"noise={noise!r}")
        blocks, signals, regions, subjects = [], [], [], []
        for subject in range(1, n_subjects + 1):
            for region, layer in region_layers.items():
                weights = rng.standard_normal((n_factors, neuroids_per_region)) / np.sqrt(n_factors)
                signal = latents[layer] @ weights
                shape = signal.shape if n_repeats is None else (n_repeats, *signal.shape)
                blocks.append(signal + noise * rng.standard_normal(shape))
                signals.append(signal)
                regions += [region] * neuroids_per_region
                subjects += [subject] * neuroids_per_region
        stimulus_data = pd.DataFrame({"stimulus": [f"stimulus_{i:04d}" for i in range(n_stimuli)]})
        if n_repeats is None:
            benchmark = cls(np.concatenate(blocks, axis=1).T, regions=regions, subjects=subjects,
                            stimulus_data=stimulus_data)
        else:
            benchmark = cls(None, regions=regions, subjects=subjects, stimulus_data=stimulus_data,
                            repeats=np.concatenate(blocks, axis=2))
            benchmark.neuroid_data["planted_ncsnr"] = np.concatenate(signals, axis=1).std(axis=0, ddof=1) / noise
        return benchmark, feature_maps

    def __repr__(self) -> str:
        regions = ", ".join(f"{name}: {len(rows)}" for name, rows in self.region_indices.items())
        return (
            f"Benchmark({self.responses.shape[0]} neuroids x {self.n_stimuli} stimuli; "
            f"subjects {list(dict.fromkeys(self.neuroid_data['subj_id']))}; regions {{{regions}}})"
        )
