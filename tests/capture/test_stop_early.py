"""Saving layers at known positions, with the forward pass cut short once they are saved."""

import torch
import torchvision
from torch import nn

import torchlens_like as tll
from torchlens_like.api import log_layers_at_positions


def _module_state(model):
    return [(name, sorted(vars(m)), len(m._forward_hooks), m.training)
            for name, m in model.named_modules()]


def test_stop_early_saves_hooked_values_and_skips_the_rest():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(2, 3, 64, 64)
    history = tll.get_model_metadata(model, x)
    positions = {key: history[key].meta["capture_index"] for key in ("layer1", "layer2.0.conv1")}
    seen = {}
    hooks = [model.get_submodule(k).register_forward_hook(
        lambda m, i, o, k=k: seen.__setitem__(k, o.detach().clone())) for k in positions]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    state = _module_state(model)
    fc_calls = []
    probe = model.fc.register_forward_hook(lambda *a: fc_calls.append(1))
    tensors, ops = log_layers_at_positions(model, x, positions.values(), stop_early=True)
    probe.remove()
    assert fc_calls == []
    assert len(ops) == max(positions.values()) + 1
    for key, position in positions.items():
        assert torch.equal(tensors[position], seen[key]), key
    assert _module_state(model) == state
    assert torch._C._len_torch_function_stack() == 0
    assert tll.validate_saved_activations(model, x)


def test_non_module_op_and_full_pass_without_stop():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(1, 3, 64, 64)
    history = tll.get_model_metadata(model, x)
    add = next(layer for layer in history if layer.func_name in ("add", "__iadd__", "add_"))
    position = add.meta["capture_index"]
    block = model.layer1[0]
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        expected = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(stem))))) + stem
    tensors, ops = log_layers_at_positions(model, x, [position])
    assert torch.allclose(tensors[position], expected, atol=1e-6)
    assert ops[-1][0] == "output"


class CatchesEverything(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.second = nn.Linear(3, 3)

    def forward(self, x):
        try:
            y = self.first(x)
        except Exception:
            y = x
        return self.second(y)


def test_a_model_catching_exceptions_cannot_swallow_the_stop():
    model = CatchesEverything().eval()
    x = torch.rand(2, 3)
    position = tll.get_model_metadata(model, x)["first"].meta["capture_index"]
    calls = []
    model.second.register_forward_hook(lambda *a: calls.append(1))
    tensors, _ = log_layers_at_positions(model, x, [position], stop_early=True)
    assert torch.equal(tensors[position], model.first(x).detach()) and calls == []


def _live_tensors():
    import gc

    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())


class _Failing(nn.Module):
    def __init__(self, fail_in_torch_call):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.fail_in_torch_call = fail_in_torch_call

    def forward(self, x):
        x = self.block(x)
        if self.fail_in_torch_call:
            return x @ torch.ones(3, 3)
        raise ValueError("the model's own error")


def test_a_stopped_or_failed_pass_leaves_no_reference_cycle_holding_its_tensors():
    """With the cyclic collector off, every tensor of a pass is freed when the call ends."""
    import gc

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU()).eval()
    x = torch.rand(4, 8)
    failing = [_Failing(True), _Failing(False)]
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = _live_tensors()
        for _ in range(3):
            log_layers_at_positions(model, x, {2}, stop_early=True)
            for broken in failing:
                try:
                    tll.log_forward_pass(broken, x)
                except (RuntimeError, ValueError):
                    pass
        left = _live_tensors() - before
    finally:
        if was_enabled:
            gc.enable()
    assert left == 0, f"{left} tensors of the passes are still alive"
