"""log_forward_pass / get_model_metadata: arguments, selection, lookups, errors, isolation."""

import copy
import gc
import threading

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import torchlens_like as tll
from groundtruth import (assert_model_unchanged, hooked_forward, model_snapshot,
                         torch_snapshot)
from zoo import CASES


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return torchvision.models.alexnet().eval(), torch.rand(1, 3, 64, 64)


def test_paper_labels_on_alexnet(alexnet):
    model, x = alexnet
    history = tll.log_forward_pass(model, x)
    convs = [layer for layer in history if layer.layer_type == "conv2d"]
    assert [c.layer_label for c in convs][:3] == ["conv2d_1_2", "conv2d_2_5", "conv2d_3_8"]
    assert history["conv2d_3"] is history["conv2d_3_8"] is history["features.6"]
    assert history["features"] is history["features.12"]
    assert history[0].is_input and history[-1].is_output
    assert history[-1].parent_layers == [history[-2].layer_label]
    assert [layer.layer_total_num for layer in history] == list(range(1, len(history) + 1))


def test_unknown_key_names_close_matches(alexnet):
    history = tll.get_model_metadata(*alexnet)
    with pytest.raises(KeyError, match="conv2d_3_8|conv2d_3"):
        history["conv2d_3_9"]
    with pytest.raises(KeyError, match="features.6"):
        history["feature.6"]
    with pytest.raises(IndexError):
        history[len(history)]


def test_layers_to_save_subset_and_relative_ordinals(alexnet):
    model, x = alexnet
    full = tll.log_forward_pass(model, x)
    history = tll.log_forward_pass(model, x, layers_to_save=["conv2d_2", "features.8", 3,
                                                             "relu_5_13", -1])
    assert history.saved_layers == ["maxpool2d_1_4", "conv2d_2_5", "conv2d_4_10",
                                    "relu_5_13", "output_1_24"]
    assert history.layer_labels == full.layer_labels
    assert history[0].layer_label == "maxpool2d_1_4"
    assert history[-1].layer_label == "output_1_24"
    assert history[-2].layer_label == "relu_5_13"
    for label in history.saved_layers:
        assert torch.equal(history[label].tensor_contents, full[label].tensor_contents)
    assert not history["linear_1"].has_saved_activation
    assert history["linear_1"].tensor_shape == full["linear_1"].tensor_shape


def test_layers_to_save_rejects_bad_values(alexnet):
    with pytest.raises(ValueError, match="layers_to_save"):
        tll.log_forward_pass(*alexnet, layers_to_save=["conv2d_99"])
    with pytest.raises(ValueError, match="layers_to_save"):
        tll.log_forward_pass(*alexnet, layers_to_save=[1.5])


def test_selection_keeps_model_state_like_one_forward():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    reference = copy.deepcopy(model)
    x = torch.randn(8, 4)
    torch.manual_seed(5)
    expected = reference(x)
    torch.manual_seed(5)
    history = tll.log_forward_pass(model, x, layers_to_save=["2"])
    assert torch.equal(history["2"].tensor_contents, expected)
    for (name, buf), (_, ref) in zip(model.named_buffers(), reference.named_buffers()):
        assert torch.equal(buf, ref), name


def test_module_called_twice_gives_passes():
    case = CASES["shared_modules"]()
    _, calls = hooked_forward(copy.deepcopy(case.model), case.args, case.kwargs)
    history = tll.log_forward_pass(case.model, case.args)
    for k in (1, 2, 3):
        assert torch.equal(history[f"block:{k}"].tensor_contents, calls[f"block:{k}"][0])
        assert torch.equal(history[f"block.fc:{k}"].tensor_contents, calls[f"block.fc:{k}"][0])
    with pytest.raises(KeyError, match="block:1, block:2, block:3"):
        history["block"]
    linear = history["linear_1_2:2"]
    assert linear.num_passes == 3 and linear.pass_num == 2 and linear.is_recurrent
    assert history["linear_1:2"] is linear
    assert linear.containing_modules == ["block:2", "block.fc:2"]
    assert linear.param_names == ["block.fc.weight", "block.fc.bias"]


def test_layer_metadata_fields():
    case = CASES["branching"]()
    history = tll.log_forward_pass(case.model, case.args)
    cat = history["cat_1"]
    assert cat.parent_layers == ["tanh_1_3", "relu_1_5"]
    assert cat.parent_arg_positions == {"tanh_1_3": (0, 0), "relu_1_5": (0, 1)}
    assert cat.func_args == {"dim": 1}
    assert cat.child_layers == ["linear_3_7"]
    sub = history["sub_1"]
    assert sub.parent_arg_positions == {"tanh_1_3": 0, "relu_1_5": 1}
    assert history["linear_1"].distance_from_input == 1
    assert history["linear_3"].distance_from_output == 1
    assert history["input_1"].distance_from_output == 4
    linear = history["linear_1"]
    assert linear.param_shapes == [(4, 4), (4,)]
    assert linear.params_fsize == (16 + 4) * 4
    assert linear.tensor_fsize == 2 * 4 * 4
    assert linear.func_name == "linear" and linear.func_time > 0
    assert linear.module_outputs == ["a"] and linear.containing_modules == ["a:1"]
    assert history.output_layers == ["output_1_9", "output_2_10"]
    assert history.num_params == sum(p.numel() for p in case.model.parameters())
    assert history.total_activation_bytes == sum(
        layer.tensor_contents.numel() * layer.tensor_contents.element_size()
        for layer in history)


def test_internal_tensors_flagged_and_orphans_trimmed():
    case = CASES["internal_tensors"]()
    history = tll.log_forward_pass(case.model, case.args, random_seed=case.seed)
    internal = {layer.func_name for layer in history if layer.is_internally_generated}
    assert internal == {"ones", "rand", "tensor", "from_numpy", "mul"}
    assert "zeros" not in {layer.func_name for layer in history}
    np.testing.assert_array_equal(history["fromnumpy_1"].tensor_contents.numpy(),
                                  np.arange(4, dtype=np.float32))
    assert not history["linear_1"].is_internally_generated


def test_buffers_are_layers():
    case = CASES["buffers_eval"]()
    history = tll.log_forward_pass(case.model, case.args)
    buffers = [history[label] for label in history.buffer_layers]
    assert [b.source for b in buffers] == ["bn.running_mean", "bn.running_var", "scale"]
    assert all(b.is_buffer for b in buffers)
    assert torch.equal(buffers[2].tensor_contents, case.model.scale)
    assert history["batchnorm_1"].parent_layers[1:] == history.buffer_layers[:2]


def test_inputs_of_any_structure():
    case = CASES["nested_io"]()
    history = tll.log_forward_pass(case.model, case.args, case.kwargs)
    sources = [history[label].source for label in history.input_layers]
    assert sources == [("args", 0, 0), ("args", 0, 1, 0), ("args", 0, 1, 1),
                       ("args", 1, "u"), ("kwargs", "extra")]
    assert len(history.output_layers) == 4


def test_single_list_argument_is_wrapped():
    history = tll.log_forward_pass(lambda items: items[0] + items[1],
                                   [[torch.ones(2), torch.ones(2)]])
    assert len(history.input_layers) == 2 and history["add_1"].tensor_contents.sum() == 4


def test_caller_grad_mode_respected():
    model = nn.Linear(2, 2)
    x = torch.ones(1, 2, requires_grad=True)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    tll.log_forward_pass(model, x)
    with torch.no_grad():
        tll.log_forward_pass(model, x)
    assert seen == [True, False]
    assert torch.is_grad_enabled()


def test_other_thread_is_not_logged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    x = torch.randn(4, 8)
    expected = model(x)
    stop = threading.Event()
    results = []

    def worker():
        while not stop.is_set():
            results.append(torch.equal(model(x), expected))

    alone = len(tll.log_forward_pass(model, x))
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        lengths = [len(tll.log_forward_pass(model, x)) for _ in range(20)]
    finally:
        stop.set()
        thread.join()
    assert lengths == [alone] * 20
    assert results and all(results)


def test_nested_call_raises_and_outer_log_is_intact():
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.errors = []

        def forward(self, x):
            try:
                tll.log_forward_pass(self.fc, x)
            except RuntimeError as exc:
                self.errors.append(str(exc))
            return self.fc(x) * 2

    model = Nested()
    history = tll.log_forward_pass(model, torch.ones(1, 2))
    assert "already being logged" in model.errors[0]
    assert [layer.func_name for layer in history] == ["input", "linear", "mul", "output"]


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2))

    def forward(self, x):
        return self.inner(x)


def test_model_error_is_reraised_with_location_and_nothing_left_behind():
    model = Broken()
    torch_before, model_before = torch_snapshot(), model_snapshot(model)
    with pytest.raises(RuntimeError) as info:
        tll.log_forward_pass(model, torch.ones(2, 3))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "'linear'" in notes and "inner.1" in notes
    assert "mat1 and mat2" in str(info.value)
    assert torch_snapshot() == torch_before
    assert_model_unchanged(model_before, model)
    assert len(tll.log_forward_pass(nn.Linear(3, 4), torch.ones(2, 3))) == 3


def test_cyclic_gc_paused_during_the_call_and_restored_after():
    seen = []

    def forward(x):
        seen.append(gc.isenabled())
        if x.sum() < 0:
            raise ValueError("negative")
        return x.relu()

    assert gc.isenabled()
    tll.log_forward_pass(forward, torch.ones(2))
    with pytest.raises(ValueError, match="negative"):
        tll.log_forward_pass(forward, -torch.ones(2))
    assert seen == [False, False] and gc.isenabled()
    gc.disable()
    try:
        tll.log_forward_pass(forward, torch.ones(2))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_shared_parameters_counted_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    history = tll.log_forward_pass(model, torch.ones(1, 3))
    assert history.num_params == 12
    assert history.total_params_bytes == 12 * 4


def test_python_error_inside_module_names_module():
    class Check(nn.Module):
        def forward(self, x):
            raise ValueError("bad input shape")

    model = nn.Sequential(nn.ReLU(), Check())
    with pytest.raises(ValueError, match="bad input shape") as info:
        tll.log_forward_pass(model, torch.ones(2))
    assert "module '1'" in "\n".join(info.value.__notes__)


def test_not_a_model():
    with pytest.raises(TypeError, match="nn.Module or a callable"):
        tll.log_forward_pass(3, torch.ones(1))
    with pytest.raises(TypeError, match="input_kwargs"):
        tll.log_forward_pass(nn.ReLU(), torch.ones(1), input_kwargs=[1])


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_wrappers_unwrapped_and_torchscript_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    x = torch.randn(2, 3)
    plain = tll.log_forward_pass(model, x)
    for wrapped in (nn.DataParallel(copy.deepcopy(model)), torch.compile(model)):
        device = next(wrapped.parameters()).device
        history = tll.log_forward_pass(wrapped, x.to(device))
        assert history.layer_labels == plain.layer_labels
        assert torch.allclose(history["1"].tensor_contents.cpu(), plain["1"].tensor_contents)
    with pytest.raises(TypeError, match="original nn.Module"):
        tll.log_forward_pass(torch.jit.script(model), x)
    with pytest.raises(TypeError, match="original nn.Module"):
        tll.log_forward_pass(torch.jit.trace(model, x), x)


def test_random_seed_reproducible_and_caller_rng_restored():
    case = CASES["dropout_train"]()
    state = torch.get_rng_state()
    first = tll.log_forward_pass(case.model, case.args, random_seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    second = tll.log_forward_pass(case.model, case.args, random_seed=11)
    for a, b in zip(first, second):
        assert torch.equal(a.tensor_contents, b.tensor_contents)
    third = tll.log_forward_pass(case.model, case.args, random_seed=12)
    assert not torch.equal(third["dropout_1"].tensor_contents, first["dropout_1"].tensor_contents)


class _Recorded(torch.nn.Module):
    built = []

    def __init__(self, *args):
        super().__init__()
        _Recorded.built.append(args)

    def forward(self, x):
        _Recorded.built.append(x)
        return x


@pytest.mark.parametrize("entry", ["log_forward_pass", "get_model_metadata",
                                   "validate_saved_activations", "show_model_graph"])
@pytest.mark.parametrize("model, message", [
    (_Recorded, "class _Recorded, not a model: pass an instance"),
    ("resnet18", "str 'resnet18', not a model: build it first"),
    (torch.ones(2), "model is a tensor: the model comes first"),
])
def test_non_models_are_refused_before_anything_runs(entry, model, message, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    _Recorded.built.clear()
    with pytest.raises(TypeError, match=message):
        getattr(tll, entry)(model, torch.ones(2))
    assert _Recorded.built == []
    assert torch.overrides._get_current_function_mode_stack() == []
    assert list(tmp_path.iterdir()) == []


class _KeywordsOnly(nn.Module):
    """Called like a Hugging Face model: ``model(input_ids=..., attention_mask=...)``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask=None):
        hidden = self.embed(input_ids)
        if attention_mask is not None:
            hidden = hidden * attention_mask[..., None]
        return self.head(hidden)


def test_a_model_called_with_keywords_only_needs_no_input_args(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = _KeywordsOnly()
    kwargs = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.tensor([[1, 1, 0]])}
    output, calls = hooked_forward(model, (), kwargs)
    for history in (tll.log_forward_pass(model, input_kwargs=kwargs),
                    tll.log_forward_pass(model, None, kwargs)):
        assert torch.equal(history["head"].tensor_contents, calls["head:1"][0])
        assert torch.equal(history[history.output_layers[0]].tensor_contents, output)
        assert [history[label].source for label in history.input_layers] == [
            ("kwargs", "input_ids"), ("kwargs", "attention_mask")]
    assert tll.get_model_metadata(model, input_kwargs=kwargs).num_layers == history.num_layers
    assert tll.validate_saved_activations(model, input_kwargs=kwargs)
    edited = tll.intervene(model, edits={"head": tll.edits.zero()}, input_kwargs=kwargs)
    assert not edited[edited.output_layers[0]].tensor_contents.any()
    monkeypatch.chdir(tmp_path)
    assert tll.show_model_graph(model, input_kwargs=kwargs, outpath="graph").endswith(".svg")


def test_one_positional_none_is_written_as_a_list():
    def first_or_default(mask, x):
        return x if mask is None else x * mask

    x = torch.ones(2)
    history = tll.log_forward_pass(first_or_default, [None], {"x": x})
    assert torch.equal(history[history.output_layers[0]].tensor_contents, x)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'mask'"):
        tll.log_forward_pass(first_or_default, input_kwargs={"x": x})


def _annotated_builder() -> nn.Linear:
    return nn.Linear(2, 2)


@pytest.mark.parametrize("builder", [
    torchvision.models.resnet18, torchvision.models.detection.fasterrcnn_resnet50_fpn,
    pytest.param("timm.models.resnet18", id="timm"), _annotated_builder,
    pytest.param("registered", id="registered with the zoo")])
@pytest.mark.parametrize("entry", ["log_forward_pass", "get_model_metadata",
                                   "validate_saved_activations", "show_model_graph"])
def test_a_model_builder_is_refused_with_a_hint_to_call_it(entry, builder, tmp_path,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    if builder == "timm.models.resnet18":
        import timm

        builder = timm.models.resnet18
    registered = builder == "registered"
    if registered:
        def builder():
            return nn.Linear(2, 2)
        tll.extract.register_model("builder_under_test", builder)
    try:
        with pytest.raises(TypeError, match=rf"function .*{builder.__name__}, which builds a "
                                            rf"model, not a model: call it first"):
            getattr(tll, entry)(builder, torch.rand(1, 3, 32, 32))
    finally:
        if registered:
            tll.extract.unregister_model("builder_under_test")
    assert list(tmp_path.iterdir()) == []


def test_plain_functions_stay_models():
    def doubled(x) -> torch.Tensor:
        return x * 2

    for function in (doubled, lambda x: x + 1, torch.relu):
        history = tll.log_forward_pass(function, torch.ones(2))
        assert torch.equal(history[history.output_layers[0]].tensor_contents, function(torch.ones(2)))
