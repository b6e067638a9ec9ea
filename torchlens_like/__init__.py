"""torchlens_like: log every tensor operation of a PyTorch forward pass.

Examples
--------
>>> import torch, torchvision, torchlens_like as tll
>>> history = tll.log_forward_pass(torchvision.models.alexnet(), torch.rand(1, 3, 224, 224))
>>> history["features.8"].layer_label
'conv2d_4_10'
"""

from .graph import ActivationNotSavedWarning, LayerEntry, LayerLookupError, ModelHistory
from .render import RenderOptions
from .io import HistoryFormatError, load_history
from .api import get_model_metadata, log_forward_pass, show_model_graph, validate_saved_activations

__all__ = ["ActivationNotSavedWarning", "HistoryFormatError", "LayerEntry", "LayerLookupError",
           "ModelHistory", "RenderOptions", "get_model_metadata", "load_history",
           "log_forward_pass", "show_model_graph", "validate_saved_activations"]
__version__ = "0.1.0"
