"""The entry points: ``log_forward_pass`` and ``get_model_metadata``."""

from __future__ import annotations

import time

import torch
from torch import nn

from .capture.gc_pause import cyclic_gc_paused
from .capture.modules import model_name, prepare_model
from .capture.rng import restore_rng, seed_all, snapshot_rng
from .capture.run import capture_forward
from .capture.session import is_capturing
from .graph import ModelHistory, run_passes


def log_forward_pass(model, input_args, input_kwargs=None, layers_to_save="all",
                     random_seed=None, render=None):
    """Run the model once and log every tensor operation of the forward pass.

    Parameters
    ----------
    model : torch.nn.Module or callable
        The model, as is. ``DataParallel`` and ``torch.compile`` wrappers are
        unwrapped; TorchScript is refused (pass the original module).
    input_args : tensor, tuple or list
        A tensor, or the positional arguments as a tuple/list. To pass one
        list or tuple as the single argument, wrap it: ``[my_list]``.
    input_kwargs : dict, optional
        Keyword arguments for the forward pass.
    layers_to_save : "all", None or list
        Which activations to keep: all, none (metadata only), or a list of
        layer labels, short labels, module addresses and integer positions.
        Metadata is kept for every layer either way. A list costs one extra
        metadata-only pass to find the layers (model buffers and the random
        generator are reset between the two passes).
    random_seed : int, optional
        Seed every random generator before the pass; the caller's generator
        states are restored afterwards.
    render : bool or RenderOptions, optional
        Also draw the graph: ``True`` for the default picture (``graph.svg``),
        or a :class:`~torchlens_like.render.RenderOptions`.

    Returns
    -------
    ModelHistory

    Examples
    --------
    >>> import torch, torchvision, torchlens_like as tll
    >>> model = torchvision.models.alexnet()
    >>> history = tll.log_forward_pass(model, torch.rand(1, 3, 224, 224))
    >>> history["conv2d_3_8"].tensor_contents.shape
    torch.Size([1, 384, 13, 13])
    >>> history = tll.log_forward_pass(model, torch.rand(1, 3, 224, 224), layers_to_save=["features.6"])
    >>> history.saved_layers
    ['conv2d_3_8']
    """
    start = time.perf_counter()
    if is_capturing():
        raise RuntimeError(
            "log_forward_pass was called from inside a forward pass that is already being "
            "logged. Call it outside the model's forward (the outer log is unaffected).")
    runner = prepare_model(model)
    args, kwargs = _normalize_inputs(input_args, input_kwargs)
    selection = _normalize_selection(layers_to_save)
    caller_rng = snapshot_rng()
    with cyclic_gc_paused():
        try:
            if random_seed is not None:
                seed_all(random_seed)
            if selection is None or selection == "all":
                _, tracker, nodes = _one_pass(runner, args, kwargs, selection)
            else:
                session, tracker, nodes = _two_pass(runner, args, kwargs, selection)
        finally:
            if random_seed is not None:
                restore_rng(caller_rng)
        history = _history(runner, nodes, tracker, time.perf_counter() - start)
    if render is not None and render is not False:
        history.render_graph(render)
    return history


def get_model_metadata(model, input_args, input_kwargs=None, random_seed=None):
    """Log the forward pass keeping every layer's metadata but no activations.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> meta = tll.get_model_metadata(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> meta["linear_1"].tensor_contents is None, meta["linear_1"].param_names
    (True, ['weight', 'bias'])
    """
    return log_forward_pass(model, input_args, input_kwargs, layers_to_save=None,
                            random_seed=random_seed)


def _two_pass(runner, args, kwargs, selection):
    rng_before = snapshot_rng()
    buffers_before = _copy_buffers(runner)
    session, tracker, first = _one_pass(runner, args, kwargs, None)
    wanted = _resolve_selection(runner, first, tracker, selection)
    signature = [(n.kind, n.func_name) for n in session.nodes]
    restore_rng(rng_before)
    _restore_buffers(runner, buffers_before)
    session, tracker, nodes = _one_pass(runner, args, kwargs, wanted)
    if [(n.kind, n.func_name) for n in session.nodes] != signature:
        raise RuntimeError(
            "The model ran different operations in two passes over the same input, so the "
            "requested layers cannot be located reliably. Use layers_to_save='all' (or fix "
            "the source of nondeterminism, e.g. pass random_seed).")
    return session, tracker, nodes


def _one_pass(runner, args, kwargs, save):
    session, tracker = capture_forward(runner, args, kwargs, save)
    return session, tracker, run_passes(session.nodes)


def _resolve_selection(runner, nodes, tracker, selection):
    history = ModelHistory(nodes, model_name(runner), {}, _module_outputs(nodes, tracker), 0, 0)
    wanted = set()
    for key in selection:
        try:
            layer = history[key]
        except (KeyError, IndexError) as exc:
            raise ValueError(f"layers_to_save: {exc}") from None
        wanted.add(layer.meta["capture_index"])
    return wanted


def _history(runner, nodes, tracker, elapsed):
    return ModelHistory(
        nodes, model_name(runner), tracker.module_types, _module_outputs(nodes, tracker),
        num_params=tracker.num_params, total_params_bytes=tracker.params_bytes,
        elapsed_time=elapsed)


def _module_outputs(nodes, tracker):
    kept = {id(node) for node in nodes}
    return {module_pass: [node.layer_label for node in produced if id(node) in kept]
            for module_pass, produced in tracker.outputs_by_call.items()}


def _normalize_inputs(input_args, input_kwargs):
    if isinstance(input_args, (tuple, list)) and not hasattr(input_args, "_fields"):
        args = tuple(input_args)
    else:
        args = (input_args,)
    if input_kwargs is None:
        kwargs = {}
    elif isinstance(input_kwargs, dict):
        kwargs = dict(input_kwargs)
    else:
        raise TypeError(f"input_kwargs must be a dict of keyword arguments or None, got "
                        f"{type(input_kwargs).__name__}.")
    return args, kwargs


def _normalize_selection(layers_to_save):
    if layers_to_save is None or layers_to_save == "all":
        return layers_to_save
    if isinstance(layers_to_save, (str, int)):
        layers_to_save = [layers_to_save]
    if not isinstance(layers_to_save, (list, tuple, set)) or not all(
            isinstance(k, (str, int)) and not isinstance(k, bool) for k in layers_to_save):
        raise ValueError(
            "layers_to_save must be 'all', None, or a list of layer labels, module addresses "
            f"and integer positions; got {layers_to_save!r}.")
    return list(layers_to_save)


def _copy_buffers(runner):
    if not isinstance(runner, nn.Module):
        return []
    with torch.no_grad():
        return [(b, b.detach().clone()) for b in runner.buffers()]


def _restore_buffers(runner, saved):
    with torch.no_grad():
        for buffer, value in saved:
            buffer.copy_(value)
