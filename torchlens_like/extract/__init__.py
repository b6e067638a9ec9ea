"""Feature extraction over stimulus sets, on top of the logging engine.

Reads a model and a stimulus set; runs them through the entry points of
:mod:`torchlens_like.api` (one logging pass per batch) and the readers
(:mod:`torchlens_like.analysis` for projections and RDMs); produces feature
arrays on disk (or in memory) and their manifest. Never imports the capture
backends, the graph passes' internals or validation: a model of any backend
is extracted the same way.

Modules, one job each:

``sources``
    Registry of model sources, one module per library (torchvision, timm,
    open_clip, cornet, custom).
``cornet``
    The CORnet architectures.
``zoo``
    :func:`load_model`, :func:`list_models`.
``stimuli``
    :class:`ImageFolder`, :class:`ImageList`, any dataset or loader as a
    fixed-order :class:`StimulusSet` yielding batches of index ranges.
``layers``
    Locating the requested layers once, on a probe of the first stimuli.
``reductions``
    Registry of per-layer reductions (flatten, spatial mean, tokens, SRP).
``memory``
    Sizes and grouping layers under a memory limit.
``interrupts``
    Ctrl-C held back while an output folder is between consistent states.
``writers``
    Registry of storage formats, each writing slices at stimulus indices.
``manifest``
    Identity, layouts and per-layer progress of an output folder (resume).
``extraction``
    :func:`extract_features`, the loop over stimulus ranges and batches.
``features``
    :class:`Features`, :func:`load_features`.
``distributed``
    ``torchrun`` launches: the process group, the split of the batches
    between ranks, lockstep error reporting, the shared layer plan.
``slices``
    Per-rank slice files, the completion records of a distributed run.
``predictions``
    :func:`top_k_classes`.
``comparison``
    :func:`compare_models`.
"""

from .comparison import compare_models
from .extraction import ExtractionValidationError, GraphChangedError, extract_features
from .features import DamagedFeaturesError, Features, load_features
from .manifest import ManifestMismatch
from .predictions import top_k_classes
from .sources.custom_models import register_model, unregister_model
from .stimuli import ImageFolder, ImageList, StimulusError
from .zoo import WeightsDownloadError, list_models, load_model

__all__ = ["DamagedFeaturesError", "ExtractionValidationError", "Features", "GraphChangedError", "ImageFolder", "ImageList", "ManifestMismatch",
           "StimulusError", "WeightsDownloadError", "compare_models", "extract_features",
           "list_models", "load_features", "load_model", "register_model", "top_k_classes",
           "unregister_model"]
