"""Rolled and unrolled pictures of recurrent models (the paper's Figure 4).

Expected nodes and edges come from each pass's parent list in the history;
the "In"/"Out" pass labels from ``ModelHistory.parents_by_pass`` /
``children_by_pass``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchlens_like as tll
from zoo import CASES


class Loop(nn.Module):
    """Figure 4A's shape: cos -> shared linear -> sin, twice, then one exit."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        for _ in range(3):
            x = torch.sin(self.fc(torch.cos(x)))
        return x * 2


def _histories():
    torch.manual_seed(0)
    yield "loop", tll.log_forward_pass(Loop(), torch.rand(2, 4))
    for name in ("shared_modules", "cells"):
        case = CASES[name]()
        yield name, tll.log_forward_pass(case.model, case.args, case.kwargs)


HISTORIES = dict(_histories())


def _ranges(numbers):
    runs = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@pytest.mark.parametrize("name", list(HISTORIES))
def test_unrolled_one_node_per_pass(draw, name):
    history = HISTORIES[name]
    assert any(layer.num_passes > 1 for layer in history.layers)
    graph, _ = draw(history, vis_opt="unrolled")
    assert set(graph.nodes) == set(history.layer_labels)
    for layer in history.layers:
        first_line = graph.nodes[layer.layer_label]["text"].split("\n")[0]
        assert first_line == layer.layer_label
        if layer.num_passes > 1:
            assert first_line.endswith(f":{layer.pass_num}")
    assert {(t, h) for t, h, _ in graph.edges} == {
        (p.layer_label, layer.layer_label) for layer in history.layers for p in layer.parent_nodes}


@pytest.mark.parametrize("name", list(HISTORIES))
def test_rolled_one_node_per_layer_with_pass_labels(draw, name):
    history = HISTORIES[name]
    graph, _ = draw(history, vis_opt="rolled")
    passes = {}
    for layer in history.layers:
        passes.setdefault(layer.layer_label_no_pass, set()).add(layer.pass_num)
    assert set(graph.nodes) == set(passes)
    assert len(graph.nodes) < len(history.layers)
    for label, numbers in passes.items():
        first_line = graph.nodes[label]["text"].split("\n")[0]
        assert first_line == (f"{label} (×{len(numbers)})" if len(numbers) > 1 else label)

    in_passes, out_passes = {}, {}
    for label in passes:
        for pass_num, parents in history.parents_by_pass(label).items():
            for parent in parents:
                in_passes.setdefault((parent, label), set()).add(pass_num)
        for pass_num, children in history.children_by_pass(label).items():
            for child in children:
                out_passes.setdefault((label, child), set()).add(pass_num)
    drawn = {(t, h): attrs for t, h, attrs in graph.edges}
    assert set(drawn) == set(in_passes) == set(out_passes)
    for (tail, head), heads in in_passes.items():
        tails = out_passes[(tail, head)]
        want_in = f"In {_ranges(heads)}" if heads != passes[head] else None
        want_out = f"Out {_ranges(tails)}" if tails != passes[tail] else None
        assert drawn[(tail, head)].get("headlabel") == want_in, (tail, head)
        assert drawn[(tail, head)].get("taillabel") == want_out, (tail, head)


def test_cells_rolled_feedback_labels(draw):
    graph, _ = draw(HISTORIES["cells"], vis_opt="rolled")
    drawn = {(t, h): attrs for t, h, attrs in graph.edges}
    loop = drawn[("lstmcell_1_8", "lstmcell_1_8")]
    assert (loop["headlabel"], loop["taillabel"]) == ("In 2-4", "Out 1-3")
    assert drawn[("lstmcell_1_8", "linear_1_10")]["taillabel"] == "Out 4"


def test_loop_rolled_exit_edge(draw):
    history = HISTORIES["loop"]
    fc = history["fc:1"].layer_label_no_pass
    assert history["fc:1"].num_passes == 3
    graph, _ = draw(history, vis_opt="rolled")
    assert graph.nodes[fc]["text"].startswith(f"{fc} (×3)")
    exits = [attrs for t, h, attrs in graph.edges if h == history["mul_1"].layer_label]
    assert len(exits) == 1


def test_module_boxes_merge_when_rolled(draw):
    history = HISTORIES["shared_modules"]
    unrolled, _ = draw(history)
    rolled, _ = draw(history, vis_opt="rolled")
    assert sorted(c["label"] for c in unrolled.clusters.values()) == [
        f"block:{i} (SharedBlock)" for i in (1, 2, 3)]
    assert [c["label"] for c in rolled.clusters.values()] == ["block (SharedBlock)"]
    collapsed_unrolled, _ = draw(history, nesting_depth=1)
    collapsed_rolled, _ = draw(history, nesting_depth=1, vis_opt="rolled")
    assert {n for n in collapsed_unrolled.nodes if n.startswith("module")} == {
        f"module block:{i}" for i in (1, 2, 3)}
    assert {n for n in collapsed_rolled.nodes if n.startswith("module")} == {"module block"}
    loop = {(t, h): a for t, h, a in collapsed_rolled.edges}[("module block", "module block")]
    assert (loop["headlabel"], loop["taillabel"]) == ("In 2-3", "Out 1-2")
    assert collapsed_rolled.nodes["module block"]["text"].startswith("block (×3)")
