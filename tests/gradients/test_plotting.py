"""plot_attribution: the map drawn equals |attribution| summed over channels, over the image."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlens_like as tll


def _conv_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_an_input_attribution_is_drawn_over_the_image(tmp_path):
    model, x = _conv_model(), torch.rand(2, 3, 8, 8)
    attr = tll.attribute(model, x, "input_1", method="grad_x_activation", target=1)
    path = tmp_path / "out" / "attr.png"
    figure = tll.plot_attribution(attr, x, path, example=1, alpha=0.4)
    picture, heat = figure.axes[0].images
    np.testing.assert_allclose(picture.get_array(), x[1].permute(1, 2, 0).double().numpy())
    expected = attr.value[1].abs().sum(0).double().numpy()
    np.testing.assert_allclose(heat.get_array(), expected)
    assert heat.get_alpha() == 0.4
    assert path.exists() and path.stat().st_size > 0
    assert figure.axes[0].get_title() == "grad_x_activation at input_1"


def test_a_smaller_layer_map_is_resized_to_the_image():
    model, x = _conv_model(), torch.rand(1, 3, 8, 8)
    attr = tll.attribute(model, x, "2", target=0)
    figure = tll.plot_attribution(attr, (x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    _, heat = figure.axes[0].images
    small = attr.value[0].abs().sum(0).double()
    expected = F.interpolate(small[None, None], size=(8, 8), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
    assert heat.get_array().shape == (8, 8)
    np.testing.assert_allclose(heat.get_array(), expected)


def test_bad_attributions_and_images_are_named():
    model, x = _conv_model(), torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="shape \\(1, 3\\)"):
        tll.plot_attribution(tll.attribute(model, x, "4", target=0), x)
    with pytest.raises(ValueError, match="unknown colormap"):
        tll.plot_attribution(torch.ones(8, 8), x, colormap="rainbowish")
    with pytest.raises(ValueError, match="image must be"):
        tll.plot_attribution(torch.ones(8, 8), torch.ones(2, 8, 8, 8, 8))
