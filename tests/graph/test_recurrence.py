"""Recurrence rules 1-3 against labels written out by hand from the paper's definitions."""

import pytest
import torch
import torchvision
from torch import nn

import torchlens_like as tll
from torchlens_like import LayerLookupError
from zoo import CASES


def _log(name):
    case = CASES[name]()
    return tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)


def _passes(n, *labels):
    return [f"{label}:{i}" for i in range(1, n + 1) for label in labels]


EXPECTED_LABELS = {
    # rule 1 (the linear) and rule 2 (the ReLU after each of its passes)
    "param_loop": ["input_1_1", *_passes(3, "linear_1_2", "relu_1_3"), "linear_2_4",
                   "output_1_5"],
    # the paper's Fig. 4A: cos before and add after each pass of the linear; sin once
    "paper_fig4a": ["input_1_1", "cos_1_2:1", "linear_1_3:1", "add_1_4:1", "sin_1_5",
                    "cos_1_2:2", "linear_1_3:2", "add_1_4:2", "output_1_6"],
    "nested_loops": ["input_1_1", *_passes(3, "linear_1_2", "tanh_1_3"), "linear_2_4:1",
                     *[f"{label}:{i}" for i in (4, 5, 6) for label in ("linear_1_2", "tanh_1_3")],
                     "linear_2_4:2", "output_1_5"],
    "varying_loops": ["input_1_1", "linear_1_2:1", "relu_1_3:1", "mul_1_4:1",
                      "linear_1_2:2", "relu_1_3:2", "linear_1_2:3", "relu_1_3:3", "mul_1_4:2",
                      "linear_1_2:4", "relu_1_3:4", "linear_1_2:5", "relu_1_3:5",
                      "linear_1_2:6", "relu_1_3:6", "mul_1_4:3", "output_1_5"],
    # rule 3: XYZXYZXYZ is a loop ...
    "param_free_repeats": ["input_1_1", *_passes(3, "cos_1_2", "relu_1_3", "mul_1_4"),
                           "output_1_5"],
    # ... XYZ A XYZ B XYZ is not ...
    "separated_repeats": ["input_1_1", "cos_1_2", "relu_1_3", "mul_1_4", "tan_1_5", "cos_2_6",
                          "relu_2_7", "mul_2_8", "sigmoid_1_9", "cos_3_10", "relu_3_11",
                          "mul_3_12", "output_1_13"],
    # ... and in XYZXYZ A XYZ (the paper's Fig. 4B) only the adjacent two are
    "repeat_then_separate": ["input_1_1", *_passes(2, "cos_1_2", "relu_1_3", "mul_1_4"),
                             "tan_1_5", "cos_2_6", "relu_2_7", "mul_2_8", "output_1_9"],
    "shared_modules": ["input_1_1", *_passes(3, "linear_1_2", "relu_1_3"), "linear_2_4",
                       "output_1_5"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LABELS))
def test_labels_follow_the_three_rules(name):
    history = _log(name)
    assert history.layer_labels == EXPECTED_LABELS[name]
    for layer in history:
        expected_passes = sum(other.layer_label_no_pass == layer.layer_label_no_pass
                              for other in history)
        assert layer.num_passes == expected_passes
        assert layer.is_recurrent == (expected_passes > 1)


def test_rule_recorded_per_layer():
    history = _log("varying_loops")
    assert {layer.layer_type: layer.meta["recurrence_rule"] for layer in history} == {
        "input": None, "linear": 1, "relu": 2, "mul": 2, "output": None}
    history = _log("param_free_repeats")
    assert {layer.meta["recurrence_rule"] for layer in history if layer.kind == "op"} == {3}


def test_pass_lookups():
    history = _log("paper_fig4a")
    assert history["linear_1:2"] is history["linear_1_3:2"] is history.layers[6]
    assert history["cos_1:1"].parent_layers == ["input_1_1"]
    assert history["cos_1_2:2"].parent_layers == ["sin_1_5"]
    with pytest.raises(LayerLookupError, match="linear_1_3:1"):
        history["linear_1"]


def test_per_pass_parents_and_children():
    history = _log("paper_fig4a")
    assert history.parents_by_pass("cos_1_2") == {1: ["input_1_1"], 2: ["sin_1_5"]}
    assert history.children_by_pass("add_1") == {1: ["sin_1_5"], 2: ["output_1_6"]}
    assert history.parents_by_pass("linear_1_3:2") == {1: ["cos_1_2"], 2: ["cos_1_2"]}
    assert history.parents_by_pass("sin_1_5") == {1: ["add_1_4"]}
    history = _log("varying_loops")
    assert history.children_by_pass("relu_1") == {
        1: ["mul_1_4"], 2: ["linear_1_2"], 3: ["mul_1_4"], 4: ["linear_1_2"],
        5: ["linear_1_2"], 6: ["mul_1_4"]}


def test_recurrent_cells_and_modules():
    history = _log("recurrent_cells")
    steps = 3
    for label in ("grucell_1", "rnntanhcell_1"):
        passes = [layer for layer in history if layer.layer_label.startswith(label + "_")]
        assert [layer.pass_num for layer in passes] == list(range(1, steps + 1))
        assert [layer.containing_modules for layer in passes] == [
            [f"{label.split('cell')[0].replace('tanh', '')}:{i}"] for i in range(1, steps + 1)]
    # the same nn.LSTM applied twice: each of its three outputs is one layer with two passes,
    # and the zero initial states it creates inside each call are grouped with it (rule 2)
    lstm = [layer for layer in history if layer.func_name == "lstm"]
    assert sorted({(layer.output_path, layer.num_passes) for layer in lstm}) == [
        ((0,), 2), ((1,), 2), ((2,), 2)]
    zeros = [layer for layer in history if layer.func_name == "zeros"]
    assert [layer.num_passes for layer in zeros] == [1, 1, 2, 2, 2, 2]
    # nn.RNN / nn.LSTM / nn.GRU modules called once run as one op each: nothing to group
    assert all(layer.num_passes == 1 for layer in _log("recurrents"))
    history = _log("cells")
    assert {layer.num_passes for layer in history if layer.func_name == "lstm_cell"} == {4}
    assert all(layer.num_passes == 1 for layer in history if layer.func_name == "unbind")


@pytest.mark.parametrize("name", ["branching", "inplace_ops", "attention",
                                  "transformer_encoder", "internal_tensors", "nested_io"])
def test_nothing_grouped_without_repeats(name):
    assert all(layer.num_passes == 1 for layer in _log(name))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121",
                                  "efficientnet_b0", "squeezenet1_0"])
def test_nothing_grouped_in_feedforward_torchvision_models(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name).eval()
    history = tll.get_model_metadata(model, torch.rand(1, 3, 64, 64))
    assert [layer.layer_label for layer in history if layer.num_passes > 1] == []


def test_identical_means_same_non_tensor_arguments():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.fc(x) * 2) * 3

    labels = tll.log_forward_pass(Model(), torch.ones(1, 3)).layer_labels
    assert labels == ["input_1_1", "linear_1_2:1", "mul_1_3", "linear_1_2:2", "mul_2_4",
                      "output_1_5"]


def test_a_plus_b_plus_c_is_not_a_loop():
    labels = tll.log_forward_pass(lambda a, b, c: a + b + c,
                                  (torch.ones(2), torch.ones(2), torch.ones(2))).layer_labels
    assert labels == ["input_1_1", "input_2_2", "input_3_3", "add_1_4", "add_2_5",
                      "output_1_6"]


def test_repeats_split_by_a_parameterised_op():
    fc = nn.Linear(2, 2)

    def forward(x):
        for _ in range(2):
            x = torch.cos(x).relu() * 2
        x = fc(x)
        return torch.cos(x).relu() * 2

    assert tll.log_forward_pass(forward, torch.ones(1, 2)).layer_labels == [
        "input_1_1", *_passes(2, "cos_1_2", "relu_1_3", "mul_1_4"), "linear_1_5", "cos_2_6",
        "relu_2_7", "mul_2_8", "output_1_9"]


def test_unrelated_identical_op_between_repeats_does_not_break_them():
    def forward(x, y):
        a = x.sin()
        b = y.sin()
        return a.sin(), b

    history = tll.log_forward_pass(forward, (torch.ones(2), torch.ones(2)))
    assert history.layer_labels == ["input_1_1", "input_2_2", "sin_1_3:1", "sin_2_4",
                                    "sin_1_3:2", "output_1_5", "output_2_6"]
