"""``tll.attribute``: saliency, gradient x activation and integrated gradients at any site.

A site is anything the interventions name (:mod:`torchlens_like.interventions.sites`):
an op's label (a residual ``add``, a functional ``relu``), a module
address (every tensor each call returned), one pass (``"fc:2"``), an input
layer, or ``tll.select(...)``. Methods (:data:`METHODS`):

``saliency``
    The gradient of the target at the site's activation (signed; no
    absolute value is taken).
``grad_x_activation``
    That gradient times the activation: Captum's
    ``LayerGradientXActivation``.
``integrated_gradients``
    Captum's ``LayerIntegratedGradients`` convention: the model runs on
    the input ``x`` with the site's activation replaced by points on the
    straight path from its value on the baseline, ``a(baseline)``, to its
    value on ``x``, ``a(x)``; the gradients of the target there are
    averaged with the weights of the integration rule
    (:mod:`.integration`) and multiplied by ``a(x) - a(baseline)``. All
    ``n_steps`` points run as one batch of ``n_steps * batch`` (every
    tensor argument is repeated along its first axis, as Captum repeats
    them). The completeness gap is ``sum of the attributions - (F(x) -
    F(baseline))`` per example, ``F`` the target; it shrinks as
    ``n_steps`` grows where every path from the input to the target passes
    through the site.

Saliency and gradient x activation come from one ``save_gradients`` pass
and one backward for all sites (:mod:`.backward`); integrated gradients run
one interpolated pass per site, through the re-run engine's edit hook
(:class:`~torchlens_like.interventions.rerun.EditHook`). Several sites are
attributed independently (Captum's list of layers interpolates them all in
one pass instead). Every pass starts from the same generator states,
buffers and inputs, which are put back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..capture import backend_for
from ..capture.gc_pause import cyclic_gc_paused
from ..graph import history_from_capture
from ..interventions.edits import Replace
from ..interventions.rerun import EditHook, restart
from ..interventions.sites import Selector, resolve_site
from ..model_state import normalize_inputs, refuse_inside_logged_pass, snapshot_rng
from ..nested import map_nested
from ..registry import lookup
from .backward import SUPPORTED, attach_gradients, compute_gradients
from .integration import path_points


@dataclass
class Attribution:
    """The attribution at one site.

    Attributes
    ----------
    site : str
        The site as written.
    method : str
    values : dict
        ``{layer label: tensor}``, one per layer of the site (a module site:
        each tensor each call returned), shaped like that layer's activation.
    completeness_gap : torch.Tensor or None
        Integrated gradients only: per example, the sum of the attributions
        minus ``F(x) - F(baseline)`` (``F`` the target).
    target_difference : torch.Tensor or None
        Integrated gradients only: ``F(x) - F(baseline)`` per example.
    n_steps : int or None
    """

    site: str
    method: str
    values: dict
    completeness_gap: torch.Tensor = None
    target_difference: torch.Tensor = None
    n_steps: int = None

    @property
    def value(self):
        """The tensor of a site with one layer (a ``ValueError`` naming them otherwise).

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> attr = tll.attribute(torch.nn.Linear(3, 2), torch.ones(1, 3), "input_1", target=0)
        >>> attr.value.shape
        torch.Size([1, 3])
        """
        if len(self.values) != 1:
            raise ValueError(f"Site '{self.site}' has {len(self.values)} layers "
                             f"({', '.join(self.values)}): read attr.values[label].")
        return next(iter(self.values.values()))

    def __repr__(self):
        shapes = ", ".join(f"{label}: {tuple(v.shape)}" for label, v in self.values.items())
        gap = "" if self.completeness_gap is None else \
            f", completeness gap {self.completeness_gap.abs().max().item():.3g}"
        return f"<Attribution {self.method} at '{self.site}' ({shapes}){gap}>"


def attribute(model, input_args=None, sites=None, method="saliency", target=None,
              input_kwargs=None, baseline=None, n_steps=50, integration="gausslegendre"):
    """Attribute the target to the activation at one or several sites of the forward pass.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A torch model (TensorFlow models raise ``NotImplementedError``).
    input_args, input_kwargs
        As for ``tll.log_forward_pass``.
    sites : site or list of sites
        Layer labels, module addresses, passes (``"fc:2"``), input layers,
        ``tll.select(...)``: anything ``history[...]`` or the interventions
        accept.
    method : {"saliency", "grad_x_activation", "integrated_gradients"}
        See :mod:`torchlens_like.gradients.attribution`.
    target : int, tuple, callable or None
        What is attributed, per example: ``out[:, target]`` for an int,
        ``out[(slice(None), *target)]`` for a tuple, ``target(out)`` for a
        callable (``lambda out: out.logits[:, -1, 3]``), the output itself
        when it has one value per example (None). Summed over the batch
        for the gradient.
    baseline : None, number, tensor, tuple or dict
        Integrated gradients' starting point: None for zeros in place of
        every floating-point input tensor (integer ones, such as token ids
        or masks, are kept), a number for that constant, a tensor (one
        positional input), a tuple like ``input_args``, or ``{keyword:
        tensor}`` for keyword inputs (the others as for None).
    n_steps : int
        Points on the path (integrated gradients).
    integration : str
        The integration rule, Captum's names: ``"gausslegendre"``,
        ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``,
        ``"riemann_trapezoid"``.

    Returns
    -------
    Attribution or dict
        One :class:`Attribution` for one site; ``{site: Attribution}`` for a list.

    Raises
    ------
    ValueError
        When a site does not reach the target (its attribution would be
        undefined), naming it.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> x = torch.rand(2, 3)
    >>> saliency = tll.attribute(model, x, "0", target=1)
    >>> saliency.value.shape
    torch.Size([2, 4])
    >>> ig = tll.attribute(model, x, "relu_1", method="integrated_gradients", target=1)
    >>> bool(ig.completeness_gap.abs().max() < 1e-4)
    True
    """
    refuse_inside_logged_pass("tll.attribute")
    if sites is None:
        raise TypeError("tll.attribute needs sites: tll.attribute(model, x, 'layer4', "
                        "target=3), or a list of sites.")
    run_method = lookup(METHODS, method, "attribution method")
    backend = backend_for(model)
    if not getattr(backend, "supports_gradients", False):
        raise NotImplementedError(f"tll.attribute does not run {backend.name} models. {SUPPORTED}")
    single = isinstance(sites, (str, int, Selector)) and not isinstance(sites, bool)
    keys = [sites] if single else list(sites)
    if not keys:
        raise ValueError("sites is empty: give at least one site.")
    runner = backend.prepare(model)
    args, kwargs = normalize_inputs(input_args, input_kwargs)
    run = _Run(backend, runner, args, kwargs, _objective(target))
    try:
        with cyclic_gc_paused():
            found = run_method(run, keys, baseline=baseline, n_steps=n_steps,
                               integration=integration)
    finally:
        run.restart()
    return found[keys[0]] if single else found


class _Run:
    """One model and input; every pass starts from the state the call found."""

    def __init__(self, backend, runner, args, kwargs, objective):
        self.backend, self.runner = backend, runner
        self.args, self.kwargs = args, kwargs
        self.objective = objective
        self.rng = snapshot_rng()
        self.restore_state = backend.keep_state(runner, args, kwargs)

    def restart(self):
        restart(self.rng, self.restore_state)

    def capture(self, args, kwargs, save, **options):
        """``(CaptureResult, what the model returned)`` of one pass from the starting state."""
        hook = options.get("edit_hook")
        if hook is None:
            return self._capture(args, kwargs, save, **options)
        with hook.failures_raised():
            return self._capture(args, kwargs, save, **options)

    def _capture(self, args, kwargs, save, **options):
        self.restart()
        returned = []
        if isinstance(self.runner, nn.Module):
            handle = self.runner.register_forward_hook(
                lambda module, inputs, output: returned.append(output))
            try:
                result = self.backend.capture(self.runner, args, kwargs, save, **options)
            finally:
                handle.remove()
        else:
            runner = self.runner

            def keep(*a, **k):
                returned.append(runner(*a, **k))
                return returned[-1]

            result = self.backend.capture(keep, args, kwargs, save, **options)
        return result, returned[-1]


def _gradient_methods(multiply):
    def run_method(run, keys, **_):
        with torch.enable_grad():
            save = "all" if multiply else None
            result, _ = run.capture(run.args, run.kwargs, save, gradients=True)
            history = history_from_capture(result)
            detached = _sites_without_graph(history, keys, result.gradients)
            if detached:
                result.gradients.release()
                hook = EditHook(result.nodes, [(site, Replace(_attached)) for site in detached])
                result, _ = run.capture(run.args, run.kwargs, save, gradients=True,
                                        edit_hook=hook)
                history = history_from_capture(result)
        history = attach_gradients(history, keys, with_inputs=False)
        compute_gradients(history, lambda out: run.objective(out).sum())
        found = {}
        for key in keys:
            site = resolve_site(history, key)
            values = {}
            for layer in site.layers:
                if not layer.has_grad:
                    raise ValueError(_unreached(site, layer))
                values[layer.layer_label] = (layer.grad * layer.tensor_contents).contiguous() \
                    if multiply else layer.grad
            found[key] = Attribution(site.name, "grad_x_activation" if multiply else "saliency",
                                     values)
        return found

    return run_method


def _sites_without_graph(history, keys, recorder):
    """The sites with an op whose value is outside the autograd graph (a frozen model).

    Nothing before them required grad (parameters with ``requires_grad=False``,
    integer inputs); as Captum does, their values are then made to require
    grad in a second pass (:func:`_attached`), so gradients are taken there.
    """
    found = []
    for key in keys:
        site = resolve_site(history, key)
        if any(layer.kind not in ("input", "buffer")
               and layer.tensor_dtype.startswith(("float", "bfloat", "complex"))
               and layer.meta["capture_index"] not in recorder.edges for layer in site.layers):
            found.append(site)
    return found


def _attached(value, layer):
    """``value``, made to start a graph when outside one (:func:`_sites_without_graph`)."""
    if value.requires_grad or not (value.is_floating_point() or value.is_complex()):
        return value
    return value.detach().requires_grad_(True).clone()


def _integrated_gradients(run, keys, baseline, n_steps, integration):
    alphas, weights = path_points(integration, n_steps)
    base_args, base_kwargs = _baseline_inputs(run.args, run.kwargs, baseline)
    with torch.enable_grad():
        clean, out_x = run.capture(run.args, run.kwargs, "all")
        base, out_b = run.capture(base_args, base_kwargs, "all")
    history_x, history_b = history_from_capture(clean), history_from_capture(base)
    if [(n.kind, n.func_name) for n in clean.nodes] != [(n.kind, n.func_name)
                                                       for n in base.nodes]:
        raise ValueError("integrated_gradients: the model ran other operations on the baseline "
                         "than on the input, so the site's baseline activation is not defined. "
                         "Give a baseline the model treats alike (same shapes, same branches).")
    difference = run.objective(out_x).detach() - run.objective(out_b).detach()
    weights = torch.tensor(weights).float()
    found = {}
    for key in keys:
        site = resolve_site(history_x, key)
        ends = [(layer, history_b[layer.layer_label].tensor_contents, layer.tensor_contents)
                for layer in site.layers]
        paths = {layer.layer_label: torch.cat([start + alpha * (end - start) for alpha in alphas])
                 .requires_grad_() for layer, start, end in ends}
        grads = _path_gradients(run, clean, site, paths, n_steps)
        values, total = {}, 0
        for (layer, start, end), grad in zip(ends, grads):
            if grad is None:
                raise ValueError(_unreached(site, layer))
            summed = (grad.contiguous().view(n_steps, -1) * weights.view(n_steps, 1).to(grad.device)
                      ).reshape((n_steps,) + tuple(end.shape)).sum(0)
            values[layer.layer_label] = (summed * (end - start)).contiguous()
            total = total + _per_example(values[layer.layer_label], difference)
        found[key] = Attribution(site.name, "integrated_gradients", values,
                                 completeness_gap=total - difference,
                                 target_difference=difference, n_steps=n_steps)
    return found


def _path_gradients(run, clean, site, paths, n_steps):
    """Gradients of the target at every point of the path, for each layer of ``site``."""
    edit = Replace(lambda value, layer: paths[layer.layer_label].clone())
    inputs = {layer.source: layer.layer_label for layer in site.layers if layer.kind == "input"}
    others = [layer for layer in site.layers if layer.kind != "input"]
    hook = None
    if others:
        hook = EditHook(clean.nodes, [(site if not inputs else _only(site, others), edit)])
    with torch.enable_grad():
        args, kwargs = _repeat((tuple(run.args), dict(run.kwargs)), n_steps, paths, inputs)
        _, output = run.capture(args, kwargs, None, edit_hook=hook)
        if hook is not None and not hook.tallies[0].fired:
            raise RuntimeError(f"integrated_gradients: site '{site.name}' was not reached in the "
                               f"pass over the {n_steps} points of the path (the model ran "
                               "other operations on the larger batch).")
        loss = run.objective(output).sum()
    leaves = [paths[layer.layer_label] for layer in site.layers]
    return torch.autograd.grad(loss, leaves, allow_unused=True)


def _only(site, layers):
    return type(site)(site.key, site.kind, tuple(layers), site.calls)


def _repeat(inputs, n_steps, paths, input_sites):
    """Every tensor repeated ``n_steps`` times along its first axis; input sites on their path."""
    def repeat(tensor, path):
        source = ("args",) + path[1:] if path[0] == 0 else ("kwargs",) + path[1:]
        if source in input_sites:
            return paths[input_sites[source]].clone()
        if tensor.dim() == 0:
            return tensor
        return torch.cat([tensor] * n_steps)

    return map_nested(inputs, repeat)


def _baseline_inputs(args, kwargs, baseline):
    """``(args, kwargs)`` of the baseline run; see :func:`attribute`."""
    def fill(value):
        def replace(tensor, path):
            if not (tensor.is_floating_point() or tensor.is_complex()):
                return tensor
            return torch.full_like(tensor, value)
        return replace

    if baseline is None or (isinstance(baseline, (int, float)) and not isinstance(baseline, bool)):
        return map_nested((tuple(args), dict(kwargs)), fill(0.0 if baseline is None else baseline))
    if isinstance(baseline, torch.Tensor):
        baseline = (baseline,)
    if isinstance(baseline, dict):
        unknown = sorted(set(baseline) - set(kwargs))
        if unknown:
            raise ValueError(f"baseline names keyword inputs the model was not given: "
                             f"{', '.join(unknown)} (given: {', '.join(kwargs) or 'none'}).")
        args, kwargs = map_nested((tuple(args), {k: v for k, v in kwargs.items()
                                                 if k not in baseline}), fill(0.0))
        return args, {**kwargs, **baseline}
    if isinstance(baseline, (tuple, list)):
        if len(baseline) != len(args):
            raise ValueError(f"baseline has {len(baseline)} positional inputs; the model was "
                             f"given {len(args)}. Give one baseline per positional input.")
        return tuple(baseline), map_nested(dict(kwargs), fill(0.0))
    raise TypeError(f"baseline must be None, a number, a tensor, a tuple like input_args or a "
                    f"dict of keyword inputs; got {type(baseline).__name__}.")


def _per_example(values, difference):
    if difference.dim() == 0:
        return values.sum()
    return values.reshape(values.shape[0], -1).sum(1)


def _objective(target):
    """``objective(output) -> per-example tensor`` for ``target``; see :func:`attribute`."""
    if callable(target):
        return lambda out: _as_tensor(target(out), "target(output)")
    if target is None:
        def whole(out):
            out = _output_tensor(out, target)
            if out.dim() == 0 or out.numel() != out.shape[0]:
                raise ValueError(f"target=None needs one output value per example; the model "
                                 f"returned shape {tuple(out.shape)}. Give target= (a class "
                                 "index, or a callable on the output).")
            return out.reshape(out.shape[0])
        return whole
    if isinstance(target, bool) or not isinstance(target, (int, tuple)):
        raise TypeError(f"target must be an int, a tuple of ints, a callable or None; got "
                        f"{type(target).__name__}.")
    index = (slice(None), target) if isinstance(target, int) else (slice(None), *target)
    return lambda out: _output_tensor(out, target)[index]


def _output_tensor(out, target):
    if isinstance(out, torch.Tensor):
        return out
    raise TypeError(f"target={target!r} indexes the model's output, but the model returned a "
                    f"{type(out).__name__}; give target as a callable on it, e.g. "
                    "target=lambda out: out.logits[:, -1, 3].")


def _as_tensor(value, what):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must return a tensor, got {type(value).__name__}.")
    return value


def _unreached(site, layer):
    return (f"Site '{site.name}' (layer {layer.layer_label}) does not reach the target: no "
            "gradient flows from the target back to it, so it has no attribution. Choose a "
            "site upstream of the target.")


METHODS = {"saliency": _gradient_methods(False),
           "grad_x_activation": _gradient_methods(True),
           "integrated_gradients": _integrated_gradients}
"""``{method name: run(run, keys, **options) -> {site: Attribution}}``."""
