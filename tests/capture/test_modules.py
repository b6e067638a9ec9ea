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


def test_same_model_logged_from_two_threads_at_once():
    import threading

    import numpy as np

    both_inside = threading.Barrier(2)

    class Meeting(nn.Module):
        """Both passes must be inside this forward at the same time to get past it."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            if threading.current_thread() is not threading.main_thread():
                both_inside.wait(10)
            offset = torch.from_numpy(np.full(3, 0.5, dtype=np.float32))
            return torch.relu(self.fc(x) + offset)

    torch.manual_seed(0)
    model = nn.Sequential(Meeting(), nn.Tanh())
    inputs = [torch.rand(2, 3), torch.rand(2, 3)]
    originals = (torch.from_numpy, torch.overrides.has_torch_function)
    histories, errors = {}, []

    def log(index):
        try:
            histories[index] = tll.log_forward_pass(model, inputs[index])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    for index, x in enumerate(inputs):
        history = histories[index]
        assert torch.equal(history["0.fc"].tensor_contents, model[0].fc(x).detach())
        assert torch.equal(history["1"].tensor_contents, model(x).detach())
        assert history["fromnumpy_1"].containing_modules == ["0:1"]
        assert history.module_outputs == {"0.fc:1": ["linear_1_3"], "0:1": ["relu_1_5"],
                                          "1:1": ["tanh_1_6"]}
    assert all("forward" not in module.__dict__ for module in model.modules())
    assert (torch.from_numpy, torch.overrides.has_torch_function) == originals
