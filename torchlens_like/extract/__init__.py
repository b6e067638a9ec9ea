"""Feature extraction over stimulus sets, on top of the logging engine.

Modules, one job each:

``sources``
    Registry of model sources, one module per library (torchvision, timm,
    open_clip, cornet, custom).
``cornet``
    The CORnet architectures.
``zoo``
    :func:`load_model`, :func:`list_models`.
"""

from .sources.custom_models import register_model, unregister_model
from .zoo import WeightsDownloadError, list_models, load_model

__all__ = ["WeightsDownloadError", "list_models", "load_model", "register_model",
           "unregister_model"]
