"""The ``torchvision`` source: every classification model, every weights enum value.

The transform is the weights' own ``transforms()``; for random init it is the
transform of the architecture's default weights, so the input matches what
the architecture expects.
"""

from __future__ import annotations

from .registry import ModelSource, register_source


def _names():
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _weights_enum(name):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name)
    except (KeyError, ValueError):
        return None


def resolve_weights(name, weights):
    """The weights enum value a tag means for model ``name``.

    ``"DEFAULT"``, a value name (``"IMAGENET1K_V2"``) or its full name
    (``"ResNet50_Weights.IMAGENET1K_V2"``); an unknown tag lists the valid ones.

    Examples
    --------
    >>> resolve_weights("resnet50", "IMAGENET1K_V2")
    ResNet50_Weights.IMAGENET1K_V2
    """
    enum = _weights_enum(name)
    valid = ["DEFAULT"] + [w.name for w in enum] if enum is not None else []
    tag = weights.split(".")[-1]
    if enum is None or tag not in valid:
        raise ValueError(f"torchvision model {name!r} has no weights {weights!r}; valid: "
                         f"{', '.join(valid) or 'none (random init only)'}, or a path to a "
                         "state_dict file")
    return enum[tag]


def _load(name, weights):
    import torchvision

    if weights is None:
        enum = _weights_enum(name)
        transform = enum.DEFAULT.transforms() if enum is not None else None
        return torchvision.models.get_model(name, weights=None), transform
    value = resolve_weights(name, weights)
    return torchvision.models.get_model(name, weights=value), value.transforms()


def _training_data(weights_name):
    if "SWAG" in weights_name:
        return "IG-3.6B (SWAG) + ImageNet-1k"
    if "IMAGENET1K" in weights_name:
        return "ImageNet-1k"
    return weights_name


def _rows():
    rows = []
    for name in _names():
        enum = _weights_enum(name)
        values = list(enum) if enum is not None else []
        default = enum.DEFAULT if enum is not None else None
        rows.append({
            "model": name,
            "family": _family(name),
            "task": "classification",
            "training_data": ", ".join(sorted({_training_data(w.name) for w in values})),
            "num_params": default.meta.get("num_params") if default is not None else None,
            "input_size": _crop_size(default) if default is not None else None,
            "weights": ", ".join(w.name for w in values),
        })
    return rows


def _crop_size(weights):
    """The crop size of the weights' preset transform, read from its arguments, not built."""
    return getattr(weights.transforms, "keywords", {}).get("crop_size")


def _family(name):
    import re

    return re.match(r"(wide_)?[a-z]+", name).group(0)


def imagenet_categories():
    """The 1000 ImageNet class names in torchvision's (the standard) order.

    Examples
    --------
    >>> imagenet_categories()[:2]
    ['tench', 'goldfish']
    """
    import torchvision

    return list(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])


def _categories(name, weights, model):
    value = resolve_weights(name, weights or "DEFAULT") if _weights_enum(name) else None
    return list(value.meta["categories"]) if value is not None else None


SOURCE = register_source(ModelSource("torchvision", _names, _load, _rows,
                                     categories=_categories))
