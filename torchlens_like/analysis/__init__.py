"""Representational analysis: RDMs, RDM comparison, encoding models, dimensionality.

What researchers do with activations once they have them (THINGSvision's RSA,
DeepJuice's alignment procedures), computed with torch on the CPU or a GPU.

Modules, one job each:

``backend``
    numpy or torch in, the same kind out; input validation; memory blocks.
``rdm``
    :func:`compute_rdm` and the registry of dissimilarity measures.
``rdms``
    :class:`RDMs`, a container of condensed RDMs with descriptors.
``compare``
    :func:`correlate_rdms`, :func:`compare_rdms` and the registry of
    comparison methods.
``plotting``
    :func:`plot_rdm`, :func:`plot_variance_partitioning`.
``features``
    :func:`center_features`, :func:`normalize_features`,
    :func:`relative_representations`.
``dimensionality``
    :func:`effective_dimensionality`.
``ceiling``
    Noise ceilings: :func:`rdm_noise_ceiling` across subjects' RDMs,
    :func:`split_half_reliability`, :func:`ncsnr` and
    :func:`ncsnr_noise_ceiling` from repeated presentations.
``cka``
    :func:`cka` (centered kernel alignment) and the registries of kernels and
    HSIC estimators.
``projection``
    :func:`sparse_random_projection` (Johnson-Lindenstrauss).
``ridge``
    :class:`RidgeGCV`, :func:`pearson_r`, :func:`cross_validated_scores`.
``partition``
    :func:`variance_partitioning` (unique and shared cross-validated R^2 of
    two or three feature sets), :class:`VariancePartition`.
``benchmark``
    :class:`Benchmark`: responses, regions, subjects, stimuli; file loaders;
    synthetic data with planted structure.
``procedures``
    :func:`score_feature_maps` (settings grouped in :class:`ScoringOptions`) and
    the registry of alignment procedures
    (cRSA, eReg, eRSA).
``results``
    :func:`get_results_max`.

Reads arrays (numpy or torch: activations taken from a ``ModelHistory`` or
extracted features, brain responses); produces numbers, RDMs and tables. It
imports nothing from capture, validation, rendering or the entry points.

Design decisions common to all modules are recorded in ``backend``; each
module's docstring records its own.  The field's reference implementations
(rsatoolbox, scipy, scikit-learn, himalaya) are used only by the tests, which
check every result against them on the same data.

Examples
--------
>>> from torchlens_like.analysis import Benchmark, score_feature_maps, get_results_max
>>> benchmark, feature_maps = Benchmark.synthetic(n_stimuli=80, seed=0)
>>> results = score_feature_maps(feature_maps, benchmark, ["cRSA"])
>>> best = get_results_max(results)
>>> sorted(set(zip(best.region, best.model_layer)))
[('EVC', 'layer1'), ('OTC', 'layer3')]
"""

from .benchmark import Benchmark
from .ceiling import ncsnr, ncsnr_noise_ceiling, rdm_noise_ceiling, split_half_reliability
from .cka import cka
from .compare import compare_rdms, correlate_rdms
from .dimensionality import effective_dimensionality
from .features import center_features, normalize_features, relative_representations
from .partition import VariancePartition, variance_partitioning
from .plotting import plot_rdm, plot_variance_partitioning
from .procedures import ScoringOptions, score_feature_maps
from .projection import johnson_lindenstrauss_components, sparse_random_projection
from .rdm import compute_rdm
from .rdms import RDMs
from .results import get_results_max
from .ridge import RidgeGCV, cross_validated_scores, pearson_r

__all__ = [
    "Benchmark",
    "RDMs",
    "RidgeGCV",
    "ScoringOptions",
    "VariancePartition",
    "center_features",
    "cka",
    "compare_rdms",
    "compute_rdm",
    "correlate_rdms",
    "cross_validated_scores",
    "effective_dimensionality",
    "get_results_max",
    "johnson_lindenstrauss_components",
    "ncsnr",
    "ncsnr_noise_ceiling",
    "normalize_features",
    "pearson_r",
    "plot_rdm",
    "plot_variance_partitioning",
    "rdm_noise_ceiling",
    "relative_representations",
    "score_feature_maps",
    "sparse_random_projection",
    "split_half_reliability",
    "variance_partitioning",
]
