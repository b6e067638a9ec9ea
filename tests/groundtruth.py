"""Independent ground truth for the capture tests: plain forwards, hooks, snapshots."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree


def tensor_leaves(obj):
    """Every tensor nested in ``obj``, in order, found by torch's own pytree (not the package's walker)."""
    return [leaf for leaf in _pytree.tree_leaves(obj) if isinstance(leaf, torch.Tensor)]


def tensor_map(obj, replace):
    """``obj`` with every tensor ``t`` replaced by ``replace(t)``, by torch's own pytree."""
    return _pytree.tree_map_only(torch.Tensor, replace, obj)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hooked_forward(model, args, kwargs, seed=None):
    """Plain forward with a forward hook on every submodule cloning what it returned.

    Returns ``(output, {"address:pass": [cloned tensors]})``.
    """
    calls, counts, handles = {}, {}, []

    def make_hook(address):
        def hook(module, inputs, output):
            counts[address] = counts.get(address, 0) + 1
            calls[f"{address}:{counts[address]}"] = [t.detach().clone() for t in
                                                     tensor_leaves(output)]
        return hook

    if isinstance(model, nn.Module):
        for address, module in model.named_modules():
            if address:
                handles.append(module.register_forward_hook(make_hook(address)))
    try:
        if seed is not None:
            seed_everything(seed)
        output = model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return output, calls


def torch_snapshot():
    """Identity of every public attribute of torch, F and Tensor, plus the mode stack."""
    snap = {}
    for owner in (torch, F, torch.overrides, torch.Tensor, torch._C.TensorBase, torch.nn.Module):
        for name, value in vars(owner).items():
            snap[(owner.__name__, name)] = id(value)
    snap["mode_stack"] = torch._C._len_torch_function_stack()
    snap["grad"] = torch.is_grad_enabled()
    return snap


def model_snapshot(model):
    """Parameters, buffers, training flags and hook dictionaries of every submodule."""
    if not isinstance(model, nn.Module):
        return None
    state = {}
    for address, module in model.named_modules():
        hooks = tuple((name, tuple(getattr(module, name).keys())) for name in dir(module)
                      if name.endswith("hooks") or "hooks_" in name
                      if isinstance(getattr(module, name, None), dict))
        state[address] = (module.training, hooks, module.__dict__.get("forward"))
    tensors = {name: t.detach().clone()
               for name, t in list(model.named_parameters()) + list(model.named_buffers())}
    return state, tensors


def assert_model_unchanged(before, model, *, expected_buffers_from=None):
    """Assert ``model`` is as ``before`` recorded it.

    With ``expected_buffers_from`` (a copy of the model that ran one plain
    forward), buffers must instead equal that copy's: a train-mode pass
    updates running statistics once, as a plain forward does.
    """
    after = model_snapshot(model)
    if before is None:
        return
    assert before[0] == after[0], "training flags or hooks changed"
    assert before[1].keys() == after[1].keys()
    expected = dict(before[1])
    if expected_buffers_from is not None:
        expected.update({n: b.detach() for n, b in expected_buffers_from.named_buffers()})
    for name, value in expected.items():
        assert torch.equal(value, after[1][name]), f"{name} differs"


def rng_state():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def set_rng_state(state):
    torch.set_rng_state(state[0])
    random.setstate(state[1])
    np.random.set_state(state[2])


def assert_same_rng(a, b):
    assert torch.equal(a[0], b[0]), "torch generator state differs"
    assert a[1] == b[1], "python generator state differs"
    assert np.array_equal(a[2][1], b[2][1]) and a[2][2:] == b[2][2:], "numpy state differs"


def assert_capture_matches_hooks(model, args, kwargs=None, seed=None):
    """Log ``model`` and check every module call's outputs against a forward hook's copy.

    Both runs start from the same input and buffer values (a forward may
    write into them, or bind a buffer to a new tensor) and from ``seed`` when
    given, so random ops draw the same values. Returns the history.
    """
    import torchlens_like as tll

    kwargs = kwargs or {}
    state = tensor_leaves((args, kwargs))
    bindings = [(module, name, buffer) for module in model.modules()
                for name, buffer in module._buffers.items() if buffer is not None] \
        if isinstance(model, nn.Module) else []
    state += [buffer for _, _, buffer in bindings]
    values = [t.detach().clone() for t in state]
    rng = rng_state()
    output, calls = hooked_forward(model, args, kwargs, seed=seed)
    set_rng_state(rng)
    for module, name, buffer in bindings:  # a forward may bind a buffer to a new tensor
        module._buffers[name] = buffer
    with torch.no_grad():
        for tensor, value in zip(state, values):
            tensor.copy_(value)
    history = tll.log_forward_pass(model, args, kwargs, random_seed=seed)
    assert history.lint() == []
    expected_outputs = tensor_leaves(output)
    logged_outputs = [history[label].tensor_contents for label in history.output_layers]
    assert len(logged_outputs) == len(expected_outputs)
    for logged, expected in zip(logged_outputs, expected_outputs):
        assert torch.equal(logged, expected.detach())
    assert set(history.module_outputs) == set(calls)
    for module_pass, expected in calls.items():
        labels = history.module_outputs[module_pass]
        assert len(labels) == len(expected), module_pass
        for label, tensor in zip(labels, expected):
            assert torch.equal(history[label].tensor_contents, tensor), (module_pass, label)
    return history


def assert_lean_pass_matches(model, args, kwargs, history, seed=None):
    """Lean passes over the graph of ``history`` keep its saved values bitwise.

    ``history`` is a full capture of ``model`` on the same ``args`` / ``kwargs``
    with every layer saved. Two plans: a few module outputs (watched through
    module calls only), and those plus op-level layers that are no module's
    output (every call checked); each run to the end and stopped early.
    """
    from torchlens_like.api import plan_lean_pass

    kwargs = kwargs or {}
    traced = [layer for layer in history.layers if layer.kind == "op"
              and layer.has_saved_activation
              and history.call_trace.ordinal_of(layer.call_index) is not None]
    module_layers = [layer for layer in traced if layer.module_outputs]
    op_layers = [layer for layer in traced if not layer.module_outputs]
    spread = lambda layers: layers[::max(1, len(layers) // 3)][:3] + layers[-1:]  # noqa: E731
    for chosen in (spread(module_layers), spread(module_layers) + spread(op_layers)):
        if not chosen:
            continue
        positions = [layer.meta["capture_index"] for layer in chosen]
        plan = plan_lean_pass(model, history, positions)
        assert plan.path == ("module_outputs" if all(l.module_outputs for l in chosen)
                             else "ops")
        for stop_early in (False, True):
            if seed is not None:
                seed_everything(seed)
            with torch.no_grad():
                kept = plan.run(args, kwargs, stop_early=stop_early)
            for layer, position in zip(chosen, positions):
                expected = layer.tensor_contents
                assert kept[position].dtype == expected.dtype, layer.layer_label
                assert torch.equal(kept[position], expected), (layer.layer_label, stop_early)


def hooked_module_outputs(model, inputs, addresses):
    """``{address: copy of that module's output}`` from forward hooks on one plain forward."""
    seen = {}
    hooks = [model.get_submodule(a).register_forward_hook(
        lambda m, i, o, a=a: seen.__setitem__(a, o.detach().clone())) for a in addresses]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def hooked_gradients(model, args, kwargs, loss):
    """Gradients of ``loss(model(*args, **kwargs))`` taken by plain autograd through forward hooks.

    A forward hook on every submodule registers a tensor hook on each tensor
    the call returned (a hook registered before a later in-place write sees
    the gradient with respect to the value the call returned); the input
    gradients come from copies of the floating-point inputs requiring grad,
    and the parameter gradients from ``torch.autograd.grad`` on the
    parameters. Returns ``(input grads in order, {"address:pass": [grads]},
    {parameter address: grad})``; a returned tensor that does not reach the
    loss has grad None.
    """
    kwargs = kwargs or {}
    calls, counts, handles, grads = {}, {}, [], {}

    def make_hook(address):
        def hook(module, inputs, output):
            counts[address] = counts.get(address, 0) + 1
            key = f"{address}:{counts[address]}"
            calls[key] = []
            for tensor in tensor_leaves(output):
                slot = len(calls[key])
                calls[key].append(None)
                if tensor.requires_grad:
                    tensor.register_hook(lambda g, key=key, slot=slot: grads.__setitem__(
                        (key, slot), g.clone()))
        return hook

    copies = []

    def copy(tensor):
        if not tensor.is_floating_point():
            return tensor
        leaf = tensor.detach().clone().requires_grad_(True)
        copies.append(leaf)
        return leaf.clone()

    args, kwargs = tensor_map((tuple(args), dict(kwargs)), copy)
    if isinstance(model, nn.Module):
        for address, module in model.named_modules():
            if address:
                handles.append(module.register_forward_hook(make_hook(address)))
    try:
        output = model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    params = dict(model.named_parameters()) if isinstance(model, nn.Module) else {}
    params = {name: p for name, p in params.items() if p.requires_grad}
    found = torch.autograd.grad(loss(output), copies + list(params.values()), allow_unused=True)
    for key, tensors in calls.items():
        for slot in range(len(tensors)):
            tensors[slot] = grads.get((key, slot))
    return (list(found[:len(copies)]), calls,
            dict(zip(params, found[len(copies):])))
