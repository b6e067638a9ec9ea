"""The zoo on a CUDA device, where one is at hand: values, devices, random ops."""

import copy

import pytest
import torch

import torchlens_like as tll
from groundtruth import hooked_forward, tensor_leaves, tensor_map
from zoo import CASES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ON_CPU_ONLY = {"plain_function", "packed_sequence"}


def _to_cuda(case):
    if isinstance(case.model, torch.nn.Module):
        case.model = case.model.cuda()
    case.args = tensor_map(case.args, lambda t: t.cuda())
    case.kwargs = tensor_map(case.kwargs, lambda t: t.cuda())
    return case


@pytest.mark.parametrize("name", sorted(set(CASES) - ON_CPU_ONLY - {"internal_tensors"}))
def test_zoo_on_cuda_matches_hooks(name):
    case = _to_cuda(CASES[name]())
    reference = copy.deepcopy(case.model)
    output, calls = hooked_forward(reference, case.args, case.kwargs, case.seed)
    history = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
    for module_pass, expected in calls.items():
        for label, tensor in zip(history.module_outputs[module_pass], expected):
            saved = history[label].tensor_contents
            assert saved.device == tensor.device and torch.equal(saved, tensor), module_pass
    outputs = [history[label].tensor_contents for label in history.output_layers]
    for saved, tensor in zip(outputs, tensor_leaves(output)):
        assert saved.is_cuda and torch.equal(saved, tensor)


def test_cuda_random_ops_reproducible_and_rng_restored():
    case = _to_cuda(CASES["dropout_train"]())
    cuda_state = torch.cuda.get_rng_state()
    first = tll.log_forward_pass(case.model, case.args, random_seed=4)
    second = tll.log_forward_pass(case.model, case.args, random_seed=4)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    for a, b in zip(first, second):
        assert torch.equal(a.tensor_contents, b.tensor_contents)
