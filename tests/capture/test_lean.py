"""The lean pass against forward hooks and full captures of the same input."""

import pytest
import torch
import torchvision
from torch import nn

import torchlens_like as tll
from torchlens_like.api import plan_lean_pass
from torchlens_like.capture import GraphDeparted, LeanUnavailable
from groundtruth import hooked_module_outputs


def lean_values(model, history, keys, x, stop_early=False):
    positions = [history[key].meta["capture_index"] for key in keys]
    plan = plan_lean_pass(model, history, positions)
    with torch.no_grad():
        kept = plan.run((x,), {}, stop_early=stop_early)
    return plan, {key: kept[position] for key, position in zip(keys, positions)}


@pytest.mark.parametrize("stop_early", [False, True])
def test_module_outputs_equal_forward_hooks_and_a_full_capture_bitwise(stop_early):
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x, other = torch.rand(2, 3, 64, 64), torch.rand(3, 3, 64, 64)
    history = tll.log_forward_pass(model, x)
    keys = ["layer1.0.bn1", "layer2", "layer3.1.conv2"]
    plan, kept = lean_values(model, history, keys, other, stop_early)
    assert plan.path == "module_outputs"
    hooks = hooked_module_outputs(model, other, keys)
    full = tll.log_forward_pass(model, other, layers_to_save=keys)
    for key in keys:
        assert torch.equal(kept[key], hooks[key]), key
        assert torch.equal(kept[key], full[key].tensor_contents), key


def test_op_level_layers_equal_a_full_capture_bitwise():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x, other = torch.rand(2, 3, 64, 64), torch.rand(3, 3, 64, 64)
    history = tll.log_forward_pass(model, x)
    residual_add = next(layer.layer_label for layer in history
                        if layer.func_name in ("add", "add_", "__iadd__")
                        and not layer.module_outputs)
    keys = [residual_add, "layer1.0.conv1"]
    plan, kept = lean_values(model, history, keys, other)
    assert plan.path == "ops"
    full = tll.log_forward_pass(model, other, layers_to_save=keys)
    for key in keys:
        assert torch.equal(kept[key], full[key].tensor_contents), key


class InplaceAfter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.conv(x)
        z = torch.sigmoid(y)
        self.act(y)
        y += 1
        return y * z


@pytest.mark.parametrize("keys", [["conv"], ["conv", "sigmoid_1"]])
def test_a_kept_layer_written_in_place_later_keeps_its_value(keys):
    torch.manual_seed(0)
    model = InplaceAfter().eval()
    x, other = torch.rand(1, 3, 8, 8), torch.rand(2, 3, 8, 8) - 0.5
    history = tll.log_forward_pass(model, x)
    plan, kept = lean_values(model, history, keys, other)
    assert plan.path == ("module_outputs" if keys == ["conv"] else "ops")
    with torch.no_grad():
        expected = model.conv(other)
    assert torch.equal(kept["conv"], expected)
    assert (expected < 0).any()


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return torch.nn.functional.relu(self.lin(x)) * 3


def test_a_functional_relu_equals_the_hand_written_forward():
    torch.manual_seed(0)
    model = Functional().eval()
    history = tll.log_forward_pass(model, torch.rand(2, 4))
    other = torch.randn(5, 4)
    plan, kept = lean_values(model, history, ["relu_1"], other, stop_early=True)
    with torch.no_grad():
        assert torch.equal(kept["relu_1"], torch.relu(model.lin(other)))


class Choose(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)

    def forward(self, x, use_b=False):
        y = self.b(x) if use_b else self.a(x)
        return torch.tanh(y) if use_b else torch.relu(y)


def test_a_module_swap_and_a_different_function_are_named():
    model = Choose().eval()
    x = torch.rand(2, 3)
    history = tll.log_forward_pass(model, x)
    plan = plan_lean_pass(model, history, [history["relu_1"].meta["capture_index"]])
    with pytest.raises(GraphDeparted, match="module call #0 is 'b' after op #0 where the known "
                                            "graph has 'a'"):
        plan.run((x,), {"use_b": True})
    plan.module_starts[0] = (0, "b")
    with pytest.raises(GraphDeparted, match="op #1 is 'tanh' where the known graph has 'relu'"):
        plan.run((x,), {"use_b": True})


def test_nothing_is_left_behind_after_a_departure_or_an_error():
    model = Choose().eval()
    x = torch.rand(2, 3)
    history = tll.log_forward_pass(model, x)
    plan = plan_lean_pass(model, history, [history["relu_1"].meta["capture_index"]])
    originals = torch.from_numpy, torch.overrides.has_torch_function
    with pytest.raises(GraphDeparted):
        plan.run((x,), {"use_b": True})
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        plan.run((torch.rand(2, 5),), {})
    assert "forward" not in model.a.__dict__ and "forward" not in model.b.__dict__
    assert (torch.from_numpy, torch.overrides.has_torch_function) == originals
    assert torch._C._len_torch_function_stack() == 0
    assert tll.log_forward_pass(model, x)["relu_1"].tensor_contents is not None


def test_layers_that_are_not_traced_calls_are_refused():
    model = Choose().eval()
    history = tll.log_forward_pass(model, torch.rand(2, 3))
    with pytest.raises(LeanUnavailable, match="input_1_1"):
        plan_lean_pass(model, history, [history["input_1"].meta["capture_index"]])
