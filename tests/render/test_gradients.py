"""Pictures after a backward: graph nodes shaded by gradient or attribution size, layer cards."""

import re

import pytest
import torch
from torch import nn

import torchlens_like as tll
from groundtruth import hooked_gradients
from torchlens_like.render.styles import shade_color


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))


def _loss(out):
    return out[:, 1].sum()


def _rgb(color):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


@pytest.mark.parametrize("shade_by", ["grad", "attribution"])
def test_nodes_are_shaded_by_the_size_autograd_gives_each_layer(draw, shade_by):
    model, x = _model(), torch.randn(3, 4)
    _, calls, _ = hooked_gradients(model, (x,), {}, _loss)
    with torch.no_grad():
        outputs = {}
        h = x
        for index, module in enumerate(model):
            h = outputs[str(index)] = module(h)
    sizes = {address: float(calls[f"{address}:1"][0].norm()) if shade_by == "grad" else
             float((calls[f"{address}:1"][0] * outputs[address]).abs().sum())
             for address in outputs}
    history = tll.log_forward_pass(model, x, save_gradients=True)
    history.backward(_loss)
    graph, _ = draw(history, shade_by=shade_by)
    largest = max(sizes.values())
    for address, size in sizes.items():
        label = history[address].layer_label
        assert _rgb(graph.nodes[label]["fillcolor"]) == pytest.approx(
            _rgb(shade_color(size / largest)), abs=1), address


def test_without_a_backward_nothing_is_shaded(draw):
    history = tll.log_forward_pass(_model(), torch.randn(3, 4))
    graph, _ = draw(history, shade_by="grad")
    fills = {node["fillcolor"].upper() for node in graph.nodes.values() if "fillcolor" in node}
    assert fills <= {"#98FB98", "#FF9999", "#BEBEBE", "#FFFFFF"}


def test_the_layer_card_shows_the_gradient_and_its_parameter_gradients():
    model, x = _model(), torch.randn(3, 4)
    history = tll.log_forward_pass(model, x, save_gradients=True)
    before = history["2"]._repr_html_()
    assert "data-part='gradient'" not in before
    history.backward(_loss)
    inputs, calls, params = hooked_gradients(model, (x,), {}, _loss)
    card = history["2"]._repr_html_()
    gradient = card[card.index("data-part='gradient'"):]
    norm = float(calls["2:1"][0].norm())
    assert f"L2 norm {norm:.4g}" in gradient
    assert f"2.weight {float(params['2.weight'].norm()):.4g}" in gradient
    assert gradient.count("<rect") == 24
    largest = max([float(grads[0].norm()) for grads in calls.values()] +
                  [float(inputs[0].norm())])
    title = re.search(r"<b style='background:(#[0-9A-F]{6})'>linear_2_4</b>", card).group(1)
    assert _rgb(title) == pytest.approx(_rgb(shade_color(norm / largest)), abs=1)
