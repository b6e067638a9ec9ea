"""If-branch flags against hand expectations from the model code (the paper's heuristic)."""

import torch
from torch import nn

import torchlens_like as tll
from zoo import CASES


def _flags(history):
    return {layer.layer_label: (layer.is_cond_bool, layer.in_cond_branch, layer.cond_branch_start)
            for layer in history if layer.in_cond_branch or layer.is_cond_bool}


def _log(name):
    case = CASES[name]()
    return tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)


def test_paper_example_mean_of_x_minus_5_greater_than_3():
    # `if torch.mean(x - 5) > 3`: gt is the childless bool, sub is where the branch starts
    assert _flags(_log("conditional")) == {
        "sub_1_2": (False, True, True),
        "mean_1_3": (False, True, False),
        "gt_1_4": (True, True, False),
    }


def test_chained_nested_and_unused_conditions():
    assert _flags(_log("nested_conditions")) == {
        # (x.mean() > 0) & (x.std() < 10): only the combined bool is the condition
        "mean_1_2": (False, True, True), "gt_1_3": (False, True, False),
        "std_1_4": (False, True, True), "lt_1_5": (False, True, False),
        "and_1_6": (True, True, False),
        # the nested `if torch.max(x - 1) > -100` inside the first branch
        "sub_1_8": (False, True, True), "max_1_9": (False, True, False),
        "gt_2_10": (True, True, False),
        # `flag = x.sum() > 1e6`, evaluated and never used: marked like an if
        "sum_1_12": (False, True, True), "gt_3_13": (True, True, False),
    }
    # the bool that feeds torch.where is data, not a condition
    history = _log("nested_conditions")
    assert not history["gt_4_15"].is_cond_bool and not history["gt_4_15"].in_cond_branch


class _Shared(nn.Module):
    def forward(self, x):
        m = x.mean()
        if m > 0:
            x = x + 1
        if m < 100:
            x = x * 2
        return x


def test_two_conditions_share_their_start():
    history = tll.log_forward_pass(_Shared(), torch.ones(2, 3))
    assert _flags(history) == {"mean_1_2": (False, True, True), "gt_1_3": (True, True, False),
                               "lt_1_5": (True, True, False)}


def test_returned_bool_and_python_number_conditions_are_not_marked():
    def returns_bool(x):
        return x.sum() > 0

    def on_item(x):
        return x * 2 if x.mean().item() > 0 else x

    assert _flags(tll.log_forward_pass(returns_bool, torch.ones(3))) == {}
    assert _flags(tll.log_forward_pass(on_item, torch.ones(3))) == {}


def test_multi_element_or_float_childless_results_are_not_conditions():
    def model(x):
        unused_mask = x > 0
        unused_mean = x.mean()
        del unused_mask, unused_mean
        return x + 1

    history = tll.log_forward_pass(model, torch.ones(3))
    assert _flags(history) == {}
    assert history["gt_1"].child_layers == [] and history["mean_1"].child_layers == []
