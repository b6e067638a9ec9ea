"""Sites resolve like history[...] and the way forward hooks see module calls."""

import pytest
import torch
import torchvision
from torch import nn

import torchlens_like as tll
from torchlens_like.interventions import resolve_site

from intervention_zoo import Shared, TupleOut


def _calls_seen_by_hooks(model, x, module_type):
    seen = []
    handles = [module.register_forward_hook(
        lambda m, i, o, address=address: seen.append(address))
        for address, module in model.named_modules() if isinstance(module, module_type)]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_a_module_address_without_a_pass_means_every_call():
    model, x = Shared(), torch.rand(2, 4)
    history = tll.log_forward_pass(model, x)
    site = resolve_site(history, "fc")
    assert site.kind == "module"
    assert len(site.calls) == len(_calls_seen_by_hooks(model, x, nn.Linear)) - 1 == 2
    assert [layer.pass_num for layer in site.layers] == [1, 2]
    second = resolve_site(history, "fc:2")
    assert [str(call) for call in second.calls] == ["fc:2"] and second.layers == site.layers[1:]


def test_a_recurrent_layer_label_without_a_pass_means_every_pass():
    history = tll.log_forward_pass(Shared(), torch.rand(2, 4))
    label = history["fc:1"].layer_label_no_pass
    with pytest.raises(KeyError):
        history[label]
    assert [layer.pass_num for layer in resolve_site(history, label).layers] == [1, 2]
    assert resolve_site(history, f"{label}:2").layers == (history[f"{label}:2"],)


def test_a_module_site_covers_every_returned_tensor():
    history = tll.log_forward_pass(TupleOut(), torch.rand(2, 3))
    site = resolve_site(history, "pair")
    assert [layer.func_name for layer in site.layers] == ["mul", "sub"]


def test_a_selector_matches_the_ops_forward_hooks_see():
    model, x = torchvision.models.resnet18(), torch.rand(1, 3, 64, 64)
    history = tll.get_model_metadata(model, x)
    layers = resolve_site(history, tll.select(func="relu", within="layer2")).layers
    hooked = [address for address in _calls_seen_by_hooks(model, x, nn.ReLU)
              if address.startswith("layer2.")]
    assert len(layers) == len(hooked) == 4
    assert [layer.module_outputs[0] for layer in layers] == hooked
    one_call = resolve_site(history, tll.select(func="relu", within="layer2.1:1")).layers
    assert one_call == layers[2:]
    assert len(resolve_site(history, tll.select(func=["conv2d", "relu"])).layers) == 20 + 17


@pytest.mark.parametrize("key, close", [("lineer_1", "linear_1"), ("fcc", "fc")])
def test_an_unknown_site_is_a_key_error_naming_close_keys(key, close):
    history = tll.get_model_metadata(Shared(), torch.rand(2, 4))
    with pytest.raises(KeyError, match=close):
        resolve_site(history, key)


def test_a_selector_matching_nothing_names_what_ran():
    history = tll.get_model_metadata(Shared(), torch.rand(2, 4))
    with pytest.raises(KeyError, match="sigmoid"):
        resolve_site(history, tll.select(func="sigmoud"))
    with pytest.raises(KeyError, match="modules: fc"):
        resolve_site(history, tll.select(func="relu", within="fcc"))


def test_bad_selectors_and_sites_are_refused_clearly():
    with pytest.raises(ValueError, match="func=, within="):
        tll.select()
    with pytest.raises(TypeError, match="function name"):
        tll.select(func=3)
    history = tll.get_model_metadata(Shared(), torch.rand(2, 4))
    with pytest.raises(TypeError, match="A site is"):
        resolve_site(history, 2.5)
    assert resolve_site(history, 1).layers == (history[1],)
