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
    import time

    import numpy as np

    first_inside, second_inside = threading.Event(), threading.Event()

    class Slow(nn.Module):
        """The first pass lingers until the second enters (or 0.5 s), which then lingers."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            if not first_inside.is_set():
                first_inside.set()
                second_inside.wait(0.5)
            elif not second_inside.is_set():
                second_inside.set()
                time.sleep(0.3)
            offset = torch.from_numpy(np.full(3, 0.5, dtype=np.float32))
            return torch.relu(self.fc(x) + offset)

    torch.manual_seed(0)
    model = nn.Sequential(Slow(), nn.Tanh())
    inputs = [torch.rand(2, 3), torch.rand(2, 3)]
    originals = (torch.from_numpy, torch.overrides.has_torch_function)
    histories, errors = {}, []

    def log(index):
        try:
            histories[index] = tll.log_forward_pass(model, inputs[index])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(i,)) for i in range(2)]
    threads[0].start()
    first_inside.wait(5)
    threads[1].start()
    for thread in threads:
        thread.join(30)
    assert not errors
    for index, x in enumerate(inputs):
        history = histories[index]
        assert torch.equal(history["0.fc"].tensor_contents, model[0].fc(x).detach())
        assert torch.equal(history["1"].tensor_contents, model(x).detach())
        assert history["fromnumpy_1"].containing_modules == ["0:1"]
    assert all("forward" not in module.__dict__ for module in model.modules())
    assert (torch.from_numpy, torch.overrides.has_torch_function) == originals
