"""Module tracking: instance-level forwards, caught exceptions, direct forward calls."""

import torch
from torch import nn

import torchlens_like as tll


def test_instance_level_forward_is_kept_and_tracked():
    block = nn.Linear(2, 2)

    def custom_forward(x):
        return nn.Linear.forward(block, x) * 3

    block.forward = custom_forward
    model = nn.Sequential(block, nn.ReLU())
    history = tll.log_forward_pass(model, torch.ones(1, 2))
    assert block.__dict__["forward"] is custom_forward
    assert "forward" not in model[1].__dict__
    assert history["0"].func_name == "mul"
    expected = torch.relu((torch.ones(1, 2) @ block.weight.T + block.bias) * 3)
    assert torch.equal(history["1"].tensor_contents, expected.detach())


def test_exception_caught_inside_model_closes_module():
    class Fragile(nn.Module):
        def forward(self, x):
            raise ValueError("nope")

    class Tolerant(nn.Module):
        def __init__(self):
            super().__init__()
            self.fragile = Fragile()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            try:
                x = self.fragile(x)
            except ValueError:
                pass
            return self.fc(x)

    inner = nn.Sequential(Tolerant())
    history = tll.log_forward_pass(inner, torch.ones(1, 2))
    assert history["linear_1"].containing_modules == ["0:1", "0.fc:1"]


def test_user_forward_hooks_still_run_once():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    calls = []
    model[0].register_forward_hook(lambda m, i, o: calls.append(o.shape))
    model[0].register_forward_pre_hook(lambda m, i: calls.append("pre"))
    tll.log_forward_pass(model, torch.ones(3, 2))
    assert calls == ["pre", torch.Size([3, 2])]
