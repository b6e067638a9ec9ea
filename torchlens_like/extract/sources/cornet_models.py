"""The ``cornet`` source: CORnet-Z, -RT and -S (architectures in :mod:`..cornet`).

Names are ``cornet_z``, ``cornet_rt``, ``cornet_s`` (``cornet-s`` and other
spellings with a dash are accepted). ``weights="DEFAULT"`` downloads the
published ImageNet checkpoint with torch's hub cache.
"""

from __future__ import annotations

from .registry import ModelSource, register_source


def canonical_name(name):
    """``cornet-S`` -> ``cornet_s``.

    Examples
    --------
    >>> canonical_name("CORnet-RT")
    'cornet_rt'
    """
    return name.lower().replace("-", "_")


def _names():
    from ..cornet import ARCHITECTURES

    return sorted(ARCHITECTURES) + sorted(name.replace("_", "-") for name in ARCHITECTURES)


def _transform():
    from torchvision.transforms import v2
    import torch

    return v2.Compose([v2.ToImage(), v2.Resize(256, antialias=True), v2.CenterCrop(224),
                       v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])


def _load(name, weights):
    import torch

    from ..cornet import ARCHITECTURES, WEIGHT_URLS

    key = canonical_name(name)
    model = ARCHITECTURES[key]()
    if weights is not None:
        if weights != "DEFAULT":
            raise ValueError(f"CORnet weights are 'DEFAULT' (the published ImageNet "
                             f"checkpoint) or a path to a state_dict file, not {weights!r}")
        checkpoint = torch.hub.load_state_dict_from_url(WEIGHT_URLS[key], map_location="cpu")
        model.load_state_dict(strip_module_prefix(checkpoint.get("state_dict", checkpoint)))
    return model, _transform()


def strip_module_prefix(state_dict):
    """Drop the ``module.`` prefix ``DataParallel`` checkpoints carry.

    Examples
    --------
    >>> list(strip_module_prefix({"module.V1.conv.weight": 0}))
    ['V1.conv.weight']
    """
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def _count_params(name):
    import torch

    from ..cornet import ARCHITECTURES

    with torch.device("meta"):
        model = ARCHITECTURES[canonical_name(name)]()
    return sum(p.numel() for p in model.parameters())


PARAM_COUNTS = {"cornet_rt": 5_208_936, "cornet_s": 53_416_616, "cornet_z": 2_071_656}
"""Parameters of each architecture, counted once (the tests count them again), so that listing
the zoo builds no model."""


def _rows():
    return [{"model": name, "family": "cornet", "task": "classification",
             "training_data": "ImageNet-1k", "num_params": PARAM_COUNTS[name],
             "input_size": 224, "weights": "DEFAULT"} for name in _names() if "-" not in name]


def _categories(name, weights, model):
    from .torchvision_models import imagenet_categories

    return imagenet_categories()


SOURCE = register_source(ModelSource("cornet", _names, _load, _rows, count_params=_count_params,
                                     categories=_categories))
