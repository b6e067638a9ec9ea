"""Every torchvision classification model (random init) against forward hooks.

For each model: a plain forward with a hook on every module, then a logged
pass; every module call's output must equal the hook's copy bitwise, and the
logged output must equal the plain output bitwise.
"""

import pytest
import torch
import torchvision

import torchlens_like as tll
from groundtruth import hooked_forward

FIXED_224 = {"vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14", "maxvit_t",
             "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"}
NEEDS_LARGER = {"inception_v3": 96, "googlenet": 64}


def input_size(name):
    if name in FIXED_224:
        return 224
    return NEEDS_LARGER.get(name, 64)


MODELS = sorted(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.corpus
@pytest.mark.parametrize("name", MODELS)
def test_module_outputs_match_hooks(name):
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("inception_v3",
                                                                          "googlenet") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    size = input_size(name)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        output, calls = hooked_forward(model, (x,), {})
        history = tll.log_forward_pass(model, x)
    assert history.lint() == []
    assert torch.equal(history[history.output_layers[0]].tensor_contents, output)
    assert set(history.module_outputs) == set(calls)
    for module_pass, expected in calls.items():
        labels = history.module_outputs[module_pass]
        assert len(labels) == len(expected), module_pass
        for label, tensor in zip(labels, expected):
            assert torch.equal(history[label].tensor_contents, tensor), (module_pass, label)
