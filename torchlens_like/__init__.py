"""torchlens_like: log every tensor operation of a PyTorch forward pass.

The public names are imported on first use, so ``import torchlens_like`` (and
the ``tll`` command's ``--help``) does not load torch. The first one used
imports :mod:`torchlens_like.api`, which imports every stage and so registers
every reader (``history.save``, ``history.render_graph`` ...). If that import
fails and the installed torch / torchvision pair cannot work together
(:mod:`torchlens_like.environment`), the error says so in one line.

Examples
--------
>>> import torch, torchvision, torchlens_like as tll
>>> history = tll.log_forward_pass(torchvision.models.alexnet(), torch.rand(1, 3, 224, 224))
>>> history["features.8"].layer_label
'conv2d_4_10'
"""

import importlib
import sys

from .version import VERSION as __version__

_PUBLIC = {
    "log_forward_pass": ".api",
    "get_model_metadata": ".api",
    "show_model_graph": ".api",
    "validate_saved_activations": ".api",
    "ActivationNotSavedWarning": ".graph",
    "LayerEntry": ".graph",
    "LayerLookupError": ".graph",
    "ModelHistory": ".graph",
    "HistoryFormatError": ".io",
    "load_history": ".io",
    "RenderOptions": ".render",
    "Features": ".extract",
    "compare_models": ".extract",
    "top_k_classes": ".extract",
    "ImageFolder": ".extract",
    "extract_features": ".extract",
    "list_models": ".extract",
    "load_features": ".extract",
    "load_model": ".extract",
    "edits": ".interventions",
    "intervene": ".interventions",
    "patching_sweep": ".interventions",
    "OpsChangedError": ".interventions",
    "OpsChangedWarning": ".interventions",
    "select": ".interventions",
    "EditChangedNothingWarning": ".interventions",
    "EditNeverFiredError": ".interventions",
    "ReplayRefused": ".interventions",
    "NoGradientWarning": ".graph",
    "attribute": ".gradients",
    "Attribution": ".gradients",
    "plot_attribution": ".gradients",
}
"""``{public name: module it lives in}``."""

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    _import_api()
    module = _PUBLIC.get(name)
    if module is None:
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def _import_api():
    """Import the entry points; a torch / torchvision pair that cannot work is named in one line."""
    if f"{__name__}.api" in sys.modules:
        return
    from .environment import torch_pair_problem

    problem = torch_pair_problem()
    try:
        importlib.import_module(".api", __name__)
    except (ImportError, RuntimeError, OSError) as exc:
        if problem is None:
            raise
        raise ImportError(problem) from exc
    if problem is not None:
        import warnings

        warnings.warn(problem, stacklevel=3)


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
