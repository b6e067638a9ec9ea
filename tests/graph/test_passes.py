"""Each post-processing pass, one at a time, keeps the graph sound (lint before and after)."""

import pytest
import torch
import torchvision

from torchlens_like.capture import backend_for
from torchlens_like.graph import PASSES, lint
from torchlens_like.graph.passes import assign_labels
from torchlens_like.records import ArgSlot, LayerEntry, connect
from zoo import CASES


def _raw_nodes(model, args, kwargs, seed):
    if seed is not None:
        torch.manual_seed(seed)
    backend = backend_for(model)
    return backend.capture(backend.prepare(model), args, kwargs, "all").nodes


def _case_nodes(name):
    case = CASES[name]()
    return _raw_nodes(case.model, case.args, case.kwargs, case.seed)


def test_pass_order_is_documented():
    import torchlens_like.graph as graph

    names = [p.__name__ for p in PASSES]
    assert names[0] == "trim_orphans" and names[-1] == "assign_labels"
    positions = [graph.__doc__.index(f"``{name}``") for name in names]
    assert positions == sorted(positions)


@pytest.mark.parametrize("name", sorted(CASES))
def test_lint_between_every_pass(name):
    nodes = _case_nodes(name)
    assert lint(nodes) == []
    for graph_pass in PASSES:
        nodes = graph_pass(nodes)
        assert lint(nodes) == [], graph_pass.__name__
    labels = [node.layer_label for node in nodes]
    assert len(set(labels)) == len(labels)


def test_lint_between_every_pass_on_resnet():
    torch.manual_seed(0)
    nodes = _raw_nodes(torchvision.models.resnet18().eval(), (torch.rand(1, 3, 32, 32),), {},
                       None)
    for graph_pass in PASSES:
        nodes = graph_pass(nodes)
        assert lint(nodes) == [], graph_pass.__name__


def _chain(length):
    nodes = [LayerEntry("input", "input")] + [LayerEntry("op", "relu") for _ in range(length)]
    for parent, child in zip(nodes, nodes[1:]):
        connect([child], (ArgSlot("layer", parent),))
    return nodes


def test_lint_reports_broken_graphs():
    nodes = _chain(3)
    assert lint(nodes) == []
    assert any("not topological" in p for p in lint([nodes[0], nodes[2], nodes[1], nodes[3]]))
    nodes[1].child_nodes = []
    assert any("does not list it as child" in p for p in lint(nodes))
    nodes = assign_labels(_chain(2))
    nodes[2].layer_label = nodes[1].layer_label
    assert any("duplicate label" in p for p in lint(nodes))
