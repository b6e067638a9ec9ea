"""Capture records where a tensor's values became Python values, and the weights' versions."""

import torch
from torch import nn

import torchlens_like as tll


class Converts(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        y = self.fc(x)
        scale = y.abs().max().item()
        if (y.abs() >= 0).any():
            y = y * 2
        same = torch.equal(y, y)
        return torch.relu(y) / (scale + int(same))


def test_each_conversion_is_recorded_on_the_node_whose_values_it_read():
    history = tll.log_forward_pass(Converts(), torch.rand(2, 3))
    marked = {layer.layer_label_short: layer.meta.get("to_python") for layer in history
              if layer.meta.get("to_python")}
    assert marked == {"max_1": ["item"], "any_1": ["__bool__"], "mul_1": ["equal"]}


def test_a_pass_without_conversions_marks_nothing():
    history = tll.log_forward_pass(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), torch.rand(2, 3))
    assert not any(layer.meta.get("to_python") for layer in history)


def test_replay_records_keep_the_weights_versions_at_the_end_of_the_pass():
    model = nn.Linear(3, 3)
    history = tll.log_forward_pass(model, torch.rand(2, 3))
    replay = history["linear_1"].replay
    recorded = {slot.name: version for slot, version in replay.versions.items()}
    assert recorded == {"weight": model.weight._version, "bias": model.bias._version}
    with torch.no_grad():
        model.weight.mul_(2)
    assert recorded["weight"] != model.weight._version
