"""Notebook displays: the SVG they embed parses, shows the graph, and the histogram counts
are numpy's."""

import re
import sys
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import torchvision

import torchlens_like as tll
from torchlens_like.render.notebook import HISTOGRAM_BINS, READABLE_NODES

SVG = "{http://www.w3.org/2000/svg}"


def _svgs(html):
    return [ET.fromstring(match) for match in re.findall(r"<svg.*?</svg>", html, re.S)]


def _node_titles(svg):
    return [group.find(f"{SVG}title").text for group in svg.iter(f"{SVG}g")
            if group.get("class") == "node"]


def test_history_repr_shows_summary_and_every_node_of_a_small_graph():
    model = torchvision.models.alexnet()
    history = tll.log_forward_pass(model, torch.rand(1, 3, 64, 64))
    html = history._repr_html_()
    assert history.summary().splitlines()[0].replace("'", "&#x27;") in html
    (svg,) = _svgs(html)
    assert sorted(_node_titles(svg)) == sorted(history.layer_labels)


def test_large_model_is_collapsed_to_a_readable_depth():
    history = tll.get_model_metadata(torchvision.models.resnet50(), torch.rand(1, 3, 64, 64))
    (svg,) = _svgs(history._repr_html_())
    titles = _node_titles(svg)
    assert len(history) > READABLE_NODES >= len(titles) > 10
    assert any("layer1.0" in title for title in titles) and "conv2d_1_2" in titles
    clusters = [group.find(f"{SVG}title").text for group in svg.iter(f"{SVG}g")
                if group.get("class") == "cluster"]
    assert any("layer4" in name for name in clusters)


def test_layer_card_histogram_counts_are_numpys():
    x = torch.randn(4, 200, generator=torch.Generator().manual_seed(1))
    history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.Linear(200, 300),
                                                       torch.nn.GELU()), x)
    layer = history["linear_1"]
    html = layer._repr_html_()
    assert "linear_1_2" in html and "0.weight 300x200" in html and "input_1_1" in html
    (svg,) = _svgs(html)
    counts = [int(rect.get("data-count")) for rect in svg.iter(f"{SVG}rect")]
    expected, _ = np.histogram(layer.tensor_contents.numpy(), bins=HISTOGRAM_BINS)
    assert counts == expected.tolist()
    heights = np.array([float(rect.get("height")) for rect in svg.iter(f"{SVG}rect")])
    assert np.allclose(heights / heights.max(), expected / expected.max(), atol=0.01)
    values = layer.tensor_contents.double()
    assert f"mean {values.mean():.4g}" in html and f"max {values.max():.4g}" in html


def test_layer_card_of_a_keras_model_histograms_its_numpy_values():
    pytest.importorskip("torchlens_like.tf_runtime.loader")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((50,)), keras.layers.Dense(80, name="fc")])
    x = np.random.default_rng(1).standard_normal((4, 50)).astype("float32")
    layer = tll.log_forward_pass(model, x)["fc"]
    (svg,) = _svgs(layer._repr_html_())
    counts = [int(rect.get("data-count")) for rect in svg.iter(f"{SVG}rect")]
    expected, _ = np.histogram(model(x).numpy(), bins=HISTOGRAM_BINS)
    assert counts == expected.tolist()


def test_unsaved_layer_card_says_how_to_save_it():
    history = tll.get_model_metadata(torch.nn.Linear(2, 2), torch.ones(1, 2))
    html = history["linear_1"]._repr_html_()
    assert "not saved" in html and "layers_to_save=[&#x27;linear_1_2&#x27;" in html
    assert _svgs(html) == []


def test_show_model_graph_displays_inline_in_a_notebook(tmp_path, monkeypatch):
    shown = []
    display = types.ModuleType("IPython.display")
    display.SVG = lambda filename: ("svg", open(filename).read())
    display.Image = lambda filename: ("png", filename)
    display.display = shown.append
    kernel_shell = types.SimpleNamespace(kernel=object())
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: kernel_shell
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    path = tll.show_model_graph(torch.nn.Linear(2, 2), torch.ones(1, 2),
                                outpath=str(tmp_path / "g"))
    assert [kind for kind, _ in shown] == ["svg"]
    assert shown[0][1] == open(path).read()
    ipython.get_ipython = lambda: None
    tll.show_model_graph(torch.nn.Linear(2, 2), torch.ones(1, 2), outpath=str(tmp_path / "h"))
    assert len(shown) == 1
