"""ModelHistory exports (pandas, networkx, summary) checked against the layers themselves."""

import networkx as nx
import torch
import torchvision

import torchlens_like as tll
from torchlens_like.graph import PASSES, lint, run_passes
from zoo import CASES


def _resnet_history():
    torch.manual_seed(0)
    return tll.log_forward_pass(torchvision.models.resnet18().eval(), torch.rand(1, 3, 64, 64))


def test_to_pandas_one_row_per_layer():
    history = _resnet_history()
    frame = history.to_pandas()
    assert len(frame) == len(history)
    assert list(frame["layer_label"]) == history.layer_labels
    row = frame.set_index("layer_label").loc["conv2d_1_2"]
    assert row["param_names"] == ["conv1.weight"]
    assert row["tensor_shape"] == (1, 64, 32, 32)
    assert row["tensor_fsize"] == 64 * 32 * 32 * 4
    assert frame["is_input"].sum() == 1 and frame["is_output"].sum() == 1


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


def test_summary_lists_every_layer():
    history = _resnet_history()
    text = history.summary()
    assert text.startswith("ResNet:")
    for label in history.layer_labels:
        assert f"\n{label} " in text
    assert str(history) == text


def test_lint_holds_on_every_zoo_graph():
    for name, build in CASES.items():
        case = build()
        history = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
        assert lint(history.layers) == [], name
        assert len(set(history.layer_labels)) == len(history)


def test_lint_finds_broken_graphs():
    history = _resnet_history()
    layers = run_passes(history.layers, PASSES[-1:])
    layers[5].child_nodes.append(layers[2])
    problems = lint(layers)
    assert any("does not list it as parent" in p for p in problems)
    swapped = [layers[1], layers[0]] + layers[2:]
    assert any("not topological" in p for p in lint(swapped))
