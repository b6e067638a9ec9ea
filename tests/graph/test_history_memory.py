"""A discarded history frees its activations at once, without the cyclic collector."""

import gc
import weakref

import torch
import torchvision

import torchlens_like as tll


def test_activations_freed_when_history_dropped():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(1, 3, 64, 64)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        history = tll.log_forward_pass(model, x)
        refs = [weakref.ref(layer.tensor_contents) for layer in history
                if not layer.is_input and not layer.is_output]
        del history
        assert all(ref() is None for ref in refs)
        history = tll.log_forward_pass(model, x)
        layers = history.layers
        held = history["fc"]
        parents, children = held.parent_layers, held.child_layers
        del history
        assert held.parent_layers == parents and parents[0].startswith("flatten_1_")
        assert held.child_layers == children and held.tensor_contents is not None
        del layers
        assert held.child_layers == []
    finally:
        if was_enabled:
            gc.enable()
