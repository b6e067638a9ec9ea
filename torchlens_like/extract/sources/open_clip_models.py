"""The ``open_clip`` source: the image tower of a CLIP model, with its own preprocess.

``weights`` is an open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"``,
...); ``"DEFAULT"`` takes the first tag open_clip lists for the model.
"""

from __future__ import annotations

from .registry import ModelSource, register_source


def _names():
    import open_clip

    return open_clip.list_models()


def _tags():
    import open_clip

    tags = {}
    for arch, tag in open_clip.list_pretrained():
        tags.setdefault(arch, []).append(tag)
    return tags


def _load(name, weights):
    import open_clip

    if weights == "DEFAULT":
        weights = _tags().get(name, [None])[0]
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights)
    return model.visual, preprocess


def _count_params(name):
    import open_clip
    import torch

    with torch.device("meta"):
        model = open_clip.create_model(name, pretrained=None)
    return sum(p.numel() for p in model.visual.parameters())


def _might_know(name):
    """open_clip names have a dash or capitals (``ViT-B-32``, ``RN50``, ``EVA02-B-16``)."""
    return "-" in name or name != name.lower()


def _rows():
    tags = _tags()
    return [{"model": name, "family": "clip", "task": "image-text embedding",
             "training_data": ", ".join(tags.get(name, [])), "num_params": None,
             "input_size": None, "weights": ", ".join(tags.get(name, []))}
            for name in _names()]


SOURCE = register_source(ModelSource("open_clip", _names, _load, _rows,
                                     count_params=_count_params, might_know=_might_know,
                                     requires="open_clip",
                                     install='"torchlens_like[open_clip]"'))
