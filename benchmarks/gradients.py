"""Gradients and attributions against plain autograd and Captum, side by side in one run.

Random-init models (torchvision's resnet50 on one 224x224 image; GPT-2 small
from ``GPT2Config()`` on 32 tokens). Each timing is paired with its
reference, back to back, and the ratio taken per repeat, then the median:

1. ``tll.log_forward_pass(model, x, save_gradients=True)`` + ``history.backward(loss)``
   against a plain forward + ``loss.backward()`` (target: at most 2x), also
   with ``layers_to_save=None`` (gradients only) and with
   ``save_gradients=[one module]``; the largest difference between the
   input's gradient and plain autograd's is printed.
2. Memory of a ``save_gradients`` pass: what the autograd graph holds (the
   distinct storages autograd saved during the logged pass, as a training
   forward keeps them), the saved activations (and how much of them the
   graph shares), and the gradients kept after the backward (layers and
   per-pass parameter gradients). On a GPU (``--device cuda``) also the
   peak of allocated memory of both runs.
3. ``tll.attribute`` against Captum on the same module (report only):
   gradient x activation (``LayerGradientXActivation``) and integrated
   gradients (``LayerIntegratedGradients``, ``--steps`` points), with the
   largest difference of the values.

Run: ``python benchmarks/gradients.py [--repeats 3] [--steps 8] [--threads N] [--device cpu]``
"""

from __future__ import annotations

import argparse
import os
import warnings

import torch
import torchvision

import torchlens_like as tll
from timing import paired  # noqa: E402


def resnet(device):
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval().to(device)
    x = torch.rand(1, 3, 224, 224, device=device)
    return model, (x,), {}, lambda out: out[:, 3].sum(), "layer4", 3


def gpt2(device):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval().to(device)
    ids = torch.randint(0, 50257, (1, 32), device=device)
    return (model, (), {"input_ids": ids}, lambda out: out.logits[:, -1, 11].sum(),
            "transformer.h.6.mlp", lambda out: out.logits[:, -1, 11])


def plain_backward(model, args, kwargs, loss):
    def run():
        model.zero_grad(set_to_none=True)
        loss(model(*args, **kwargs)).backward()
        model.zero_grad(set_to_none=True)
    return run


def logged_backward(model, args, kwargs, loss, **options):
    def run():
        history = tll.log_forward_pass(model, args, kwargs, save_gradients=True, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tll.NoGradientWarning)
            history.backward(loss)
        return history
    return run


def bench_backward(name, build, device, repeats):
    model, args, kwargs, loss, module, _ = build(device)
    reference = plain_backward(model, args, kwargs, loss)
    reference()
    print(f"\n{name}: save_gradients + history.backward vs plain forward + loss.backward()")
    for label, options in (("save_gradients=True", {}),
                           ("save_gradients=True, layers_to_save=None",
                            {"layers_to_save": None}),
                           (f"save_gradients=['{module}']", {"save_gradients": [module]})):
        run = logged_backward(model, args, kwargs, loss, **options) if "save_gradients" \
            not in options else _sites(model, args, kwargs, loss, options["save_gradients"])
        ratio, seconds, plain = paired(run, reference, repeats)
        print(f"  {label:<45} {seconds * 1000:8.1f} ms vs {plain * 1000:8.1f} ms  "
              f"ratio {ratio:.2f}x (of medians {seconds / plain:.2f}x)")
    check_and_measure(model, args, kwargs, loss, device)


def _sites(model, args, kwargs, loss, sites):
    def run():
        history = tll.log_forward_pass(model, args, kwargs, save_gradients=sites)
        history.backward(loss)
        return history
    return run


def check_and_measure(model, args, kwargs, loss, device):
    graph = {}
    with torch.autograd.graph.saved_tensors_hooks(lambda t: _note(graph, t), lambda t: t):
        history = tll.log_forward_pass(model, args, kwargs, save_gradients=True)
    parameters = _storages(model.parameters())
    graph = {ptr: size for ptr, size in graph.items() if ptr not in parameters}
    saved = _storages(layer.tensor_contents for layer in history if layer.has_saved_activation)
    shared = sum(size for ptr, size in saved.items() if ptr in graph)
    print(f"  memory until backward: autograd graph {sum(graph.values()) / 1e6:.1f} MB (what a "
          f"training forward keeps), saved activations {sum(saved.values()) / 1e6:.1f} MB "
          f"({shared / 1e6:.1f} MB of it shared with the graph)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tll.NoGradientWarning)
        history.backward(loss)
    first = history[history.input_layers[0]]
    if first.has_grad:
        leaf = args[0].detach().clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(loss(model(leaf, **kwargs)), leaf)
        print(f"  input gradient vs plain autograd: largest difference "
              f"{float((first.grad - expected).abs().max()):.2e}")
    grads = _storages(layer.grad for layer in history if layer.has_grad)
    calls = {layer.call_index: layer for layer in history if layer.has_param_grads}
    param_grads = _storages(grad for layer in calls.values()
                            for grad in layer.param_grads.values())
    print(f"  kept after backward: layer gradients {sum(grads.values()) / 1e6:.1f} MB, per-pass "
          f"parameter gradients {sum(param_grads.values()) / 1e6:.1f} MB (plain .grad: "
          f"{sum(parameters.values()) / 1e6:.1f} MB), activations "
          f"{sum(saved.values()) / 1e6:.1f} MB")
    if device.startswith("cuda"):
        print(f"  peak allocated: plain {_peak(plain_backward(model, args, kwargs, loss)):.1f} MB,"
              f" save_gradients {_peak(logged_backward(model, args, kwargs, loss)):.1f} MB")


def _note(found, tensor):
    try:
        storage = tensor.untyped_storage()
        found[storage.data_ptr()] = storage.nbytes()
    except (RuntimeError, NotImplementedError):
        pass
    return tensor


def _storages(tensors):
    found = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        found[storage.data_ptr()] = storage.nbytes()
    return found


def _peak(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - start
    del result
    return peak / 1e6


def bench_attribution(name, build, device, repeats, steps):
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    model, args, kwargs, _, module, target = build(device)
    layer = model.get_submodule(module)
    if kwargs:
        ids = kwargs["input_ids"]
        forward = lambda input_ids: model(input_ids=input_ids).logits[:, -1]  # noqa: E731
        inputs, captum_target, baseline = ids, 11, torch.zeros_like(ids)
        ours = {"input_kwargs": kwargs, "baseline": {"input_ids": baseline}}
    else:
        forward, inputs, captum_target, baseline = model, args[0], target, None
        ours = {"input_args": args}
    print(f"\n{name}: tll.attribute vs Captum at module '{module}'")
    cases = (
        ("grad_x_activation", lambda: LayerGradientXActivation(forward, layer).attribute(
            inputs, target=captum_target), {}),
        (f"integrated_gradients ({steps} steps)", lambda: LayerIntegratedGradients(
            forward, layer).attribute(inputs, baselines=baseline, target=captum_target,
                                      n_steps=steps), {"n_steps": steps}),
    )
    for label, captum_run, options in cases:
        method = label.split(" ")[0]
        mine = lambda: tll.attribute(model, sites=module, method=method, target=target,  # noqa
                                     **ours, **options)
        ratio, seconds, reference = paired(mine, captum_run, repeats)
        difference = float((mine().value - captum_run()).detach().abs().max())
        print(f"  {label:<45} {seconds * 1000:8.1f} ms vs Captum {reference * 1000:7.1f} ms  "
              f"ratio {ratio:.2f}x; largest difference {difference:.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--skip-attribution", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, build in (("resnet50", resnet), ("GPT-2 small", gpt2)):
        bench_backward(name, build, args.device, args.repeats)
        if not args.skip_attribution:
            bench_attribution(name, build, args.device, args.repeats, args.steps)


if __name__ == "__main__":
    main()
