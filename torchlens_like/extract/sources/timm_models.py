"""The ``timm`` source: any ``timm.create_model`` name, with ``.tag`` variants.

The transform comes from the model's own pretrained config
(``timm.data.resolve_data_config`` + ``create_transform``), also for random
init, so a ViT trained with mean 0.5 / std 0.5 gets exactly that rather than
ImageNet statistics.
"""

from __future__ import annotations

import re

from .registry import ModelSource, register_source


def _names():
    import timm

    return timm.list_models() + timm.list_pretrained()


def _load(name, weights):
    import timm
    import timm.data

    if weights is None:
        model = timm.create_model(name, pretrained=False)
    else:
        tagged = name if weights in ("DEFAULT", "pretrained") else f"{name.split('.')[0]}.{weights}"
        model = timm.create_model(tagged, pretrained=True)
    config = timm.data.resolve_data_config({}, model=model)
    return model, timm.data.create_transform(**config)


def _count_params(name):
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def _rows():
    import timm
    import timm.models

    family = {model: module for module in timm.list_modules()
              for model in timm.list_models(module=module)}
    tags = {}
    for tagged in timm.list_pretrained():
        arch, _, tag = tagged.partition(".")
        tags.setdefault(arch, []).append(tag)
    rows = []
    for name in timm.list_models():
        config = timm.models.get_pretrained_cfg(name)
        rows.append({
            "model": name,
            "family": family.get(name, ""),
            "task": "classification" if config is None or config.num_classes else "features",
            "training_data": ", ".join(tags.get(name, [])),
            "num_params": None,
            "input_size": config.input_size[-1] if config is not None else None,
            "weights": ", ".join(tags.get(name, [])),
        })
    return rows


def _might_know(name):
    """timm names are lower case with digits and underscores, optionally ``.tag``."""
    return re.fullmatch(r"[a-z0-9_]+(\.\w+)?", name) is not None


def _categories(name, weights, model):
    import timm.data

    subset = timm.data.infer_imagenet_subset(model)
    return timm.data.ImageNetInfo(subset).label_descriptions() if subset else None


SOURCE = register_source(ModelSource("timm", _names, _load, _rows, count_params=_count_params,
                                     categories=_categories, might_know=_might_know,
                                     requires="timm", install='"torchlens_like[timm]"'))
