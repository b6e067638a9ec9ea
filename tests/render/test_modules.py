"""Module boxes and ``nesting_depth`` collapsing on GoogLeNet (the paper's Figure 3).

The expected nodes and edges at each depth are computed here from the
history's module calls and parent lists: an op inside a call at depth ``k``
of a module that ran more than one op becomes that call's node.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

import torchlens_like as tll


@pytest.fixture(scope="module")
def googlenet():
    model = torchvision.models.googlenet(weights=None, aux_logits=False,
                                         init_weights=False).eval()
    return model, tll.get_model_metadata(model, torch.rand(1, 3, 64, 64))


def _ops_per_call(history):
    calls = {}
    for layer in history.layers:
        if layer.kind == "op":
            for call in layer.containing_modules:
                calls.setdefault(call, set()).add((layer.func_name, id(layer.args)))
    return {call: len(ops) for call, ops in calls.items()}


def _expected_owner(layer, depth, ops_per_call):
    calls = layer.containing_modules
    if layer.kind == "buffer" and layer.child_nodes:
        calls = layer.child_nodes[0].containing_modules
    if len(calls) >= depth and ops_per_call.get(calls[depth - 1], 0) > 1:
        return "module " + calls[depth - 1]
    return layer.layer_label


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 1000])
def test_collapsed_nodes_and_edges(draw, googlenet, depth):
    _, history = googlenet
    ops_per_call = _ops_per_call(history)
    owner = {layer.layer_label: _expected_owner(layer, depth, ops_per_call)
             for layer in history.layers}
    graph, _ = draw(history, nesting_depth=depth)
    assert set(graph.nodes) == set(owner.values())
    expected_edges = {(owner[p.layer_label], owner[layer.layer_label])
                      for layer in history.layers for p in layer.parent_nodes
                      if owner[p.layer_label] != owner[layer.layer_label]}
    assert {(t, h) for t, h, _ in graph.edges} == expected_edges


def test_figure_3_levels(draw, googlenet):
    model, history = googlenet
    depth1, _ = draw(history, nesting_depth=1)
    assert "module inception3a:1" in depth1.nodes
    assert depth1.nodes["module inception3a:1"]["shape"] == "box"
    assert not depth1.clusters
    top_level = {name for name, _ in model.named_children()}
    collapsed = {name.split(" ")[1].rsplit(":", 1)[0] for name in depth1.nodes
                 if name.startswith("module ")}
    assert collapsed <= top_level and {"inception3a", "inception5b", "conv1"} <= collapsed

    depth2, _ = draw(history, nesting_depth=2)
    box = depth2.clusters["cluster inception3a:1"]
    assert box["label"] == f"inception3a ({type(model.inception3a).__name__})"
    assert box["nodes"] >= {f"module inception3a.branch{i}:1" for i in range(1, 5)}

    depth4, _ = draw(history, nesting_depth=4)
    inner = depth4.clusters["cluster inception3a:1/inception3a.branch2:1/inception3a.branch2.0:1"]
    assert inner["parent"] == "cluster inception3a:1/inception3a.branch2:1"
    assert inner["label"] == "inception3a.branch2.0 (BasicConv2d)"
    conv = history["inception3a.branch2.0.conv"].layer_label
    assert conv in inner["nodes"]
    assert depth4.nodes[conv]["shape"] == "box"


def test_nested_box_labels_match_model_classes(draw, googlenet):
    model, history = googlenet
    graph, _ = draw(history)
    modules = dict(model.named_modules())
    assert graph.clusters
    for name, cluster in graph.clusters.items():
        address = name.removeprefix("cluster ").split("/")[-1].rsplit(":", 1)[0]
        assert cluster["label"] == f"{address} ({type(modules[address]).__name__})"
        parent = cluster["parent"]
        if "/" in name:
            assert parent == name.rsplit("/", 1)[0]
