"""ModelHistory exports (pandas, networkx, summary) against forward hooks and the model itself."""

import copy
import re
from collections import Counter

import networkx as nx
import torch
import torchvision

import torchlens_like as tll
from groundtruth import hooked_forward
from torchlens_like.graph import PASSES, lint
from zoo import CASES


def _resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval(), torch.rand(1, 3, 64, 64)


def _resnet_history():
    return tll.log_forward_pass(*_resnet())


def _bytes(tensor):
    return tensor.numel() * tensor.element_size()


def _hooked_outputs_by_address(model, x):
    """``{module address: [first output tensor of each call]}`` from plain-forward hooks."""
    _, calls = hooked_forward(copy.deepcopy(model), (x,), {})
    found = {}
    for module_call, outputs in calls.items():
        found.setdefault(module_call.rsplit(":", 1)[0], []).append(outputs[0])
    return found


def test_to_pandas_rows_against_forward_hooks_and_the_models_parameters():
    model, x = _resnet()
    hooked = _hooked_outputs_by_address(model, x)
    frame = tll.log_forward_pass(model, x).to_pandas()
    modules = dict(model.named_modules())
    for address, outputs in hooked.items():
        rows = frame[frame["module_outputs"].map(lambda found: address in found)]
        assert sorted(rows["tensor_shape"]) == sorted(tuple(t.shape) for t in outputs), address
        assert set(rows["tensor_dtype"]) == {str(t.dtype).removeprefix("torch.") for t in outputs}
        assert sorted(rows["tensor_fsize"]) == sorted(_bytes(t) for t in outputs)
        own = dict(modules[address].named_parameters(recurse=False))
        if own:
            for _, row in rows.iterrows():
                assert row["param_names"] == [f"{address}.{name}" for name in own]
                assert row["param_shapes"] == [tuple(p.shape) for p in own.values()]
                assert row["params_fsize"] == sum(_bytes(p) for p in own.values())
    named = dict(model.named_parameters())
    assert sorted(name for names in frame["param_names"] for name in names) == sorted(named)


def _summary_rows(text):
    """``(header, {layer label: {column: cell}})``, cells cut at the dashed rule's columns."""
    header, titles, rule, *lines = text.splitlines()
    starts = [match.start() for match in re.finditer(r"-+", rule)]
    ends = starts[1:] + [None]
    columns = [titles[a:b].strip() for a, b in zip(starts, ends)]
    rows = {}
    for line in lines:
        cells = dict(zip(columns, (line[a:b].strip() for a, b in zip(starts, ends))))
        rows[cells["layer"]] = cells
    return header, rows


def test_summary_against_forward_hooks_and_the_models_parameters():
    model, x = _resnet()
    hooked = _hooked_outputs_by_address(model, x)
    header, rows = _summary_rows(tll.log_forward_pass(model, x).summary())
    total = sum(p.numel() for p in model.parameters())
    assert f"{total:,} parameters" in header
    modules = dict(model.named_modules())
    for address, outputs in hooked.items():
        mine = [row for row in rows.values()
                if address in row["module"].split(", ") and row["function"] != "buffer"]
        shown = Counter(row["output shape"] for row in mine)
        assert not Counter("x".join(map(str, t.shape)) for t in outputs) - shown, address
        own = list(modules[address].parameters(recurse=False))
        if own:
            for row in mine:
                assert row["params"] == ", ".join("x".join(map(str, p.shape)) for p in own)


def test_to_networkx_edges_match_parents():
    history = _resnet_history()
    graph = history.to_networkx()
    assert list(graph.nodes) == history.layer_labels
    expected = {(p, layer.layer_label) for layer in history for p in layer.parent_layers}
    assert set(graph.edges) == expected
    assert nx.is_directed_acyclic_graph(graph)
    assert list(nx.topological_sort(graph))[0] == "input_1_1"
    lengths = nx.single_source_shortest_path_length(graph, "input_1_1")
    for layer in history:
        assert layer.distance_from_input == lengths.get(layer.layer_label)


def test_lint_holds_on_every_zoo_graph():
    for name, build in CASES.items():
        case = build()
        history = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
        assert lint(history.layers) == [], name
        assert len(set(history.layer_labels)) == len(history)


def test_lint_finds_broken_graphs():
    history = _resnet_history()
    layers = PASSES[-1](history.layers)
    layers[5].child_nodes.append(layers[2])
    problems = lint(layers)
    assert any("does not list it as parent" in p for p in problems)
    swapped = [layers[1], layers[0]] + layers[2:]
    assert any("not topological" in p for p in lint(swapped))
