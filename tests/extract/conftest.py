"""Fixtures of the extraction tests: images written here and a small random-init model."""

import pytest

import torchlens_like as tll
from stimulus_images import SMALL_TRANSFORM, write_images


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "images"
    write_images(root)
    return root


@pytest.fixture
def small_model():
    model, _ = tll.load_model("resnet18", source="torchvision", transform=SMALL_TRANSFORM)
    return model
