"""Alignment procedures that score feature maps against a benchmark (DeepJuice's cRSA, eReg, eRSA).

Design decisions
----------------
* The stimuli are split once into train and test sets, shared by every
  feature map, region, subject and procedure.
* The procedures, as the DeepJuice tutorial defines them:

  - ``cRSA`` (classical RSA): correlation-distance RDM of the feature map vs.
    the region's RDM, compared with Pearson r, on the train stimuli and on the
    test stimuli.  Nothing is fitted.
  - ``eReg`` (encoding regression): the feature map, sparse-randomly projected
    to the Johnson-Lindenstrauss dimension when it is wider than that, is
    mapped to every neuroid by :class:`~torchlens_like.analysis.RidgeGCV`
    (alpha per neuroid by leave-one-out on the train stimuli).  The score is
    the mean over the region's neuroids of Pearson r between predicted and
    measured responses: leave-one-out predictions on the train stimuli,
    ordinary predictions on the test stimuli.
  - ``eRSA`` (encoding RSA, a.k.a. feature-reweighted RSA): the RDM of the
    region's predicted responses from the same fit vs. the region's RDM.

* Work shared between procedures is done once per feature map and reused
  (:class:`_LayerScores`): the model RDM once for all regions, one ridge fit
  onto all neuroids of all subjects at once (the alpha is chosen per neuroid,
  so this equals one fit per region).
* Procedures live in the registry :data:`PROCEDURES` (name -> function of a
  layer, a target and a split name), so adding one is adding an entry.
* With ``ceiling=True`` every score is also given as a fraction of a noise
  ceiling, the best score the data allow for that procedure (registry
  :data:`CEILINGS`, computed once per region or target and split):

  - ``cRSA`` and ``eRSA``: the upper bound of the RDM noise ceiling across the
    region's subjects (:func:`~torchlens_like.analysis.rdm_noise_ceiling` with
    the scoring comparison), for the scored subject: the correlation of its
    RDM with the pool of all subjects' RDMs over the split's stimuli.
  - ``eReg``: from the benchmark's repeats, the mean over the target's
    neuroids of ``sqrt(ncsnr_noise_ceiling(ncsnr, n_repeats))``, the Pearson
    r a perfect model reaches with the average of the repeats, over the
    split's stimuli.

* RDMs over a subset of stimuli are taken from the full RDMs by index
  (:func:`~torchlens_like.analysis.rdm.condensed_positions`), which is exact
  for these measures because each dissimilarity depends only on its two
  stimuli.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .backend import as_stimulus_matrix, check_same_stimuli, lookup
from .benchmark import Benchmark
from .ceiling import ncsnr, ncsnr_noise_ceiling, subject_noise_ceilings
from .compare import COMPARISONS, as_condensed
from .projection import johnson_lindenstrauss_components, sparse_random_projection
from .rdm import compute_rdm, condensed_positions
from .rdms import RDMs
from .ridge import DEFAULT_ALPHAS, RidgeGCV, pearson_r

SPLITS = ("train", "test")


@dataclass(frozen=True)
class ScoringOptions:
    """How :func:`score_feature_maps` splits, fits and compares, grouped in one value.

    Attributes
    ----------
    splits : dict, optional
        ``{"train": indices, "test": indices}``; default: a random split with
        ``test_size`` of the stimuli held out, seeded by ``seed``.
    test_size : float
        Fraction of stimuli held out when ``splits`` is not given.
    seed : int
        Seed of the split and of the random projection.
    alphas : sequence of float
        Ridge penalties for eReg and eRSA.
    rdm_method : str
        Dissimilarity measure for all RDMs (DeepJuice: correlation distance).
    comparison : str
        RDM comparison (DeepJuice: Pearson), checked against the registry here.
    eps : float
        Johnson-Lindenstrauss distortion for the projection before ridge.
    ceiling : bool
        Add the columns ``ceiling`` (the procedure's noise ceiling) and
        ``fraction_of_ceiling`` (score / ceiling).

    Examples
    --------
    >>> ScoringOptions().replace(seed=3).seed
    3
    """

    splits: Mapping | None = None
    test_size: float = 0.5
    seed: int = 0
    alphas: Sequence[float] = DEFAULT_ALPHAS
    rdm_method: str = "correlation"
    comparison: str = "pearson"
    eps: float = 0.1
    ceiling: bool = False

    def __post_init__(self):
        lookup(COMPARISONS, self.comparison, "comparison")

    def replace(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


class _Target:
    """The neuroids and RDM of one (region, subject) of a benchmark."""

    def __init__(self, benchmark: Benchmark, region: str, subject, rdm: np.ndarray):
        self.region = region
        self.subject = subject
        self.neuroids = torch.from_numpy(benchmark.neuroids(region, subject))
        self.rdm = torch.from_numpy(rdm)


class _LayerScores:
    """One feature map with the computations its procedures share, each done on first use."""

    def __init__(self, features: torch.Tensor, responses: torch.Tensor, splits: dict[str, np.ndarray], options: dict):
        self.features = features
        self.responses = responses
        self.splits = splits
        self.options = options
        self.positions = {name: torch.from_numpy(condensed_positions(index, len(responses)))
                          for name, index in splits.items()}

    def compare(self, model_rdm: torch.Tensor, target: _Target, split: str) -> float:
        """Correlation of two condensed RDMs over the stimuli of ``split``."""
        brain = as_condensed(target.rdm[self.positions[split]], f"RDM of {target.region}/{target.subject}")
        model = as_condensed(model_rdm, "model RDM", device=brain.device)
        return float(COMPARISONS[self.options.comparison](model[None], brain[None])[0, 0])

    @cached_property
    def rdm(self) -> torch.Tensor:
        return compute_rdm(self.features, self.options.rdm_method, condensed=True).cpu()

    @cached_property
    def predictions(self) -> dict[str, torch.Tensor]:
        features = self.features
        n_stimuli, n_features = features.shape
        n_components = johnson_lindenstrauss_components(n_stimuli, self.options.eps)
        if n_features > n_components:
            features = sparse_random_projection(features, n_components, seed=self.options.seed)
        train, test = (torch.from_numpy(self.splits[name]).to(features.device) for name in SPLITS)
        responses = self.responses.to(features.device)
        model = RidgeGCV(self.options.alphas, store_loo_predictions=True, device=features.device)
        model.fit(features[train], responses[train])
        return {"train": model.loo_predictions_, "test": model.predict(features[test])}

    def measured(self, split: str) -> torch.Tensor:
        return self.responses[torch.from_numpy(self.splits[split])]


def _crsa(layer: _LayerScores, target: _Target, split: str) -> float:
    return layer.compare(layer.rdm[layer.positions[split]], target, split)


def _ereg(layer: _LayerScores, target: _Target, split: str) -> float:
    predicted = layer.predictions[split][:, target.neuroids.to(layer.predictions[split].device)]
    measured = layer.measured(split)[:, target.neuroids].to(predicted)
    return float(pearson_r(measured, predicted).mean())


def _ersa(layer: _LayerScores, target: _Target, split: str) -> float:
    predicted = layer.predictions[split][:, target.neuroids.to(layer.predictions[split].device)]
    rdm = compute_rdm(predicted, layer.options.rdm_method, condensed=True)
    return layer.compare(rdm, target, split)


PROCEDURES: dict[str, Callable[[_LayerScores, _Target, str], float]] = {
    "cRSA": _crsa,
    "eReg": _ereg,
    "eRSA": _ersa,
}
"""Alignment procedures by name: ``procedure(layer, target, split) -> score``."""


class _Ceilings:
    """Noise ceilings of one benchmark, computed on first use and kept per region or target and split."""

    def __init__(self, benchmark: Benchmark, rdms: RDMs, splits: dict[str, np.ndarray], options: ScoringOptions):
        self.benchmark = benchmark
        self.rdms = rdms
        self.splits = splits
        self.options = options
        self.cache = {}

    def rdm_upper(self, target: _Target, split: str) -> float:
        key = ("rdm", target.region, split)
        if key not in self.cache:
            region = self.rdms.select(region=target.region)
            subjects = region.descriptors["subj_id"]
            if len(subjects) < 2:
                raise ValueError(
                    f"the RSA noise ceiling compares subjects, but region {target.region!r} has only subject "
                    f"{subjects[0]!r}; pass ceiling=False, or a benchmark with at least 2 subjects per region"
                )
            positions = condensed_positions(self.splits[split], self.benchmark.n_stimuli)
            _, upper = subject_noise_ceilings(region.dissimilarities[:, positions], self.options.comparison)
            self.cache[key] = dict(zip(subjects, upper.tolist()))
        return self.cache[key][target.subject]

    def encoding(self, target: _Target, split: str) -> float:
        repeats = self.benchmark.repeats
        if repeats is None:
            raise ValueError(
                "eReg's noise ceiling comes from repeated presentations, and this benchmark has none; build it with "
                "Benchmark(..., repeats=...) or pass ceiling=False"
            )
        key = ("encoding", target.region, target.subject, split)
        if key not in self.cache:
            trials = repeats[:, self.splits[split]][:, :, target.neuroids.numpy()]
            ceiling = np.sqrt(ncsnr_noise_ceiling(ncsnr(trials), repeats.shape[0]))
            self.cache[key] = float(ceiling.mean())
        return self.cache[key]


CEILINGS: dict[str, Callable[[_Ceilings, _Target, str], float]] = {
    "cRSA": _Ceilings.rdm_upper,
    "eReg": _Ceilings.encoding,
    "eRSA": _Ceilings.rdm_upper,
}
"""Noise ceilings by procedure name: ``ceiling(ceilings, target, split) -> best possible score``."""


def _split_stimuli(n_stimuli: int, splits, test_size: float, seed: int) -> dict[str, np.ndarray]:
    if splits is None:
        if not 0 < test_size < 1:
            raise ValueError(f"test_size must be a fraction between 0 and 1, got {test_size!r}")
        order = np.random.default_rng(seed).permutation(n_stimuli)
        n_test = int(round(test_size * n_stimuli))
        splits = {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}
    if not isinstance(splits, Mapping) or set(splits) != set(SPLITS):
        raise ValueError("splits must be a dict with keys 'train' and 'test' mapping to stimulus indices")
    result = {}
    for name in SPLITS:
        index = np.asarray(splits[name])
        if index.ndim != 1 or index.size < 4 or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"splits[{name!r}] must list at least 4 stimulus indices, got {index.size}")
        condensed_positions(index, n_stimuli)
        result[name] = index.astype(np.int64)
    if np.intersect1d(result["train"], result["test"]).size:
        raise ValueError("splits['train'] and splits['test'] share stimuli; held-out scores need disjoint sets")
    return result


def score_feature_maps(feature_maps: Mapping, benchmark: Benchmark,
                       procedures: Sequence[str] = ("cRSA", "eReg", "eRSA"),
                       options: ScoringOptions | None = None, *,
                       feature_map_stats: Mapping[str, Callable] | None = None, device=None,
                       **changes) -> pd.DataFrame:
    """Score every feature map against every region and subject of a benchmark.

    Parameters
    ----------
    feature_maps : dict of str to array
        Layer name -> features of shape ``(n_stimuli, ...)``, in the stimulus
        order of ``benchmark`` and in depth order (the order sets
        ``model_layer_index``).
    benchmark : Benchmark
        Brain responses with regions and subjects.
    procedures : sequence of str
        Names from :data:`PROCEDURES`: ``"cRSA"``, ``"eReg"``, ``"eRSA"``.
    options : ScoringOptions, optional
        Split, ridge, RDM and comparison settings (defaults:
        ``ScoringOptions()``).
    feature_map_stats : dict of str to callable, optional
        Extra columns computed once per feature map, e.g.
        ``{"effective_dimensionality": effective_dimensionality}``.
    device : str or torch.device, optional
        Where to compute (e.g. ``"cuda"``).
    **changes
        Fields of :class:`ScoringOptions` to change, e.g. ``seed=1, alphas=[1.0]``.

    Returns
    -------
    pandas.DataFrame
        Long format, one row per feature map x region x subject x split x
        procedure, with columns ``model_layer``, ``model_layer_index`` (1 for
        the first map), ``model_layer_depth`` (index / number of maps),
        ``region``, ``subj_id``, ``cv_split``, ``metric``, ``score``, one per
        statistic, and with ``ceiling=True`` also ``ceiling`` and
        ``fraction_of_ceiling``.

    Raises
    ------
    ValueError
        For unknown procedures or comparisons, feature maps whose stimulus
        count differs from the benchmark's, invalid splits, or, with
        ``ceiling=True``, a region with one subject (cRSA, eRSA) or a
        benchmark without repeats (eReg).

    Examples
    --------
    >>> benchmark, feature_maps = Benchmark.synthetic(n_stimuli=60, seed=0)
    >>> results = score_feature_maps(feature_maps, benchmark, ["cRSA"])
    >>> results.shape
    (32, 8)
    >>> sorted(results.cv_split.unique())
    ['test', 'train']
    """
    if not isinstance(benchmark, Benchmark):
        raise TypeError(f"benchmark must be a Benchmark, got {type(benchmark).__name__}")
    if isinstance(procedures, str):
        procedures = [procedures]
    chosen = {name: lookup(PROCEDURES, name, "procedure") for name in procedures}
    options = (options or ScoringOptions()).replace(**changes)
    if not isinstance(feature_maps, Mapping) or not feature_maps:
        raise ValueError("feature_maps must be a non-empty dict of layer name -> (n_stimuli, ...) array")
    stimulus_splits = _split_stimuli(benchmark.n_stimuli, options.splits, options.test_size,
                                     options.seed)
    brain_rdms = benchmark.build_rdms(options.rdm_method)
    targets = [
        _Target(benchmark, region, subject, row)
        for region, subject, row in zip(brain_rdms.descriptors["region"], brain_rdms.descriptors["subj_id"],
                                        brain_rdms.dissimilarities)
    ]
    responses = torch.from_numpy(benchmark.responses.T)
    ceilings = _Ceilings(benchmark, brain_rdms, stimulus_splits, options) if options.ceiling else None
    rows = []
    for index, (name, feature_map) in enumerate(feature_maps.items(), start=1):
        features = as_stimulus_matrix(feature_map, f"feature_maps[{name!r}]", device=device)
        check_same_stimuli(features.shape[0], benchmark.n_stimuli, f"feature_maps[{name!r}]", "benchmark")
        stats = {stat: float(function(features)) for stat, function in (feature_map_stats or {}).items()}
        layer = _LayerScores(features, responses, stimulus_splits, options)
        for target in targets:
            for split in SPLITS:
                for metric, procedure in chosen.items():
                    row = {
                        "model_layer": name,
                        "model_layer_index": index,
                        "model_layer_depth": index / len(feature_maps),
                        "region": target.region,
                        "subj_id": target.subject,
                        "cv_split": split,
                        "metric": metric,
                        "score": procedure(layer, target, split),
                        **stats,
                    }
                    if ceilings is not None:
                        row["ceiling"] = CEILINGS[metric](ceilings, target, split)
                        row["fraction_of_ceiling"] = row["score"] / row["ceiling"] if row["ceiling"] > 0 else np.nan
                    rows.append(row)
    return pd.DataFrame(rows)
