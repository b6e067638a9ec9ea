"""Validation of saved activations: passes on correct histories, catches corrupted ones."""

import copy

import networkx as nx
import pytest
import torch
import torchvision
from torch import nn

import torchlens_like as tll
from groundtruth import (assert_capture_matches_hooks, assert_model_unchanged, assert_same_rng,
                         model_snapshot, rng_state, seed_everything, set_rng_state,
                         tensor_leaves, torch_snapshot)
from torchlens_like.validate import (NOT_REPLAYABLE, TOLERANCES, ValidationError,
                                     validate_history)
from zoo import CASES, VALIDATION_CASES


def _log(name):
    case = CASES[name]()
    return tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_zoo_model_validates_and_leaves_no_trace(name):
    case = CASES[name]()
    torch_before = torch_snapshot()
    model_before = model_snapshot(case.model)
    after_one_forward = _after_one_plain_forward(case)[0]
    rng_before = rng_state()
    assert tll.validate_saved_activations(case.model, case.args, case.kwargs,
                                          random_seed=case.seed)
    assert torch_snapshot() == torch_before
    assert_model_unchanged(model_before, case.model, expected_buffers_from=after_one_forward)
    assert_same_rng(rng_state(), rng_before)


@pytest.mark.parametrize("name", sorted(CASES))
def test_history_validate_on_every_zoo_model(name):
    history = _log(name)
    rng_before = rng_state()
    saved = [layer.tensor_contents.clone() for layer in history]
    assert history.validate()
    assert_same_rng(rng_state(), rng_before)
    assert all(torch.equal(s, layer.tensor_contents) or s.isnan().any()
               for s, layer in zip(saved, history))


def _corrupt(tensor):
    """Change the values, keep shape and dtype."""
    if tensor.dtype == torch.bool:
        tensor.logical_not_()
    elif tensor.dtype.is_floating_point or tensor.dtype.is_complex:
        tensor.mul_(1.5).add_(0.25)
    else:
        tensor.add_(1)


def _small_models():
    torch.manual_seed(0)
    return {
        "resnet18": (torchvision.models.resnet18().eval(), torch.rand(1, 3, 32, 32)),
        "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small().eval(),
                               torch.rand(1, 3, 32, 32)),
        "vit": (torchvision.models.VisionTransformer(32, 8, 2, 2, 16, 32).eval(),
                torch.rand(1, 3, 32, 32)),
        "param_loop": (CASES["param_loop"]().model, CASES["param_loop"]().args[0]),
        "recurrents": (CASES["recurrents"]().model, CASES["recurrents"]().args[0]),
    }


MODELS = _small_models()


@pytest.mark.parametrize("where", ["start", "middle", "end"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_corrupted_activation_is_caught(name, where):
    model, x = MODELS[name]
    history = tll.log_forward_pass(model, x)
    assert history.validate()
    ops = [layer for layer in history if layer.kind == "op" and layer.tensor_contents.numel()]
    target = {"start": ops[0], "middle": ops[len(ops) // 2], "end": ops[-1]}[where]
    _corrupt(target.tensor_contents)
    assert history.validate() is False


@pytest.mark.parametrize("kind", ["input", "output"])
def test_corrupted_input_or_output_is_caught(kind):
    model, x = MODELS["resnet18"]
    history = tll.log_forward_pass(model, x)
    layer = history[history.input_layers[0] if kind == "input" else history.output_layers[0]]
    layer.tensor_contents = layer.tensor_contents + 1
    assert history.validate() is False


def test_verbose_failure_names_layer_function_and_difference(capsys):
    model, x = MODELS["resnet18"]
    history = tll.log_forward_pass(model, x)
    history["relu_3"].tensor_contents.add_(2.0)
    assert history.validate(verbose=True) is False
    message = capsys.readouterr().out
    assert "relu" in message and "largest difference" in message
    assert any(label in message for label in (history["relu_3"].layer_label,
                                             *history["relu_3"].child_layers))
    with pytest.raises(ValidationError, match=r"largest difference 2\.0"):
        validate_history(history)


def test_verbose_success_message(capsys):
    assert tll.validate_saved_activations(nn.ReLU(), torch.ones(2), verbose=True)
    assert "passed" in capsys.readouterr().out


def test_perturbation_catches_a_function_that_ignores_its_parent():
    history = tll.log_forward_pass(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), torch.rand(2, 3))
    tanh = history["tanh_1"]
    constant = tanh.tensor_contents.clone()
    tanh.replay.func = lambda _: constant.clone()
    with pytest.raises(ValidationError, match="does not change .* when its parent linear_1_2"):
        validate_history(history)


class _Legit(nn.Module):
    def forward(self, x):
        zeros = x * 0
        like = torch.zeros_like(x) + x.new_ones(x.shape)
        big = torch.clamp(x, min=10.0)
        picks = torch.where(torch.ones_like(x, dtype=torch.bool), x, x.exp())
        index = x.argmax(dim=1, keepdim=True).float()
        comparison = (x > -100).float()
        return zeros + like + big + picks + index + comparison


def test_legitimately_insensitive_outputs_pass():
    assert tll.validate_saved_activations(_Legit(), torch.rand(3, 4))


def test_random_ops_replay_with_recorded_state():
    case = CASES["dropout_train"]()
    history = tll.log_forward_pass(case.model, case.args, random_seed=case.seed)
    before = rng_state()
    assert history.validate()
    assert_same_rng(rng_state(), before)
    dropout = history["dropout_1"]
    dropout.replay.rng_state = {"torch": torch.Generator().manual_seed(12345).get_state()}
    assert history.validate() is False


class _HalfPrecision(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.fc = nn.Linear(16, 16).to(dtype)
        self.dtype = dtype

    def forward(self, x):
        return torch.softmax(self.fc(x.to(self.dtype)).relu(), dim=-1).sum(dim=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision(dtype):
    torch.manual_seed(0)
    model = _HalfPrecision(dtype)
    history = tll.log_forward_pass(model, torch.rand(4, 16))
    assert history.validate()
    rtol, _ = TOLERANCES[dtype]
    history["relu_1"].tensor_contents.mul_(1 + 20 * rtol)
    assert history.validate() is False


def test_tolerances_are_looser_for_half_precision():
    assert TOLERANCES[torch.float16][0] > TOLERANCES[torch.float32][0] > \
        TOLERANCES[torch.float64][0]
    assert TOLERANCES[torch.bfloat16][0] >= TOLERANCES[torch.float16][0]


def test_needs_every_activation_saved():
    history = tll.log_forward_pass(nn.Sequential(nn.ReLU(), nn.Tanh()), torch.ones(2),
                                   layers_to_save=["1"])
    with pytest.raises(ValueError, match="layers_to_save='all'"):
        history.validate()


def test_refused_inside_a_logged_forward():
    history = tll.log_forward_pass(nn.ReLU(), torch.ones(2))

    class Inner(nn.Module):
        def forward(self, x):
            history.validate()
            return x

    with pytest.raises(RuntimeError, match="inside a logged forward pass"):
        tll.log_forward_pass(Inner(), torch.ones(2))


class _CountingBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x):
        self.calls += 1
        return x * self.calls


def test_buffers_end_as_after_one_forward():
    model = _CountingBuffer()
    tll.validate_saved_activations(model, torch.ones(2))
    assert torch.equal(model.calls, torch.ones(1))


def test_inputs_and_buffers_restored_when_the_model_raises():
    class FailsAfterWriting(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros(1))
            self.runs = 0

        def forward(self, x):
            self.calls += 1
            x.mul_(2)
            self.runs += 1
            if self.runs > 1:
                raise ValueError("second call")
            return x

    model, x = FailsAfterWriting(), torch.ones(2)
    with pytest.raises(ValueError, match="second call"):
        tll.validate_saved_activations(model, x)
    assert torch.equal(model.calls, torch.zeros(1)) and torch.equal(x, torch.ones(2))


def test_buffer_first_read_by_an_in_place_op():
    model = _CountingBuffer()
    assert tll.validate_saved_activations(model, torch.ones(2))
    before = model.calls.clone()
    history = tll.log_forward_pass(model, torch.ones(2))
    assert torch.equal(history[history.buffer_layers[0]].tensor_contents, before)
    assert torch.equal(model.calls, before + 1)


def test_train_mode_batch_norm_buffers_saved_before_update():
    torch.manual_seed(0)
    model = nn.BatchNorm1d(3).train()
    expected_mean = model.running_mean.clone()
    history = tll.log_forward_pass(model, torch.randn(5, 3))
    saved = history[history.buffer_layers[0]].tensor_contents
    assert torch.equal(saved, expected_mean)
    assert not torch.equal(model.running_mean, expected_mean)
    assert history.validate()


def test_model_outputs_compared_against_a_plain_forward(monkeypatch, capsys):
    """A history consistent in itself but whose output is not the model's is refused."""
    import torchlens_like.api as api

    real = api.log_forward_pass

    def self_consistent_but_wrong(*args, **kwargs):
        history = real(*args, **kwargs)
        linear, output = history["linear_1"], history[history.output_layers[0]]
        wrong = linear.tensor_contents + 1
        linear.tensor_contents, output.tensor_contents = wrong, wrong
        linear.replay.func = lambda *a, **k: wrong.clone()
        return history

    monkeypatch.setattr(api, "log_forward_pass", self_consistent_but_wrong)
    x = torch.rand(2, 3)
    assert real(nn.Linear(3, 3), x).validate()
    assert tll.validate_saved_activations(nn.Linear(3, 3), x, verbose=True) is False
    assert "differs from the plain call's output" in capsys.readouterr().out


# ------------------------------------------- the failure classes: honest histories pass

def _after_one_plain_forward(case):
    """A copy of the case's model and inputs after one plain forward from the same seed."""
    model, args, kwargs = copy.deepcopy((case.model, case.args, case.kwargs))
    rng = rng_state()
    if case.seed is not None:
        seed_everything(case.seed)
    model(*args, **kwargs)
    set_rng_state(rng)
    return model, args, kwargs


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_failure_class_model_is_captured_exactly(name):
    case = VALIDATION_CASES[name]()
    assert_capture_matches_hooks(case.model, case.args, case.kwargs, seed=case.seed)


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_failure_class_model_validates_and_ends_as_after_one_forward(name):
    """Validation passes, leaves the generators alone, and the caller's input and buffers end
    exactly as one plain forward leaves them (not as two)."""
    case = VALIDATION_CASES[name]()
    reference, ref_args, ref_kwargs = _after_one_plain_forward(case)
    rng_before = rng_state()
    assert tll.validate_saved_activations(case.model, case.args, case.kwargs,
                                          random_seed=case.seed, verbose=True)
    assert_same_rng(rng_state(), rng_before)
    for actual, expected in zip(tensor_leaves((case.args, case.kwargs)),
                                tensor_leaves((ref_args, ref_kwargs))):
        assert torch.equal(actual, expected)
    for (buffer_name, actual), (_, expected) in zip(case.model.named_buffers(),
                                                    reference.named_buffers()):
        assert torch.equal(actual, expected), buffer_name


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_failure_class_history_validates(name):
    case = VALIDATION_CASES[name]()
    history = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
    validate_history(history)


def test_random_draws_inside_a_composite_call_replay_with_their_state():
    case = VALIDATION_CASES["transformer_train"]()
    history = tll.log_forward_pass(case.model, case.args, random_seed=case.seed)
    assert history.validate()
    attention = next(layer for layer in history
                     if layer.func_name == "multi_head_attention_forward")
    attention.replay.rng_state = {"torch": torch.Generator().manual_seed(1).get_state()}
    assert history.validate() is False


def test_shape_donor_rule_covers_only_the_donor_argument():
    """``a.type_as(b)`` may ignore b's values, never a's."""
    history = tll.log_forward_pass(VALIDATION_CASES["dtype_donors"]().model, torch.randn(3, 8))
    typed = history["typeas_1"]
    saved = typed.tensor_contents.clone()
    typed.replay.func = lambda *args, **kwargs: saved.clone()
    with pytest.raises(ValidationError, match="parent insensitive"):
        validate_history(history)


def test_gradient_inside_forward_is_named_as_not_re_run(capsys):
    case = VALIDATION_CASES["inner_gradient"]()
    history = tll.log_forward_pass(case.model, case.args)
    grad = history["grad_1"].layer_label
    assert validate_history(history) == {grad: f"grad: {NOT_REPLAYABLE[torch.autograd.grad]}"}
    assert history.validate(verbose=True)
    assert f"{grad} not re-run" in capsys.readouterr().out


def test_a_corrupted_gradient_inside_forward_is_caught_downstream():
    case = VALIDATION_CASES["inner_gradient"]()
    history = tll.log_forward_pass(case.model, case.args)
    assert history.validate()
    _corrupt(history["grad_1"].tensor_contents)
    assert history.validate() is False


def test_autocast_replay_reproduces_bfloat16():
    case = VALIDATION_CASES["autocast_region"]()
    history = tll.log_forward_pass(case.model, case.args)
    assert history["linear_1"].tensor_dtype == "bfloat16"
    assert history.validate()
    _corrupt(history["relu_1"].tensor_contents)
    assert history.validate() is False


def _ancestors(history, label):
    return nx.ancestors(history.to_networkx(), label)


def test_read_through_an_alias_links_to_the_state_after_the_write():
    """``v1.sum()`` after ``v2.fill_(0)`` read zeros: its parent holds zeros and descends
    from the write."""
    case = VALIDATION_CASES["alias_write"]()
    history = tll.log_forward_pass(case.model, case.args)
    total = history["sum_1"]
    (parent,) = total.parent_layers
    assert torch.equal(history[parent].tensor_contents, torch.zeros(2, 8))
    assert history["fill_1"].layer_label in _ancestors(history, total.layer_label)


def test_read_of_a_buffer_after_a_write_into_its_view_links_to_the_write():
    case = VALIDATION_CASES["buffer_view_write"]()
    reference, _, _ = _after_one_plain_forward(case)
    history = tll.log_forward_pass(case.model, case.args)
    product = history["matmul_1"]
    assert history["copy_1"].layer_label in _ancestors(history, product.layer_label)
    transposed = [history[p] for p in product.parent_layers if history[p].func_name == "T"]
    assert torch.equal(transposed[0].tensor_contents, reference.state.T)


def test_perturbations_do_not_depend_on_the_global_generator(monkeypatch):
    from torchlens_like.validate import replay as validate

    drawn = []
    noise = validate.Replayer._noise

    def recording(self, like):
        value = noise(self, like)
        drawn.append(value.clone())
        return value

    monkeypatch.setattr(validate.Replayer, "_noise", recording)
    history = tll.log_forward_pass(*MODELS["vit"])
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        drawn.clear()
        assert history.validate()
        runs.append(list(drawn))
    assert len(runs[0]) == len(runs[1]) > 0
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_replay_failure_message_says_what_happened_where():
    model, x = MODELS["resnet18"]
    history = tll.log_forward_pass(model, x)
    history["relu_3"].tensor_contents.add_(2.0)
    with pytest.raises(ValidationError) as info:
        validate_history(history)
    message = str(info.value)
    assert info.value.kind == "replay differs"
    assert "replay differs" in message and "largest difference" in message
    failed = history[info.value.layer]
    assert failed.layer_label in message
    assert failed.func_name in message
    assert failed.containing_modules[-1].split(":")[0] in message
    assert any(parent in message for parent in failed.parent_layers)


def test_insensitive_parent_message_says_what_happened_where():
    history = tll.log_forward_pass(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), torch.rand(2, 3))
    tanh = history["tanh_1"]
    constant = tanh.tensor_contents.clone()
    tanh.replay.func = lambda _: constant.clone()
    with pytest.raises(ValidationError) as info:
        validate_history(history)
    message = str(info.value)
    assert info.value.kind == "parent insensitive" and info.value.layer == "tanh_1_3"
    for part in ("parent insensitive", "tanh_1", "tanh", "module '1'", "linear_1_2",
                 "largest difference 0.0"):
        assert part in message
