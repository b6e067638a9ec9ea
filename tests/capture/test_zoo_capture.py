"""Every zoo model against a plain forward with hooks: values, outputs, no trace left."""

import copy

import pytest
import torch

import torchlens_like as tll
from groundtruth import (assert_model_unchanged, assert_same_rng, hooked_forward,
                         model_snapshot, rng_state, seed_everything, set_rng_state,
                         tensor_leaves, torch_snapshot)
from zoo import CASES


def _same(saved, expected):
    assert saved.dtype == expected.dtype and saved.device == expected.device
    assert saved.shape == expected.shape
    assert torch.equal(saved, expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_module_outputs_equal_forward_hooks(name):
    case = CASES[name]()
    reference = copy.deepcopy(case.model)
    _, calls = hooked_forward(reference, case.args, case.kwargs, case.seed)
    history = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
    assert history.lint() == []
    assert set(history.module_outputs) == set(calls)
    for module_pass, expected in calls.items():
        labels = history.module_outputs[module_pass]
        assert len(labels) == len(expected), module_pass
        for label, tensor in zip(labels, expected):
            _same(history[label].tensor_contents, tensor)
        _same(history[module_pass].tensor_contents, expected[0])


GRAD_MODES = {"grad": torch.enable_grad, "no_grad": torch.no_grad,
              "inference_mode": torch.inference_mode}


@pytest.mark.parametrize("grad_mode", sorted(GRAD_MODES))
@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_bitwise_and_no_trace(name, grad_mode):
    with GRAD_MODES[grad_mode]():
        _check_outputs_and_trace(name)


def _check_outputs_and_trace(name):
    case = CASES[name]()
    reference = copy.deepcopy(case.model)
    torch_before = torch_snapshot()
    model_before = model_snapshot(case.model)
    start = rng_state()
    if case.seed is not None:
        seed_everything(case.seed)
    expected = tensor_leaves(reference(*case.args, **case.kwargs))
    plain_end = rng_state()
    set_rng_state(start)
    history = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
    outputs = [history[label].tensor_contents for label in history.output_layers]
    assert len(outputs) == len(expected)
    for saved, tensor in zip(outputs, expected):
        _same(saved, tensor)
        assert not saved.requires_grad
        assert saved.stride() == tensor.stride()
    assert torch_snapshot() == torch_before
    assert_model_unchanged(model_before, case.model,
                           expected_buffers_from=reference if case.train else None)
    if case.seed is None:
        assert_same_rng(rng_state(), plain_end)
    else:
        assert_same_rng(rng_state(), start)


@pytest.mark.parametrize("name", sorted(CASES))
def test_metadata_only_keeps_graph_and_no_tensors(name):
    case = CASES[name]()
    full = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
    case = CASES[name]()
    meta = tll.get_model_metadata(case.model, case.args, case.kwargs, random_seed=case.seed)
    assert meta.layer_labels == full.layer_labels
    assert not any(layer.has_saved_activation for layer in meta)
    assert [layer.parent_layers for layer in meta] == [layer.parent_layers for layer in full]
    assert [tuple(layer.tensor_shape) for layer in meta] == [
        tuple(layer.tensor_contents.shape) for layer in full]
