"""The capture side of save_gradients: edges, per-call parameter views, saved values kept safe."""

import types

import numpy as np
import pytest
import torch
from torch import nn

import torchlens_like as tll
from torchlens_like.capture.gradients import GradientRecorder


class KeepsAndTransposes(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 3))
        self.kept = None

    def forward(self, x):
        h = torch.tanh(x @ self.w.t())
        self.kept = h * 2
        return self.kept.sum(-1)


def test_a_saved_view_of_a_parameter_is_a_copy_at_once():
    model = KeepsAndTransposes()
    history = tll.log_forward_pass(model, torch.randn(2, 3), save_gradients=True)
    saved = history["t_1"].tensor_contents.clone()
    with torch.no_grad():
        model.w.add_(1)
    assert torch.equal(history["t_1"].tensor_contents, saved)


def test_a_tensor_the_model_kept_is_copied_when_the_graph_is_freed():
    model = KeepsAndTransposes()
    history = tll.log_forward_pass(model, torch.randn(2, 3), save_gradients=True)
    saved = history["mul_1"].tensor_contents.clone()
    history.backward(lambda out: out.sum())
    with torch.no_grad():
        model.kept.add_(1)
    assert torch.equal(history["mul_1"].tensor_contents, saved)

    history = tll.log_forward_pass(model, torch.randn(2, 3), save_gradients=True)
    saved = history["mul_1"].tensor_contents.clone()
    history.release_graph()
    with torch.no_grad():
        model.kept.add_(1)
    assert torch.equal(history["mul_1"].tensor_contents, saved)


class KeepsCache(nn.Module):
    """Keeps an activation autograd does not save (``add``) and writes it after the pass."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        self.cache = self.lin(x) + 1
        return (self.cache * 2).sum(1)

    def later(self):
        with torch.no_grad():
            self.cache.add_(100)


class KeepsInput(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        self.last = x
        return self.lin(x)

    def later(self):
        with torch.no_grad():
            self.last.zero_()


class FromNumpy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.arr = np.ones(3, dtype=np.float32)
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x * torch.from_numpy(self.arr))

    def later(self):
        self.arr += 5


class _WritesSaved(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x.mul_(2).mul_(grad)


class BackwardWritesSaved(nn.Module):
    """A custom Function whose backward reuses the memory of what it saved (as InPlaceABN)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return _WritesSaved.apply(self.lin(x)).sum(1)

    def later(self):
        pass


class NamespaceInput(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3)

    def forward(self, batch):
        return self.lin(batch.x.view(2, 3)).sum(1)


def _plain_values(model, args):
    """``{func name: value}`` of the first call of each function, taken by hand in a plain pass."""
    found = {}

    class Grab(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "")
            if isinstance(out, torch.Tensor) and name not in found:
                found[name] = out.detach().clone()
            return out

    with Grab():
        model(*args)
    return found


@pytest.mark.parametrize("backward", ["backward", "release_graph", "neither"])
@pytest.mark.parametrize("model_class", [KeepsCache, KeepsInput, FromNumpy, BackwardWritesSaved])
def test_saved_values_ignore_later_writes_with_or_without_a_backward(model_class, backward):
    x = torch.randn(2, 3)
    expected = _plain_values(model_class(), (x.clone(),))
    model = model_class()
    history = tll.log_forward_pass(model, x, save_gradients=True)
    if backward == "backward":
        history.backward(lambda out: out.clamp_(min=0).sum())
    elif backward == "release_graph":
        history.release_graph()
    model.later()
    checked = 0
    for layer in history:
        if layer.layer_type == "input":
            assert torch.equal(layer.tensor_contents, x)
        elif layer.func_name in expected:
            assert torch.equal(layer.tensor_contents, expected[layer.func_name]), layer.layer_label
            checked += 1
    assert checked
    final = [layer for layer in history if layer.layer_type == "output"][0]
    assert torch.equal(final.tensor_contents, model_class()(x))


def test_a_saved_view_of_a_callers_tensor_in_an_object_is_a_copy():
    model = NamespaceInput()
    batch = types.SimpleNamespace(x=torch.randn(6))
    expected = batch.x.view(2, 3).clone()
    history = tll.log_forward_pass(model, [batch], save_gradients=True)
    batch.x.zero_()
    (view,) = [layer for layer in history if layer.func_name == "view"]
    assert torch.equal(view.tensor_contents, expected)


def test_views_of_one_activation_are_copied_once_and_still_share_memory():
    class Views(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.f = nn.Linear(6, 6)

        def forward(self, x):
            h = torch.tanh(self.f(x))
            return h.view(2, 3, 2).sum() + h.t().sum()

    x = torch.randn(2, 6)
    model = Views()
    tanh = torch.tanh(model.f(x)).detach()
    history = tll.log_forward_pass(model, x, save_gradients=True)
    layers = [history["tanh_1"], history["view_1"], history["t_1"]]
    for layer, expected in zip(layers, (tanh, tanh.view(2, 3, 2), tanh.t())):
        assert torch.equal(layer.tensor_contents, expected)
        assert layer.tensor_contents.stride() == expected.stride()
    assert len({layer.tensor_contents.untyped_storage().data_ptr() for layer in layers}) == 1
    graph = history.grad_graph.recorder.edges[history["tanh_1"].meta["capture_index"]]
    assert layers[0].tensor_contents.untyped_storage().data_ptr() != \
        graph.node._saved_result.untyped_storage().data_ptr()


def test_inputs_are_copied_floats_only():
    x, ids = torch.ones(2), torch.arange(3)
    (x_copy, ids_same), _ = GradientRecorder().copy_inputs((x, ids), {})
    assert x_copy.requires_grad and x_copy is not x and not x.requires_grad
    assert ids_same is ids
    with torch.no_grad():
        (x_same,), _ = GradientRecorder().copy_inputs((x,), {})
    assert x_same is x


def test_each_call_of_a_parameter_reads_its_own_view_and_the_graph_names_the_parameter():
    fc = nn.Linear(2, 2)
    history = tll.log_forward_pass(nn.Sequential(fc, fc), torch.ones(1, 2), save_gradients=True)
    recorder = history.grad_graph.recorder
    first, second = history["linear_1_2:1"], history["linear_1_2:2"]
    assert first.param_names == second.param_names == ["0.weight", "0.bias"]
    views = [recorder.param_edges[layer.call_index] for layer in (first, second)]
    assert [address for address, _ in views[0]] == ["0.weight", "0.bias"]
    assert views[0][0][1].node is not views[1][0][1].node
    assert recorder.unsplit == set()


def test_a_call_returning_its_parameter_keeps_the_graph_and_names_the_parameter():
    class Cast(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            w = self.w.to(torch.float32)
            return x * w + self.w

    plain = tll.log_forward_pass(Cast(), torch.ones(3))
    model = Cast()
    history = tll.log_forward_pass(model, torch.ones(3), save_gradients=True)
    assert [layer.parent_layers for layer in history] == [layer.parent_layers for layer in plain]
    assert history.grad_graph.recorder.unsplit == {"w"}
