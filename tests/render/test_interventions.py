"""Pictures of edited histories: edited sites marked with their edit, layers shaded by change."""

import pytest
import torch

import torchlens_like as tll
from torchlens_like.render.styles import EDIT_COLOR

from intervention_zoo import Blocks, PassThrough


def test_edited_sites_are_purple_and_say_their_edit(draw):
    model, x = Blocks(), torch.rand(3, 6)
    edited = tll.log_forward_pass(model, x).intervene({"fc2": tll.edits.scale(2.0),
                                                      "relu_1": tll.edits.zero(index=0)})
    graph, _ = draw(edited, nesting_depth=1)
    marked = {name for name, node in graph.nodes.items()
              if node["fillcolor"].upper() == EDIT_COLOR}
    assert marked == {"linear_2_4", "relu_1_3"}
    assert "edit: scale(k=2.0)" in graph.nodes["linear_2_4"]["text"].splitlines()
    assert "edit: zero(index=0)" in graph.nodes["relu_1_3"]["text"].splitlines()
    rerun = tll.intervene(PassThrough(), torch.rand(2, 3), {"skip": tll.edits.zero()})
    graph, _ = draw(rerun)
    assert graph.nodes["intervention_1_3"]["fillcolor"].upper() == EDIT_COLOR


def test_shading_by_change_follows_the_size_of_each_layers_change(draw):
    model, x = Blocks(), torch.rand(3, 6)
    history = tll.log_forward_pass(model, x)
    edited = history.intervene({"fc2": tll.edits.scale(3.0)})
    graph, _ = draw(edited, shade_by="change")
    changes = {layer.layer_label: float((layer.tensor_contents - history[
        layer.layer_label].tensor_contents).norm()) for layer in edited}
    largest = max(changes.values())
    for label in ("tanh_1_5", "add_1_6", "linear_3_7"):
        change = changes[label]
        red, green, blue = (int(graph.nodes[label]["fillcolor"][i:i + 2], 16) for i in (1, 3, 5))
        assert red == 255 and green == pytest.approx(255 - 115 * change / largest, abs=1)
        assert blue == pytest.approx(255 * (1 - change / largest), abs=1)
    for label in ("linear_1_2", "relu_1_3"):
        assert graph.nodes[label]["fillcolor"].upper() in ("#BEBEBE", "#FFFFFF")
    with pytest.raises(ValueError, match="unknown shade_by .gradient.; choose one of: "
                                         "attribution, change, grad"):
        tll.RenderOptions(shade_by="gradient")
