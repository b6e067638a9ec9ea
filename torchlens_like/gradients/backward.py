"""``save_gradients`` and ``history.backward``: gradients at the chosen layers of one logged pass.

The capture backend keeps each node's autograd edge and each call's
parameter views (:mod:`torchlens_like.capture.gradients`); here the chosen
layers are resolved (sites as in :mod:`torchlens_like.interventions.sites`)
and one ``torch.autograd.grad`` call computes every gradient at once. It
returns the gradients instead of adding them to ``.grad`` fields, so the
model's ``.grad`` fields are never touched, and it runs under
``torch.enable_grad()`` only for the loss, so the caller's grad mode is
restored.

Second backward
---------------
``history.backward(loss)`` frees the autograd graph, as
``loss.backward()`` does; a second call raises, saying what to do. With
``retain_graph=True`` the graph is kept and ``backward`` can run again with
another loss; each call replaces the gradients of the previous one (it does
not add to them, unlike ``.grad`` fields).
"""

from __future__ import annotations

import warnings

import torch

from ..interventions.sites import Selector, resolve_site
from ..records import NoGradientWarning

NOT_YET = "history.backward(loss) has not run yet"
NO_GRAPH = ("its value did not require grad when it was made (an integer tensor, a value "
            "built only from constants, or one computed under torch.no_grad())")
UNUSED = "it does not reach the loss (autograd found no path from it to the loss)"
REBASED = ("it is a view of memory that an in-place op wrote into during the pass; that write "
           "gives autograd a new path for the view's values (through the as_strided_scatter "
           "and as_strided layers after the write), so what reaches the loss from them is "
           "assigned to those layers, not to this one (a tensor hook on the view would not "
           "fire either)")
NO_PARAM_GRAD = ("its parameters did not require grad when the pass ran (requires_grad=False), "
                 "so no per-pass gradient was recorded for them")
NOT_SPLIT = ("it is an autograd call (torch.autograd.grad, register_hook) reading the parameters "
             "as the objects they are, so they are not split per call")
RELEASED = "history.release_graph() freed the autograd graph before a backward"
NO_GRAD_MODE = ("the pass ran under torch.no_grad() (or inference_mode), so no autograd graph "
                "was recorded. Log it again with grad enabled")


class GradientGraph:
    """The live autograd graph of one ``save_gradients`` pass and the layers chosen from it.

    Attributes
    ----------
    recorder : GradientRecorder
        The capture backend's edges (see :mod:`torchlens_like.capture.gradients`).
    layers : list of LayerEntry
        The chosen layers, in execution order.
    every_layer : bool
        Whether ``save_gradients=True`` chose them (then layers whose value
        never required grad are not named in warnings).
    backward_runs : int
        How many backward calls used this graph.
    not_adding_up : list of str
        Parameters whose per-call gradients of the last backward miss part
        of their whole gradient (read with grad disabled inside the pass).
    """

    def __init__(self, recorder, layers, every_layer):
        self.recorder = recorder
        self.layers = layers
        self.every_layer = every_layer
        self.backward_runs = 0
        self.not_adding_up = []

    def __repr__(self):
        state = "released" if self.recorder.released else "live"
        return f"<GradientGraph ({state}) over {len(self.layers)} layers>"


SUPPORTED = ("Gradients and attributions run on torch models: "
             "tll.log_forward_pass(model, x, save_gradients=True) then history.backward(loss), "
             "and tll.attribute(model, x, site), with a torch model.")
"""What is supported, said by every ``NotImplementedError`` of this stage."""


def normalize_gradient_sites(save_gradients):
    """``None`` (no gradients), ``True`` (every layer) or a list of sites.

    Examples
    --------
    >>> normalize_gradient_sites(False), normalize_gradient_sites(True)
    (None, True)
    >>> normalize_gradient_sites("fc1")
    ['fc1']
    """
    if save_gradients is None or save_gradients is False:
        return None
    if save_gradients is True:
        return True
    if isinstance(save_gradients, (str, int, Selector)) and not isinstance(save_gradients, bool):
        return [save_gradients]
    if isinstance(save_gradients, (list, tuple, set)) and save_gradients and all(
            isinstance(k, (str, int, Selector)) and not isinstance(k, bool)
            for k in save_gradients):
        return list(save_gradients)
    raise ValueError(
        "save_gradients must be True (every layer), False, or a list of sites: layer labels, "
        "module addresses, integer positions or tll.select(...); got "
        f"{save_gradients!r}.")


def attach_gradients(history, sites, with_inputs=True):
    """Resolve ``sites`` in ``history`` and wrap its autograd graph in a :class:`GradientGraph`.

    The chosen layers are those of the sites (every layer for ``True``) and,
    ``with_inputs``, the input layers whose values require grad (the copies
    of the floating-point inputs).

    Warns (:class:`NoGradientWarning`) when the pass ran without grad mode.
    Returns ``history``. ``tll.log_forward_pass(..., save_gradients=sites)`` calls it.

    Examples
    --------
    >>> import torch
    >>> from torchlens_like.capture import TorchBackend
    >>> from torchlens_like.graph import history_from_capture
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> result = TorchBackend.capture(model, (torch.ones(1, 2),), {}, "all", gradients=True)
    >>> attach_gradients(history_from_capture(result), ["1"]).grad_graph
    <GradientGraph (live) over 2 layers>
    """
    recorder = history.grad_graph
    if sites is True:
        layers = list(history.layers)
    else:
        chosen = {}
        for key in sites:
            try:
                site = resolve_site(history, key)
            except KeyError as exc:
                raise KeyError(f"save_gradients: {exc.args[0] if exc.args else exc}") from None
            for layer in site.layers:
                chosen[id(layer)] = layer
        layers = [layer for layer in history.layers if id(layer) in chosen
                  or (with_inputs and layer.kind == "input"
                      and layer.meta["capture_index"] in recorder.edges)]
    for layer in layers:
        layer.meta["no_grad_reason"] = NOT_YET
    history.grad_graph = GradientGraph(recorder, layers, sites is True)
    if not recorder.grad_enabled:
        warnings.warn(f"save_gradients: {NO_GRAD_MODE} (outside torch.no_grad()) to take "
                      "gradients.", NoGradientWarning, stacklevel=3)
    return history


def _graph_of(history):
    graph = history.grad_graph
    if graph is None and history.backend != "torch":
        raise NotImplementedError(
            f"history.backward is not supported on histories logged by the {history.backend} "
            f"backend. {SUPPORTED}")
    if graph is None:
        raise RuntimeError(
            f"history.backward needs a pass logged with save_gradients: this history of "
            f"{history.model_name} has no autograd graph (it was logged without "
            "save_gradients, loaded from a file, or its graph was released). Log it with "
            "tll.log_forward_pass(model, x, save_gradients=True) (or a list of sites).")
    return graph


def backward_history(history, loss, retain_graph=False):
    """``history.backward(loss, retain_graph=False)``; see :meth:`ModelHistory.backward`.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.tensor([-1.0, 2.0]),
    ...                                save_gradients=True)
    >>> backward_history(history, lambda out: out.sum())
    >>> history["input_1"].grad
    tensor([0., 1.])
    """
    unused = compute_gradients(history, loss, retain_graph)
    _warn_unsplit(history.grad_graph)
    if unused:
        shown = ", ".join(unused[:10]) + (f" and {len(unused) - 10} more" if len(unused) > 10
                                          else "")
        warnings.warn(f"history.backward: {len(unused)} chosen layer(s) got no gradient: "
                      f"{shown}. Their .grad is None; reading it says why.", NoGradientWarning,
                      stacklevel=3)


def compute_gradients(history, loss, retain_graph=False):
    """:func:`backward_history` without its warnings; returns the chosen layers left without one.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(lambda x: (x * 2, x * 3), torch.ones(2),
    ...                                save_gradients=True)
    >>> compute_gradients(history, lambda out: out[0].sum())
    ['mul_2_3', 'output_2_5']
    """
    graph = _graph_of(history)
    recorder = graph.recorder
    if recorder.released:
        raise RuntimeError(
            "history.backward: the autograd graph of this pass was already freed by an earlier "
            "history.backward(...) without retain_graph=True (as loss.backward() frees it) or "
            "by history.release_graph(). To run backward again with another loss, pass "
            "retain_graph=True to every backward but the last; or log the pass again.")
    if not recorder.grad_enabled:
        raise RuntimeError(f"history.backward: {NO_GRAD_MODE} (outside torch.no_grad()).")
    if not callable(loss):
        raise TypeError(f"history.backward takes a callable computing the loss from the model's "
                        f"output (e.g. lambda out: out[:, 3].sum()), not a "
                        f"{type(loss).__name__}.")
    with torch.enable_grad():
        value = _scalar_loss(loss(recorder.output))
    edges, slots = _edges(graph)
    wholes = list(recorder.read_without_grad.items())
    shares = [(address, edge) for pairs in recorder.param_edges.values()
              for address, edge in pairs if address in recorder.read_without_grad]
    wanted = [edge for edge, _ in edges] + [edge for _, edge in wholes + shares]
    grads = torch.autograd.grad(value, wanted, retain_graph=retain_graph,
                                allow_unused=True) if wanted else ()
    by_edge = {key: grad for (_, key), grad in zip(edges, grads)}
    unused = _assign(graph, slots, by_edge)
    extra = grads[len(edges):]
    graph.not_adding_up = _not_adding_up(wholes, extra[:len(wholes)], shares,
                                         extra[len(wholes):])
    graph.backward_runs += 1
    if not retain_graph:
        recorder.release()
    return unused


def _warn_unsplit(graph):
    unsplit = {address for layer in graph.layers for address in layer.param_names
               if address in graph.recorder.unsplit}
    if unsplit:
        warnings.warn(
            f"history.backward: the per-pass gradients (param_grads) of "
            f"{', '.join(sorted(unsplit))} may not add up to the parameter's whole gradient: "
            "the forward read it through torch.autograd.grad or register_hook, returned it, "
            "or used the tensor an op returned unchanged (e.g. w.to(w.dtype)) as the "
            "parameter, and what flowed that way is not assigned to one op.",
            NoGradientWarning, stacklevel=4)
    missing = sorted(set(graph.not_adding_up) - unsplit)
    if missing:
        warnings.warn(
            f"history.backward: the per-pass gradients (param_grads) of {', '.join(missing)} "
            "do not add up to the parameter's whole gradient: a call read it with grad "
            "disabled (inside the forward of a custom torch.autograd.Function), so what "
            "reached it through that call is not assigned to one op.",
            NoGradientWarning, stacklevel=4)


def _not_adding_up(wholes, whole_grads, shares, share_grads):
    """Addresses of parameters read with grad disabled whose per-call gradients miss a part."""
    split = {}
    for (address, _), grad in zip(shares, share_grads):
        if grad is not None:
            split[address] = grad if address not in split else split[address] + grad
    missing = []
    for (address, _), whole in zip(wholes, whole_grads):
        if whole is None:
            continue
        part = split.get(address)
        if part is None or not torch.allclose(part, whole, rtol=1e-4,
                                              atol=1e-6 * float(whole.abs().max())):
            missing.append(address)
    return missing


def release_graph(history):
    """``history.release_graph()``: free the autograd graph kept by a ``save_gradients`` pass.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2), save_gradients=True)
    >>> release_graph(history); history.grad_graph is None
    True
    """
    graph = history.grad_graph
    if graph is None:
        return
    if graph.backward_runs == 0:
        for layer in graph.layers:
            layer.meta["no_grad_reason"] = RELEASED
    graph.recorder.release()
    history.grad_graph = None


def _scalar_loss(value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"history.backward: loss(output) must return a tensor, got "
                        f"{type(value).__name__}.")
    if value.numel() != 1:
        raise ValueError(f"history.backward: loss(output) must return a single-element tensor, "
                         f"got shape {tuple(value.shape)}; reduce it (e.g. .sum()).")
    if not value.requires_grad:
        raise RuntimeError("history.backward: loss(output) does not depend on anything that "
                           "requires grad (the model's parameters and floating-point inputs), "
                           "so no gradient can flow. Compute it from the model's output.")
    return value.reshape(())


def _edges(graph):
    """``([(edge, key), ...], {layer id: (edge key or None, [(address, key), ...])})``."""
    recorder = graph.recorder
    edges, keys, slots = [], {}, {}

    def add(edge):
        key = (id(edge.node), edge.output_nr)
        if key not in keys:
            keys[key] = edge
            edges.append((edge, key))
        return key

    for layer in graph.layers:
        edge = recorder.edges.get(layer.meta.get("capture_index"))
        params = recorder.param_edges.get(layer.call_index, ()) if layer.params else ()
        slots[id(layer)] = (None if edge is None else add(edge),
                            [(address, add(param_edge)) for address, param_edge in params])
    return edges, slots


def _assign(graph, slots, by_edge):
    """Write each chosen layer's gradients; return the labels of those left without one."""
    unused = []
    shared = {}
    for layer in graph.layers:
        key, params = slots[id(layer)]
        grad = None if key is None else by_edge[key]
        if grad is not None:
            grad = _own(grad)
        layer.grad = grad
        layer.param_grads = None
        if grad is None:
            layer.meta["no_grad_reason"] = NO_GRAPH if key is None else REBASED \
                if layer.meta.get("capture_index") in graph.recorder.rebased else UNUSED
            if key is not None or not graph.every_layer:
                unused.append(layer.layer_label)
            continue
        layer.meta.pop("no_grad_reason", None)
        if layer.params and not params:
            layer.meta["no_param_grad_reason"] = NOT_SPLIT if any(
                address in graph.recorder.unsplit for address in layer.param_names) \
                else NO_PARAM_GRAD
        if params:
            if layer.call_index not in shared:
                shared[layer.call_index] = _param_grads(params, by_edge)
            layer.param_grads = shared[layer.call_index]
    _note_largest(graph.layers)
    return unused


def _note_largest(layers):
    """Write the largest gradient norm of the pass into each layer with one (pictures' scale)."""
    norms = [float(layer.grad.detach().double().norm()) for layer in layers if layer.has_grad]
    largest = max(norms, default=0.0)
    for layer in layers:
        if layer.has_grad:
            layer.meta["largest_grad_norm"] = largest


def _param_grads(params, by_edge):
    summed = {}
    for address, key in params:
        grad = by_edge[key]
        if grad is None:
            continue
        summed[address] = grad if address not in summed else summed[address] + grad
    return {address: _own(grad) for address, grad in summed.items()}


def _own(grad):
    """A contiguous copy of a gradient autograd returned.

    Autograd hands the same tensor to several inputs (an ``add`` passes its
    gradient on unchanged) and expands gradients with zero strides (``sum``),
    so a gradient kept as it came could share memory with another layer's or
    a parameter's: a write into one would change the others.
    """
    return grad.detach().clone(memory_format=torch.contiguous_format)
