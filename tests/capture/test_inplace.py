"""Saved values survive later in-place writes, through views too; nothing is copied needlessly."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlens_like as tll
from zoo import CASES


def test_view_mutation_values_match_hand_computation():
    case = CASES["view_mutation"]()
    x = case.args[0]
    history = tll.log_forward_pass(case.model, case.args)
    y = x * 1
    assert torch.equal(history["mul_1"].tensor_contents, y)
    assert torch.equal(history["getitem_1"].tensor_contents, y[0])
    assert torch.equal(history["mul_2"].tensor_contents, y[0].clone())
    after_add = y.clone()
    after_add[0] += 10
    assert torch.equal(history["add_1"].tensor_contents, after_add[0])
    after_zero = after_add.clone()
    after_zero[:, 0] = 0
    assert torch.equal(history["zero_1"].tensor_contents, after_zero.transpose(0, 1)[0])
    assert torch.equal(history["add_2"].tensor_contents, after_zero + y[0])


def test_inplace_ops_recorded_in_order_with_right_values():
    case = CASES["inplace_ops"]()
    x = case.args[0]
    history = tll.log_forward_pass(case.model, case.args)
    fc = case.model.fc
    linear = F.linear(x, fc.weight, fc.bias)
    relu = linear.relu()
    steps = {"linear_1": linear, "relu_1": relu, "add_1": relu + 1, "mul_1": (relu + 1) * 2}
    set_item = steps["mul_1"].clone()
    set_item[:, 0] = 0.5
    steps["setitem_1"] = set_item
    steps["sigmoid_1"] = set_item.sigmoid()
    steps["add_2"] = set_item.sigmoid() + set_item
    for label, expected in steps.items():
        assert torch.equal(history[label].tensor_contents.detach(), expected.detach()), label
    assert history["setitem_1"].func_name == "__setitem__"
    assert history["add_1"].func_name == "add_"


def test_out_argument_and_inplace_flag():
    def fn(x):
        y = x * 2
        z = F.relu(y - 1, inplace=True)
        buf = torch.empty(3)
        torch.add(z, 1, out=buf)
        return buf + y

    x = torch.tensor([0.0, 1.0, 2.0])
    history = tll.log_forward_pass(fn, x)
    assert torch.equal(history["sub_1"].tensor_contents, torch.tensor([-1.0, 1.0, 3.0]))
    assert torch.equal(history["relu_1"].tensor_contents, torch.tensor([0.0, 1.0, 3.0]))
    assert torch.equal(history["add_1"].tensor_contents, torch.tensor([1.0, 2.0, 4.0]))
    assert history["add_1"].parent_arg_positions == {"relu_1_4": 0, "empty_1_5": "out"}
    assert torch.equal(history["add_2"].tensor_contents, torch.tensor([1.0, 4.0, 8.0]))


@pytest.mark.parametrize("grad", [False, True])
def test_only_storage_held_outside_the_history_is_copied(grad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, requires_grad=grad)
    history = tll.log_forward_pass(lambda t: (t * 2).relu().view(3, 2) + 1, x)
    mul, relu = history["mul_1"].tensor_contents, history["relu_1"].tensor_contents
    view = history["view_1"].tensor_contents
    assert relu.data_ptr() == view.data_ptr()
    assert mul.data_ptr() != relu.data_ptr()
    assert history["input_1"].tensor_contents.data_ptr() != x.data_ptr()
    assert torch.equal(history["input_1"].tensor_contents, x.detach())


class _KeepsState(nn.Module):
    """Reads a parameter through a view and a NumPy table, keeps an activation on itself."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 3))
        self.table = np.ones(3, dtype=np.float32)
        self.fc = nn.Linear(3, 3)
        self.kept = None

    def forward(self, x):
        self.kept = x.relu()
        shift = torch.from_numpy(self.table).view(1, 3)
        return self.fc(x + self.token.expand(x.shape[0], -1) + shift)


def test_saved_values_survive_writes_after_the_pass():
    torch.manual_seed(0)
    model, x = _KeepsState(), torch.ones(2, 3)
    history = tll.log_forward_pass(model, x)
    assert history.validate()
    before = {label: history[label].tensor_contents.clone()
              for label in ("input_1", "expand_1", "relu_1", "fromnumpy_1", "view_1", "linear_1")}
    with torch.no_grad():
        x.add_(1)
        model.token.add_(5)
        model.kept.mul_(0)
        model.table[:] = 7
        for parameter in model.fc.parameters():
            parameter.mul_(3)
    for label, value in before.items():
        assert torch.equal(history[label].tensor_contents, value), label


def test_no_warning_about_unseen_writes_on_zoo():
    for name, build in CASES.items():
        case = build()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
