"""The ``keras`` source: ``keras.applications`` models by name, logged by the TensorFlow backend.

Names are the constructors ``keras.applications`` exports (``"ResNet50"``,
``"MobileNetV2"``, ``"EfficientNetB0"`` ...). ``weights=None`` is random
init, seeded without touching the caller's generators; any other tag is
handed to Keras (``"imagenet"``; ``"DEFAULT"`` means ``"imagenet"``).

The transform is the model's own: the image resized to the model's input
size, as a float32 NumPy array ``(height, width, 3)``, through the
``preprocess_input`` of the module that defines the model (caffe-style BGR
mean subtraction for ResNet50, scaling to [-1, 1] for MobileNetV2, none for
EfficientNet, which normalises inside the model), channels last.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re

import numpy as np

from .registry import ModelSource, register_source


_EXPORT = re.compile(r"^from keras\.src\.applications\.(\w+) import ([A-Z]\w*) as \2$", re.M)


def _exported():
    """``{model name: defining module}`` read from Keras' export list, without importing Keras.

    Listing the zoo must not load TensorFlow (seconds, and memory) for users
    who only want torch models.
    """
    spec = importlib.util.find_spec("keras")
    for base in (spec.submodule_search_locations or []) if spec else []:
        for relative in ("applications/__init__.py", "api/applications/__init__.py"):
            path = os.path.join(base, relative)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as handle:
                    return {name: module for module, name in _EXPORT.findall(handle.read())}
    return {}


def _applications():
    from ...tf_runtime.loader import tf  # noqa: F401  (Triton before TensorFlow)
    import keras

    return keras.applications


def _names():
    return sorted(_exported())


def _load(name, weights):
    from ...tf_runtime.state import global_state_kept
    import keras

    build = getattr(_applications(), name)
    with global_state_kept():
        keras.utils.set_random_seed(0)
        model = build(weights=None if weights is None else
                      ("imagenet" if weights == "DEFAULT" else weights))
    return model, KerasTransform(model, importlib.import_module(build.__module__))


class KerasTransform:
    """One PIL image -> the model's input: resized, then the model's ``preprocess_input``.

    The result is a ``(height, width, 3)`` float32 torch tensor (sharing the
    NumPy array's memory), so the stimulus loaders batch it like any other
    transform's output; the TensorFlow backend reads it as an array.

    Examples
    --------
    >>> import numpy as np, PIL.Image
    >>> model, transform = _load("MobileNetV2", None)
    >>> tuple(transform(PIL.Image.new("RGB", (300, 200), (255, 0, 0))).shape)
    (224, 224, 3)
    """

    def __init__(self, model, family):
        self.size = tuple(model.input_shape[1:3])
        self.preprocess_input = family.preprocess_input

    def __call__(self, image):
        import torch

        image = image.convert("RGB").resize((self.size[1], self.size[0]))
        array = np.asarray(image, dtype="float32")
        return torch.from_numpy(np.asarray(self.preprocess_input(array), dtype="float32"))

    def __repr__(self):
        return (f"KerasTransform(size={self.size}, "
                f"preprocess_input={self.preprocess_input.__module__})")


def _rows():
    return [{"model": name, "family": family, "task": "classification",
             "training_data": "imagenet", "num_params": None, "input_size": None,
             "weights": "imagenet"} for name, family in sorted(_exported().items())]


def _might_know(name):
    """``keras.applications`` names are constructors: ``ResNet50``, ``MobileNetV2``."""
    return re.fullmatch(r"[A-Z][A-Za-z0-9]*", name) is not None


SOURCE = register_source(ModelSource("keras", _names, _load, _rows, requires="tensorflow",
                                     install='"torchlens_like[tensorflow]"',
                                     might_know=_might_know))
