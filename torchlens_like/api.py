"""The entry points that run a model: capture, then graph, then (optionally) a reader.

``log_forward_pass``, ``get_model_metadata``, ``show_model_graph`` and
``validate_saved_activations`` live here together, at the end of the import
chain: this module may import every stage (capture, graph, validate, render)
and no stage imports it. Model state they save and put back (buffers, random
generators, input normalisation) comes from :mod:`torchlens_like.model_state`.
"""

from __future__ import annotations

import os
import time

from .capture import GraphDeparted, LeanUnavailable, backend_for
from .capture.gc_pause import cyclic_gc_paused
from .gradients import SUPPORTED as GRADIENTS_SUPPORTED
from .gradients import attach_gradients, normalize_gradient_sites
from .graph import history_from_capture
from .interventions import intervene_history  # noqa: F401  (registers history.intervene)
from .io import load_history  # noqa: F401  (registers saving, and pickling of ModelHistory)
from .model_state import (normalize_inputs, refuse_inside_logged_pass, restore_rng, seed_all,
                          snapshot_rng)
from .render import RenderOptions, display_inline, render_graph, resolve_options
from .validate import ValidationError, check_outputs, matches, report_verdict, validate_history


def log_forward_pass(model, input_args=None, input_kwargs=None, layers_to_save="all",
                     random_seed=None, render=None, save_gradients=False):
    """Run the model once and log every tensor operation of the forward pass.

    Parameters
    ----------
    model : torch.nn.Module, callable, or a TensorFlow model
        The model, as is. ``DataParallel`` and ``torch.compile`` wrappers are
        unwrapped; TorchScript is refused (pass the original module). A Keras
        model, ``tf.Module`` or ``tf.function`` is traced by the TensorFlow
        backend (the capture backend is picked by the kind of model).
    input_args : tensor, tuple or list, optional
        A tensor, or the positional arguments as a tuple/list. To pass one
        list or tuple as the single argument, wrap it: ``[my_list]``; one
        ``None`` likewise: ``[None]``. Left out (or None): no positional
        arguments, for a model called with keywords only.
    input_kwargs : dict, optional
        Keyword arguments for the forward pass (``{"input_ids": ids,
        "attention_mask": mask}`` for a Hugging Face model).
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
    save_gradients : bool or list
        Keep what a backward needs, so that ``history.backward(loss)`` can
        give gradients: ``True`` for every layer, or a list of sites (layer
        labels, module addresses, ``tll.select(...)``, as for
        interventions). The model runs on copies of its floating-point
        inputs (requiring grad; the caller's tensors are not touched), and
        the autograd graph of the pass is kept in the history until
        ``history.backward`` or ``history.release_graph()``: as much memory
        as a training forward pass keeps for its backward. The graph, its
        labels and its recurrence grouping are the same as without it. See
        :mod:`torchlens_like.gradients`.

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
    >>> history = tll.log_forward_pass(model, torch.rand(1, 3, 224, 224), save_gradients=True)
    >>> history.backward(lambda out: out[:, 3].sum())
    >>> history["features.6"].grad.shape
    torch.Size([1, 384, 13, 13])
    """
    start = time.perf_counter()
    refuse_inside_logged_pass("log_forward_pass")
    backend = backend_for(model)
    runner = backend.prepare(model)
    args, kwargs = normalize_inputs(input_args, input_kwargs)
    selection = _normalize_selection(layers_to_save)
    gradient_sites = normalize_gradient_sites(save_gradients)
    options = {}
    if gradient_sites is not None:
        if not getattr(backend, "supports_gradients", False):
            raise NotImplementedError(
                f"save_gradients is not supported for {backend.name} models. "
                f"{GRADIENTS_SUPPORTED} Logging without save_gradients works as before.")
        options["gradients"] = True
    _check_seed(backend, random_seed)
    caller_rng = snapshot_rng() if random_seed is not None else None
    with cyclic_gc_paused():
        try:
            if random_seed is not None:
                seed_all(random_seed)
            if selection is None or selection == "all":
                history = history_from_capture(backend.capture(runner, args, kwargs, selection,
                                                               **options))
            elif getattr(backend, "trace", None) is not None:
                history = _traced_selection(backend, runner, args, kwargs, selection)
            else:
                history = _two_pass(backend, runner, args, kwargs, selection, options)
        finally:
            if random_seed is not None:
                restore_rng(caller_rng)
        if gradient_sites is not None:
            attach_gradients(history, gradient_sites)
        history.elapsed_time = time.perf_counter() - start
    if render is not None and render is not False:
        render_graph(history, render)
    return history


def get_model_metadata(model, input_args=None, input_kwargs=None, random_seed=None):
    """Log the forward pass keeping every layer's metadata but no activations.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> meta = tll.get_model_metadata(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> meta["linear_1"].has_saved_activation, meta["linear_1"].param_names
    (False, ['weight', 'bias'])
    """
    return log_forward_pass(model, input_args, input_kwargs, layers_to_save=None,
                            random_seed=random_seed)


def log_layers_at_positions(model, input_args, positions, input_kwargs=None, stop_early=False):
    """One logging pass that keeps only the layers at known capture positions.

    The positions come from an earlier pass over an input of the same kind
    (``history[key].meta["capture_index"]``), so repeated passes (one per
    batch of a stimulus set) skip the graph passes and the lookup.

    Parameters
    ----------
    model, input_args, input_kwargs
        As for :func:`log_forward_pass`.
    positions : iterable of int
        Capture positions of the layers to keep.
    stop_early : bool
        Cut the forward pass short once every asked-for layer is saved. The
        rest of the model does not run, so only use it where skipping it
        changes nothing the caller keeps (a model in eval mode).

    Returns
    -------
    tensors : dict
        Position -> saved tensor (a position the pass never reached is absent).
    ops : list of (str, str)
        ``(kind, func_name)`` of every node recorded, in execution order; the
        caller compares it with the earlier pass to detect a changed graph.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> x = torch.rand(5, 3)
    >>> position = tll.get_model_metadata(model, x)["0"].meta["capture_index"]
    >>> tensors, ops = log_layers_at_positions(model, x, [position], stop_early=True)
    >>> torch.equal(tensors[position], model[0](x)), ops[-1]
    (True, ('op', 'linear'))
    """
    refuse_inside_logged_pass("log_layers_at_positions")
    backend = backend_for(model)
    runner = backend.prepare(model)
    args, kwargs = normalize_inputs(input_args, input_kwargs)
    wanted = set(positions)
    with cyclic_gc_paused():
        nodes = backend.capture(runner, args, kwargs, wanted, stop_when_saved=stop_early).nodes
    tensors = {i: nodes[i].tensor_contents for i in wanted if i < len(nodes)}
    return tensors, [(node.kind, node.func_name) for node in nodes]


def plan_lean_pass(model, history, positions):
    """A lean pass over the graph of ``history`` keeping the layers at ``positions``.

    For repeated passes over inputs of the same kind (every batch of an
    extraction after the first): the returned plan's ``run(args, kwargs,
    stop_early=False)`` checks each call against the known graph instead of
    recording it and returns ``{position: tensor}``; ``plan.path`` is
    ``"module_outputs"`` (only module calls are watched) or ``"ops"``.

    Parameters
    ----------
    model
        The model ``history`` was logged from.
    history : ModelHistory
        A full capture of ``model`` in this process (``log_forward_pass``).
    positions : iterable of int
        Capture positions (``history[key].meta["capture_index"]``) to keep.

    Raises
    ------
    LeanUnavailable
        When the model's backend has no lean pass or a layer cannot be kept
        by one (then log full passes).
    GraphDeparted
        From ``run``, naming the first call that differs from the known graph.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> history = tll.log_forward_pass(model, torch.rand(2, 3))
    >>> position = history["relu_1"].meta["capture_index"]
    >>> plan = plan_lean_pass(model, history, [position])
    >>> x = torch.rand(5, 3)
    >>> torch.equal(plan.run((x,), {})[position], model(x))
    True
    """
    backend = backend_for(model)
    make = getattr(backend, "lean_plan", None)
    if make is None:
        raise LeanUnavailable(f"the {backend.name} backend has no lean pass")
    return make(backend.prepare(model), history, positions)


def _check_seed(backend, random_seed):
    if random_seed is not None and backend.seed_note is not None:
        raise ValueError(f"random_seed is not used for {backend.name} models: "
                         f"{backend.seed_note} Leave random_seed=None.")


def _lookup_selected(history, key):
    try:
        return history[key]
    except (KeyError, IndexError) as exc:
        raise ValueError(f"layers_to_save: {exc}") from None


def _resolve_selection(history, selection):
    return {_lookup_selected(history, key).meta["capture_index"] for key in selection}


def _traced_selection(backend, runner, args, kwargs, selection):
    """A backend that knows the graph before running: label it, then one run of the selection."""
    traced = backend.trace(runner, args, kwargs)
    history = history_from_capture(traced.result)
    traced.run(_resolve_selection(history, selection))
    return history


def _two_pass(backend, runner, args, kwargs, selection, options):
    """A metadata pass to find the selection, then a pass from the same state that saves it.

    ``options`` go to the second capture (``gradients=True``).
    """
    rng_before = snapshot_rng()
    restore_state = backend.keep_state(runner, args, kwargs)
    first = backend.capture(runner, args, kwargs, None)
    signature = [(n.kind, n.func_name) for n in first.nodes]
    wanted = _resolve_selection(history_from_capture(first), selection)
    restore_rng(rng_before)
    restore_state()
    second = backend.capture(runner, args, kwargs, wanted, **options)
    if [(n.kind, n.func_name) for n in second.nodes] != signature:
        raise RuntimeError(
            "The model ran different operations in two passes over the same input, so the "
            "requested layers cannot be located reliably. Use layers_to_save='all' (or fix "
            "the source of nondeterminism, e.g. pass random_seed).")
    return history_from_capture(second)


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


def show_model_graph(model, input_args=None, input_kwargs=None, vis_opt="unrolled",
                     nesting_depth=1000, outpath="graph", fileformat="svg", options=None,
                     random_seed=None):
    """Log a model's forward pass without keeping activations, and draw its graph.

    Parameters
    ----------
    model, input_args, input_kwargs
        As for :func:`log_forward_pass`.
    vis_opt : {"unrolled", "rolled"}
    nesting_depth : int
        Module levels drawn as boxes; deeper modules become one node per call.
    outpath : str
        Picture path, with or without extension (the DOT source is kept next
        to it only with ``options=RenderOptions(keep_source=True)``).
    fileformat : {"svg", "pdf", "png"}
    options : RenderOptions, optional
        Every option at once (for the less common ones such as ``direction``).
        Give either this or the four arguments above, not both.
    random_seed : int, optional

    Returns
    -------
    str
        Path of the picture, which is also printed ("graph written to ...").
        In a notebook the picture is shown in the cell as well.

    Examples
    --------
    >>> import os, tempfile, torch, torchvision, torchlens_like as tll
    >>> out = os.path.join(tempfile.mkdtemp(), "alexnet")
    >>> path = tll.show_model_graph(torchvision.models.alexnet(), torch.rand(1, 3, 64, 64),
    ...                             outpath=out, fileformat="png")  # doctest: +ELLIPSIS
    graph written to /.../alexnet.png
    >>> os.path.exists(path), path.endswith(".png")
    (True, True)
    """
    given = {"vis_opt": vis_opt, "nesting_depth": nesting_depth, "outpath": outpath,
             "fileformat": fileformat}
    changed = {name: value for name, value in given.items()
               if value != getattr(RenderOptions, name)}
    if options is not None and changed:
        raise ValueError(f"Pass either options=RenderOptions(...) or {', '.join(changed)}, not "
                         "both: put every setting into the RenderOptions.")
    options = resolve_options(options, **changed)
    history = get_model_metadata(model, input_args, input_kwargs, random_seed=random_seed)
    path = render_graph(history, options)
    print(f"graph written to {os.path.abspath(path)}")
    display_inline(path)
    return path


def validate_saved_activations(model, input_args=None, input_kwargs=None, random_seed=None,
                               verbose=False):
    """Log a pass with every activation saved, and check every saved value.

    The model is run once plainly (the ground-truth outputs) and once logged;
    the logged outputs must equal the plain ones, and then
    :func:`validate_history` replays every layer. Both runs start from the
    same input values, buffers and generator state (a forward may write into
    its input or its buffers), so afterwards the caller's input tensors and
    the model's buffers are as one plain forward leaves them, and the random
    generators are as they were before the call. If the model raises, inputs
    and buffers are put back as they were.

    Parameters
    ----------
    model, input_args, input_kwargs
        As for :func:`log_forward_pass`.
    random_seed : int, optional
        Seed for both runs; without one, both runs start from the caller's
        generator state.
    verbose : bool
        Print what failed: the layer, its function and the largest difference.

    Returns
    -------
    bool
        True when every saved activation is reproduced.

    Examples
    --------
    >>> import torch, torchvision, torchlens_like as tll
    >>> tll.validate_saved_activations(torchvision.models.alexnet(), torch.rand(1, 3, 224, 224))
    True
    """
    logged = []
    return report_verdict(
        lambda: logged.append(check_saved_activations(model, input_args, input_kwargs,
                                                      random_seed)),
        lambda: logged[0], verbose)


def check_saved_activations(model, input_args=None, input_kwargs=None, random_seed=None):
    """:func:`validate_saved_activations` that raises on failure and returns the history.

    Raises
    ------
    ValidationError
        Naming the first layer that failed, its function and the largest difference.

    Examples
    --------
    >>> import torch
    >>> check_saved_activations(torch.nn.Linear(3, 2), torch.rand(1, 3)).num_layers
    3
    """
    refuse_inside_logged_pass("Validation")
    backend = backend_for(model)
    runner = backend.prepare(model)
    args, kwargs = normalize_inputs(input_args, input_kwargs)
    _check_seed(backend, random_seed)
    caller_rng = snapshot_rng()
    restore_state = backend.keep_state(runner, args, kwargs)
    try:
        if random_seed is not None:
            seed_all(random_seed)
        expected = backend.plain_outputs(runner, args, kwargs)
        restore_rng(caller_rng)
        restore_state()
        history = log_forward_pass(model, args, kwargs, random_seed=random_seed)
    except BaseException:
        restore_state()
        raise
    finally:
        restore_rng(caller_rng)
    check_outputs(history, expected)
    validate_history(history)
    return history
