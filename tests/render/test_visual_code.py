"""The paper's visual code, checked on pictures read back through Graphviz.

Expectations come from the history's parent lists (edges), from model
structure (which modules are single-op leaves), and from graph reachability
computed here, never from the renderer's own helpers.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import torchlens_like as tll
from zoo import CASES

GREEN, RED, GRAY, LIGHT_GRAY, YELLOW, WHITE = (
    "#98FB98", "#FF9999", "#BEBEBE", "#EDEDED", "#FFFF66", "#FFFFFF")
SINGLE_OP_LEAVES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
                    nn.AdaptiveAvgPool2d, nn.LSTMCell, nn.Dropout)


def _log(name):
    case = CASES[name]()
    return tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed), case


def _expected_fill(layer):
    if layer.kind == "input":
        return GREEN
    if layer.kind == "output":
        return RED
    if (layer.kind == "op" and not layer.child_nodes and layer.tensor_dtype == "bool"
            and layer.tensor_shape is not None and torch.Size(layer.tensor_shape).numel() == 1):
        return YELLOW
    if layer.params:
        return GRAY
    if layer.kind == "buffer":
        return LIGHT_GRAY
    return WHITE


@pytest.mark.parametrize("name", ["branching", "internal_tensors", "buffers_eval",
                                  "nested_io", "indexing", "attention", "inplace_ops"])
def test_one_node_per_layer_and_every_edge(draw, name):
    history, _ = _log(name)
    graph, _ = draw(history)
    assert set(graph.nodes) == set(history.layer_labels)
    assert len(graph.nodes) == len(history.layers)
    expected = {(parent.layer_label, layer.layer_label)
                for layer in history.layers for parent in layer.parent_nodes}
    assert {(tail, head) for tail, head, _ in graph.edges} == expected
    assert len(graph.edges) == len(expected)


@pytest.mark.parametrize("name", ["branching", "internal_tensors", "buffers_eval",
                                  "functional_params", "conditional"])
def test_fill_colors(draw, name):
    history, _ = _log(name)
    graph, _ = draw(history)
    for layer in history.layers:
        assert graph.nodes[layer.layer_label]["fillcolor"].upper() == _expected_fill(layer), \
            layer.layer_label


def test_dashed_outline_exactly_for_tensors_without_input_ancestor(draw):
    history, _ = _log("internal_tensors")
    reached = set()
    frontier = [layer for layer in history.layers if layer.kind == "input"]
    while frontier:
        layer = frontier.pop()
        if layer.layer_label not in reached:
            reached.add(layer.layer_label)
            frontier.extend(layer.child_nodes)
    graph, _ = draw(history)
    dashed = {name for name, node in graph.nodes.items() if "dashed" in node["style"]}
    assert dashed == {layer.layer_label for layer in history.layers
                      if layer.kind == "op" and layer.layer_label not in reached}
    assert {"ones_1_2", "rand_1_3", "mul_1_7"} <= dashed


@pytest.mark.parametrize("build", [lambda: torchvision.models.resnet18(),
                                   lambda: torchvision.models.alexnet()])
def test_boxes_for_single_op_leaf_modules_ellipses_elsewhere(draw, build):
    model = build().eval()
    history = tll.get_model_metadata(model, torch.rand(1, 3, 64, 64))
    graph, _ = draw(history)
    modules = dict(model.named_modules())
    for layer in history.layers:
        if layer.kind != "op":
            assert graph.nodes[layer.layer_label]["shape"] == "ellipse"
            continue
        inner = layer.containing_modules[-1].rsplit(":", 1)[0] if layer.containing_modules \
            else None
        leaf = inner is not None and isinstance(modules[inner], SINGLE_OP_LEAVES)
        assert graph.nodes[layer.layer_label]["shape"] == ("box" if leaf else "ellipse"), \
            layer.layer_label
    shapes = {graph.nodes[layer.layer_label]["shape"] for layer in history.layers}
    assert shapes == {"box", "ellipse"}


def test_node_text_and_header(draw):
    model = torchvision.models.alexnet().eval()
    history = tll.get_model_metadata(model, torch.rand(1, 3, 64, 64))
    graph, _ = draw(history)
    conv = graph.nodes["conv2d_1_2"]["text"].split("\n")
    weight, bias = model.features[0].weight, model.features[0].bias
    out_shape = tuple(model.features[0](torch.rand(1, 3, 64, 64)).shape)
    assert conv[0] == "conv2d_1_2"
    assert conv[1] == f"{'x'.join(map(str, out_shape))} ({4 * torch.Size(out_shape).numel() / 1000:.2f} kB)"
    assert conv[2] == f"params: {'x'.join(map(str, weight.shape))}, {bias.shape[0]}"
    assert conv[3] == "@features.0"
    n_params = sum(p.numel() for p in model.parameters())
    header = graph.label.split("\n")
    assert header[0] == "AlexNet"
    assert header[1].startswith(f"{len(history.layers)} tensors, ")
    assert header[2] == f"{n_params:,} params, {n_params * 4 / 1000 ** 2:.2f} MB"


class ArgOrder(nn.Module):
    def forward(self, x):
        a, b = torch.sin(x), torch.cos(x)
        return torch.div(a, b), a + b, a * b, torch.cat([b, a]), torch.sub(a, other=b)


def test_argument_positions_only_into_noncommutative_multi_parent_ops(draw):
    history = tll.log_forward_pass(ArgOrder(), torch.rand(3) + 0.5)
    graph, _ = draw(history)
    labels = {(tail, head): attrs["text"] for tail, head, attrs in graph.edges}
    ops = {layer.func_name: layer.layer_label for layer in history.layers}
    sin, cos = ops["sin"], ops["cos"]
    assert labels[(sin, ops["div"])] == "arg 0" and labels[(cos, ops["div"])] == "arg 1"
    assert labels[(cos, ops["cat"])] == "arg 0[0]" and labels[(sin, ops["cat"])] == "arg 0[1]"
    for commutative in ("add", "mul"):
        assert labels[(sin, ops[commutative])] == labels[(cos, ops[commutative])] == ""
    sub_labels = {labels[(sin, ops["sub"])], labels[(cos, ops["sub"])]}
    assert sub_labels == {"arg 0", "other"}
    assert labels[("input_1_1", sin)] == ""


def test_buffers_light_gray_inside_their_module(draw):
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), nn.ReLU()).eval()
    history = tll.get_model_metadata(model, torch.rand(3, 4))
    graph, _ = draw(history)
    buffers = [layer.layer_label for layer in history.layers if layer.kind == "buffer"]
    assert len(buffers) == len(list(model.buffers())) - 1  # num_batches_tracked unused in eval
    for label in buffers:
        assert graph.nodes[label]["fillcolor"].upper() == LIGHT_GRAY
    (box,) = [c for c in graph.clusters.values() if c["label"].startswith("0 ")]
    assert set(buffers) <= box["nodes"]
    hidden, _ = draw(history, show_buffers=False)
    assert set(hidden.nodes) == set(history.layer_labels) - set(buffers)


def test_if_branch_marked(draw):
    history, _ = _log("conditional")
    childless_bools = [layer for layer in history.layers
                       if layer.kind == "op" and not layer.child_nodes
                       and layer.tensor_dtype == "bool" and layer.tensor_shape == ()]
    assert [layer.func_name for layer in childless_bools] == ["gt"]
    cond = childless_bools[0]
    graph, _ = draw(history)
    assert graph.nodes[cond.layer_label]["fillcolor"].upper() == YELLOW
    # the paper's example `torch.mean(x - 5) > 3`: the branch starts at the subtraction
    sub = next(layer.layer_label for layer in history.layers if layer.func_name == "sub")
    if_edges = [(tail, head) for tail, head, attrs in graph.edges if attrs["text"] == "IF"]
    assert if_edges == [("input_1_1", sub)]
    raw = [attrs["label"] for tail, head, attrs in graph.edges if attrs["text"] == "IF"]
    assert raw == ["<b>IF</b>"]
