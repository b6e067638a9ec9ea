"""Module containment of internally generated tensors and buffers, against the model code."""

import torch
import torchvision

import torchlens_like as tll
from zoo import CASES


def _log(name):
    case = CASES[name]()
    return tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)


def test_tensors_created_inside_modules_stay_in_them():
    history = _log("internal_in_modules")
    ones, zeros = history["ones_1"], history["zeros_1"]
    assert ones.is_internally_generated and zeros.is_internally_generated
    # torch.ones runs in OnesBlock.forward; its first child descending from the input agrees
    first_child = next(layer for layer in history
                       if layer.meta["has_input_ancestor"] and layer.kind == "op"
                       and ones in _ancestors(layer))
    assert ones.containing_modules == ["block:1"] == first_child.containing_modules
    # torch.zeros is Init's output: it stays in init although it is consumed in block
    assert zeros.containing_modules == ["init:1"]
    assert history.module_outputs["init:1"] == [zeros.layer_label]


def _ancestors(layer):
    seen, stack = [], list(layer.parent_nodes)
    while stack:
        node = stack.pop()
        if all(node is not s for s in seen):
            seen.append(node)
            stack.extend(node.parent_nodes)
    return seen


def test_buffers_take_the_containment_of_the_module_reading_them():
    history = _log("internal_in_modules")
    buffers = [layer for layer in history if layer.kind == "buffer"]
    assert [(b.source, b.containing_modules) for b in buffers] == [
        ("norm.running_mean", ["norm:1"]), ("norm.running_var", ["norm:1"])]
    # a buffer of the top-level module read at top level
    history = _log("buffers_eval")
    assert {b.source: b.containing_modules for b in history if b.kind == "buffer"} == {
        "bn.running_mean": ["bn:1"], "bn.running_var": ["bn:1"], "scale": []}


def test_nested_buffers_in_resnet():
    torch.manual_seed(0)
    history = tll.get_model_metadata(torchvision.models.resnet18().eval(),
                                     torch.rand(1, 3, 32, 32))
    for layer in history:
        if layer.kind == "buffer":
            owner = layer.source.rsplit(".", 1)[0]
            parts = owner.split(".")
            expected = [".".join(parts[:i]) + ":1" for i in range(1, len(parts) + 1)]
            assert layer.containing_modules == expected, layer.source
