"""save_gradients + history.backward against plain autograd taken through forward hooks."""

import copy
import os
import warnings

import pytest
import torch
from torch import nn

import torchlens_like as tll
from groundtruth import (assert_model_unchanged, hooked_gradients, model_snapshot,
                         seed_everything, tensor_leaves)
from zoo import CASES, VALIDATION_CASES

RECURRENT = ["param_loop", "paper_fig4a", "nested_loops", "varying_loops", "recurrent_cells",
             "cells", "shared_modules", "param_free_repeats", "repeat_then_separate"]


def wavy_loss(out):
    """A loss reading every floating-point tensor the model returned, non-linearly."""
    return sum((t.float().sin() * (i + 1)).sum()
               for i, t in enumerate(tensor_leaves(out)) if t.is_floating_point())


class InPlace(nn.Module):
    """ReLU(inplace=True), ``+=``, ``mul_`` and an indexed write, all differentiable."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(5, 6)
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        y = self.act(self.fc(x))
        z = y * 2
        z += 1
        z.mul_(torch.linspace(0.5, 2, 6))
        z[:, 0] = 0.5
        return self.out(z)


class TwiceCalled(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        return self.head(self.fc(h) + h)


class UnusedBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.side = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x), self.side(x)


def _log(model, args, kwargs=None, seed=None, **options):
    return tll.log_forward_pass(model, args, kwargs, random_seed=seed, **options)


def assert_matches_hooks(model, args, kwargs=None, loss=wavy_loss, seed=None, atol=1e-6):
    """Every module call's outputs, the inputs and the summed per-pass parameter gradients."""
    twin = copy.deepcopy(model)
    if seed is not None:
        seed_everything(seed)
    inputs, calls, params = hooked_gradients(twin, args, kwargs, loss)
    history = _log(model, args, kwargs, seed=seed, save_gradients=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tll.NoGradientWarning)
        history.backward(loss)
    checked = 0
    for call, expected in calls.items():
        for label, grad in zip(history.module_outputs[call], expected):
            layer = history[label]
            if grad is None:
                assert not layer.has_grad, label
                continue
            assert layer.grad.shape == layer.tensor_contents.shape
            assert layer.grad.dtype == layer.tensor_contents.dtype
            torch.testing.assert_close(layer.grad, grad, atol=atol, rtol=1e-5, msg=label)
            checked += 1
    for label, grad in zip(history.input_layers, inputs):
        if grad is not None:
            torch.testing.assert_close(history[label].grad, grad, atol=atol, rtol=1e-5)
            checked += 1
    totals, calls_seen = {}, set()
    for layer in history:
        if layer.has_params and layer.has_grad and layer.call_index not in calls_seen:
            calls_seen.add(layer.call_index)
            for address, grad in layer.param_grads.items():
                totals[address] = totals.get(address, 0) + grad
    for address, grad in params.items():
        if grad is not None:
            torch.testing.assert_close(totals[address], grad, atol=atol, rtol=1e-5, msg=address)
            checked += 1
    assert checked
    return history


@pytest.mark.parametrize("name", sorted(set(CASES) - {"inplace_ops"}))
def test_every_zoo_case_matches_autograd_through_hooks(name):
    case = CASES[name]()
    assert_matches_hooks(case.model, case.args, case.kwargs, seed=case.seed)


@pytest.mark.parametrize("name", ["writes_its_input", "sdpa_dropout", "transformer_train",
                                  "dtype_donors", "autocast_region"])
def test_validation_classes_match_autograd_through_hooks(name):
    case = VALIDATION_CASES[name]()
    assert_matches_hooks(case.model, case.args, case.kwargs, seed=case.seed, atol=1e-4)


def test_a_parameter_read_by_autograd_inside_the_forward_is_named():
    case = VALIDATION_CASES["inner_gradient"]()
    x = case.args[0]
    history = _log(case.model, x, save_gradients=True)
    with pytest.warns(tll.NoGradientWarning, match="param_grads\\) of fc.weight may not add up"):
        history.backward(wavy_loss)
    expected = hooked_gradients(case.model, (x,), {}, wavy_loss)
    torch.testing.assert_close(history["input_1"].grad, expected[0][0])
    with pytest.warns(tll.NoGradientWarning, match="autograd"):
        assert history["grad_1"].param_grads is None


class _Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad * w, (grad * x).sum(0)


class ParameterReadWithoutGrad(nn.Module):
    """``w`` read by a linear op and inside a custom Function (or under no_grad)."""

    def __init__(self, custom):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(3))
        self.custom = custom

    def forward(self, x):
        h = torch.tanh(x * self.w)
        if self.custom:
            return _Scale.apply(h, self.w)
        with torch.no_grad():
            scale = self.w.abs().max()
        return h * scale


def _plain_parameter_grads(model, x, loss):
    model.zero_grad()
    loss(model(x.clone().requires_grad_(True).clone())).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def _summed_param_grads(history, address):
    calls = {layer.call_index: layer for layer in history if layer.has_param_grads}
    found = [layer.param_grads[address] for layer in calls.values()
             if address in layer.param_grads]
    return sum(found) if found else torch.zeros(())


def test_a_parameter_read_inside_a_custom_autograd_function_is_named():
    model, x = ParameterReadWithoutGrad(custom=True), torch.randn(2, 3)
    whole = _plain_parameter_grads(model, x, wavy_loss)["w"]
    history = _log(model, x, save_gradients=True)
    with pytest.warns(tll.NoGradientWarning, match="param_grads\\) of w do not add up"):
        history.backward(wavy_loss)
    assert not torch.allclose(_summed_param_grads(history, "w"), whole)


def test_a_parameter_read_under_no_grad_inside_the_forward_adds_up_and_is_not_named():
    model, x = ParameterReadWithoutGrad(custom=False), torch.randn(2, 3)
    whole = _plain_parameter_grads(model, x, wavy_loss)["w"]
    history = _log(model, x, save_gradients=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tll.NoGradientWarning)
        history.backward(wavy_loss)
    torch.testing.assert_close(_summed_param_grads(history, "w"), whole)


def test_a_parameter_the_model_returns_is_named():
    class ReturnsParameter(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.w = nn.Parameter(torch.randn(3, 3))

        def forward(self, x):
            return x @ self.w, self.w

    model, x = ReturnsParameter(), torch.randn(2, 3)
    loss = lambda out: out[0].sum() + (out[1] ** 2).sum()  # noqa: E731
    whole = _plain_parameter_grads(model, x, loss)["w"]
    history = _log(model, x, save_gradients=True)
    with pytest.warns(tll.NoGradientWarning, match="param_grads\\) of w may not add up"):
        history.backward(loss)
    assert not torch.allclose(_summed_param_grads(history, "w"), whole)


def test_in_place_ops_give_the_gradient_of_the_value_each_layer_recorded():
    model, x = InPlace(), torch.randn(4, 5)
    history = assert_matches_hooks(model, (x,))
    fc, relu = history["fc"], history["act"]
    assert fc.layer_label != relu.layer_label
    assert not torch.equal(fc.grad, relu.grad)
    torch.testing.assert_close(fc.grad, relu.grad * (fc.tensor_contents > 0))


def test_a_module_called_twice_gets_one_gradient_per_call_and_per_pass_parameter_grads():
    model, x = TwiceCalled(), torch.randn(3, 4)
    history = assert_matches_hooks(model, (x,))
    first, second = history["fc:1"], history["fc:2"]
    assert first.layer_label_no_pass == second.layer_label_no_pass
    assert not torch.allclose(first.param_grads["fc.weight"], second.param_grads["fc.weight"])
    model.zero_grad()
    wavy_loss(model(x)).backward()
    torch.testing.assert_close(first.param_grads["fc.weight"] + second.param_grads["fc.weight"],
                               model.fc.weight.grad)
    torch.testing.assert_close(first.param_grads["fc.bias"] + second.param_grads["fc.bias"],
                               model.fc.bias.grad)


def test_a_hugging_face_transformer_called_with_keywords():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    kwargs = {"input_ids": torch.randint(0, 50, (2, 6)),
              "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    history = assert_matches_hooks(model, (), kwargs, loss=lambda out: out.logits[:, -1, 3].sum())
    assert history["transformer.h.1.mlp"].has_grad
    assert not history["input_1"].has_grad  # token ids are integers


@pytest.mark.parametrize("name", RECURRENT)
def test_graph_labels_and_recurrence_are_the_same_with_and_without_gradients(name):
    def described(history):
        return [(layer.layer_label, layer.parent_layers, layer.child_layers, layer.num_passes,
                 layer.containing_modules, layer.module_outputs, layer.param_names,
                 layer.func_name, layer.tensor_shape) for layer in history]

    case = CASES[name]()
    plain = _log(case.model, case.args, case.kwargs, seed=case.seed)
    case = CASES[name]()
    with_gradients = _log(case.model, case.args, case.kwargs, seed=case.seed,
                          save_gradients=True)
    assert described(with_gradients) == described(plain)
    assert with_gradients.module_outputs == plain.module_outputs
    assert any(layer.is_recurrent for layer in plain)
    for label in plain.layer_labels:
        if plain[label].has_saved_activation and plain[label].tensor_dtype.startswith("float"):
            torch.testing.assert_close(with_gradients[label].tensor_contents,
                                       plain[label].tensor_contents)


def test_sites_choose_the_layers_and_their_gradients_equal_the_full_run():
    model, x = TwiceCalled(), torch.randn(3, 4)
    full = _log(model, x, save_gradients=True)
    full.backward(wavy_loss)
    sites = _log(model, x, save_gradients=["fc", tll.select(func="tanh")])
    sites.backward(wavy_loss)
    chosen = {layer.layer_label for layer in sites if layer.has_grad}
    assert chosen == {"input_1_1", "linear_1_2:1", "linear_1_2:2", "tanh_1_3"}
    for label in chosen:
        torch.testing.assert_close(sites[label].grad, full[label].grad)
    with pytest.warns(tll.NoGradientWarning, match="'add_1_4' has no gradient: it was not among"):
        assert sites["add_1"].grad is None
    with pytest.raises(KeyError, match="save_gradients"):
        _log(model, x, save_gradients=["fc9"])
    with pytest.raises(ValueError, match="save_gradients must be"):
        _log(model, x, save_gradients=3.5)


def test_layers_to_save_and_save_gradients_combine():
    model, x = TwiceCalled(), torch.randn(3, 4)
    history = _log(model, x, layers_to_save=["head"], save_gradients=True)
    history.backward(wavy_loss)
    assert history.saved_layers == ["linear_2_5"]
    torch.testing.assert_close(history["input_1"].grad,
                               hooked_gradients(model, (x,), {}, wavy_loss)[0][0])


def test_the_caller_input_is_never_modified_nor_made_to_require_grad():
    case = VALIDATION_CASES["writes_its_input"]()
    x = case.args[0]
    before = x.clone()
    history = _log(case.model, (x,), save_gradients=True)
    history.backward(wavy_loss)
    assert torch.equal(x, before)
    assert not x.requires_grad and x.grad is None
    assert history["input_1"].has_grad


class WritesFirstReadsSecond(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.Linear(3, 3)

    def forward(self, a, b):
        a.mul_(2)
        return torch.tanh(self.f(b)) * a[:, :1]


ALIASED_INPUTS = {
    "same tensor twice": lambda x: (x, x),
    "a view as the second": lambda x: (x, x[:, :]),
    "overlapping views of one base": lambda x: (x[1:], x[:2]),
}
PRODUCT = lambda a, b: a * b  # noqa: E731


@pytest.mark.parametrize("model,name", [
    (PRODUCT, "same tensor twice"), (PRODUCT, "a view as the second"),
    (PRODUCT, "overlapping views of one base"),
    (WritesFirstReadsSecond(), "same tensor twice"),
    (WritesFirstReadsSecond(), "a view as the second")])
def test_inputs_sharing_memory_keep_sharing_it(model, name):
    """Graph and values as without save_gradients; input gradients as plain autograd's."""
    base = torch.randn(3, 3)
    plain = _log(model, ALIASED_INPUTS[name](base.clone()))
    history = _log(model, ALIASED_INPUTS[name](base.clone()), save_gradients=True)
    assert [(layer.layer_label, layer.parent_layers) for layer in history] == \
        [(layer.layer_label, layer.parent_layers) for layer in plain]
    inputs = ALIASED_INPUTS[name](base.clone().requires_grad_(True).clone())
    distinct = list({id(t): t for t in inputs}.values())
    hooked = {}
    for k, tensor in enumerate(distinct):
        tensor.register_hook(lambda grad, k=k: hooked.__setitem__(k, grad))
    expected_out = model(*inputs)
    for layer in history:
        if layer.layer_type == "output":
            assert torch.equal(layer.tensor_contents, expected_out.detach())
    loss = lambda out: (out * torch.linspace(-1, 2, out.numel()).view_as(out)).sum()  # noqa
    loss(expected_out).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tll.NoGradientWarning)
        history.backward(loss)
    assert len(history.input_layers) == len(distinct)
    for k, label in enumerate(history.input_layers):
        assert history[label].has_grad == (k in hooked)
        if k in hooked:
            torch.testing.assert_close(history[label].grad, hooked[k])


def test_gradients_are_contiguous_and_share_no_memory():
    """An ``add`` passes its gradient on unchanged and ``sum`` expands it: each is copied."""
    class AddSum(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.zeros(2, 3))

        def forward(self, x):
            return (torch.tanh(x) + self.b).pow(2).sum(1)

    model, x = AddSum(), torch.randn(2, 3)
    leaf = x.clone().requires_grad_(True)
    tanh = torch.tanh(leaf)
    tanh.retain_grad()
    total = tanh + model.b
    total.retain_grad()
    out = total.pow(2).sum(1)
    out.retain_grad()
    out.sum().backward()
    expected = {"tanh_1": tanh.grad, "add_1": total.grad, "sum_1": out.grad}
    history = _log(model, x, save_gradients=True)
    history.backward(lambda out: out.sum())
    grads = [history[label].grad for label in expected] + [history["add_1"].param_grads["b"]]
    assert all(grad.is_contiguous() and 0 not in grad.stride() for grad in grads)
    assert len({grad.untyped_storage().data_ptr() for grad in grads}) == len(grads)
    history["tanh_1"].grad.mul_(0)
    for label in ("add_1", "sum_1"):
        torch.testing.assert_close(history[label].grad, expected[label])
    torch.testing.assert_close(history["add_1"].param_grads["b"], model.b.grad)


def test_backward_leaves_grad_fields_flags_and_grad_mode_as_they_were():
    model, x = TwiceCalled(), torch.randn(3, 4)
    model.head.weight.requires_grad_(False)
    model.fc.bias.grad = torch.full((4,), 7.0)
    snapshot = model_snapshot(model)
    history = _log(model, x, save_gradients=True)
    with torch.no_grad():
        history.backward(wavy_loss)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert model.fc.weight.grad is None and model.head.bias.grad is None
    assert torch.equal(model.fc.bias.grad, torch.full((4,), 7.0))
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, True]
    assert_model_unchanged(snapshot, model)
    head = history["head"]
    assert sorted(head.param_grads) == ["head.bias"]
    assert history["fc:1"].has_grad


def test_a_layer_that_does_not_reach_the_loss_is_named():
    model, x = UnusedBranch(), torch.randn(2, 3)
    history = _log(model, x, save_gradients=True)
    with pytest.warns(tll.NoGradientWarning, match=r"2 chosen layer\(s\) got no gradient: "
                                                   r"linear_2_3, output_2_5"):
        history.backward(lambda out: out[0].sum())
    with pytest.warns(tll.NoGradientWarning, match="'linear_2_3' has no gradient: it does not "
                                                   "reach the loss"):
        assert history["side"].grad is None
    with pytest.warns(tll.NoGradientWarning, match="has no parameter gradients"):
        assert history["side"].param_grads is None
    assert history["fc"].has_grad


def test_an_integer_layer_chosen_by_name_is_named():
    history = _log(lambda x: ((x * 2).argmax(-1), (x * 3).sum()), torch.randn(2, 3),
                   save_gradients=["argmax_1", "mul_2"])
    with pytest.warns(tll.NoGradientWarning, match="argmax_1_3"):
        history.backward(lambda out: out[1])
    with pytest.warns(tll.NoGradientWarning, match="did not require grad"):
        history["argmax_1"].grad
    assert history["mul_2"].has_grad


def test_a_pass_under_no_grad_says_so_at_logging_and_at_backward():
    model, x = TwiceCalled(), torch.randn(3, 4)
    with torch.no_grad(), pytest.warns(tll.NoGradientWarning, match="no_grad"):
        history = _log(model, x, save_gradients=True)
    with pytest.raises(RuntimeError, match="ran under torch.no_grad"):
        history.backward(wavy_loss)


def test_a_second_backward_says_what_to_do_and_retain_graph_allows_another_loss():
    model, x = TwiceCalled(), torch.randn(3, 4)
    history = _log(model, x, save_gradients=True)
    history.backward(lambda out: out[:, 0].sum())
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        history.backward(lambda out: out[:, 1].sum())

    history = _log(model, x, save_gradients=True)
    history.backward(lambda out: out[:, 0].sum(), retain_graph=True)
    history.backward(lambda out: out[:, 1].sum())
    expected = hooked_gradients(model, (x,), {}, lambda out: out[:, 1].sum())
    torch.testing.assert_close(history["input_1"].grad, expected[0][0])
    torch.testing.assert_close(history["fc:2"].grad, expected[1]["fc:2"][0])
    with pytest.raises(RuntimeError, match="freed by an earlier history.backward\\(...\\) "
                       "without retain_graph=True") as raised:
        history.backward(lambda out: out[:, 2].sum())
    assert "first" not in str(raised.value)


def test_views_rebased_by_a_write_through_another_view_say_so():
    """Autograd's own hooks on those views do not fire either: the write gave a new path."""
    torch.manual_seed(0)
    fc = nn.Linear(4, 4)

    def model(x, hooks=None):
        y = fc(x).view(2, 2, 2)
        z = y[:, 0]
        for name, tensor in (("view", y), ("getitem", z)):
            if hooks is not None:
                tensor.register_hook(lambda grad, name=name: hooks.__setitem__(name, grad))
        z.mul_(3)
        return (y.transpose(1, 2).flatten(1) ** 2).sum(1)

    x, hooks = torch.randn(2, 4), {}
    model(x.clone().requires_grad_(True), hooks).sum().backward()
    assert hooks == {}
    history = _log(model, x, save_gradients=True)
    with pytest.warns(tll.NoGradientWarning, match="view_1_3, getitem_1_4"):
        history.backward(lambda out: out.sum())
    for label in ("view_1", "getitem_1"):
        with pytest.warns(tll.NoGradientWarning, match="view of memory that an in-place op wrote"):
            assert history[label].grad is None
    with pytest.warns(tll.NoGradientWarning, match="autograd found no path"):
        unused = _log(UnusedBranch(), torch.randn(2, 3), save_gradients=True)
        unused.backward(lambda out: out[0].sum())
        assert unused["side"].grad is None


def test_release_graph_frees_the_graph_and_the_layers_say_why():
    model, x = TwiceCalled(), torch.randn(3, 4)
    history = _log(model, x, save_gradients=True)
    graph = history.grad_graph
    history.release_graph()
    assert history.grad_graph is None and graph.recorder.output is None
    assert graph.recorder.edges == {}
    with pytest.warns(tll.NoGradientWarning, match="release_graph"):
        history["fc:1"].grad
    with pytest.raises(RuntimeError, match="save_gradients"):
        history.backward(wavy_loss)
    with pytest.raises(RuntimeError, match="save_gradients"):
        _log(model, x).backward(wavy_loss)


def test_bad_losses_are_refused_with_what_to_do():
    history = _log(TwiceCalled(), torch.randn(3, 4), save_gradients=True)
    with pytest.raises(TypeError, match="callable"):
        history.backward(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"single-element tensor, got shape \(3, 3\)"):
        history.backward(lambda out: out)
    with pytest.raises(RuntimeError, match="does not depend"):
        history.backward(lambda out: out.detach().sum())


def test_gradients_are_saved_and_loaded(tmp_path):
    model, x = TwiceCalled(), torch.randn(3, 4)
    history = _log(model, x, save_gradients=["fc"])
    history.backward(wavy_loss)
    loaded = tll.load_history(history.save(os.path.join(tmp_path, "run.tll")))
    for label in ("input_1_1", "linear_1_2:1", "linear_1_2:2"):
        assert torch.equal(loaded[label].grad, history[label].grad)
        assert loaded[label].param_grads.keys() == history[label].param_grads.keys()
        for address, grad in history[label].param_grads.items():
            assert torch.equal(loaded[label].param_grads[address], grad)
    assert not loaded["tanh_1"].has_grad
    assert loaded.grad_graph is None
    with pytest.raises(RuntimeError, match="loaded from a file"):
        loaded.backward(wavy_loss)


def test_a_plain_history_has_no_gradients_and_says_how_to_get_them():
    history = _log(nn.Linear(2, 2), torch.ones(1, 2))
    with pytest.warns(tll.NoGradientWarning, match="save_gradients=True"):
        assert history["linear_1"].grad is None
    assert history.grad_graph is None
