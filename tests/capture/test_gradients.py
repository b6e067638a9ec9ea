"""The capture side of save_gradients: edges, per-call parameter views, saved values kept safe."""

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


def test_activations_held_only_by_the_graph_are_not_copied():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    history = tll.log_forward_pass(model, torch.randn(2, 3), save_gradients=True)
    tanh = history["1"].tensor_contents
    graph_saved = history.grad_graph.recorder.edges[history["1"].meta["capture_index"]]
    assert tanh.untyped_storage().data_ptr() == \
        graph_saved.node._saved_result.untyped_storage().data_ptr()


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
