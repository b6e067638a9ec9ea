"""The re-run engine: ``tll.intervene(model, input_args, edits)`` runs the model with the edits.

Two passes from the same starting state (the caller's generator states,
the model's buffers, the input tensors, all put back afterwards):

1. a logging pass without saved values: the clean graph, against which the
   sites are resolved before anything is edited (and whose op sequence the
   edited run is compared with), and the clean outputs (for the change at
   the outputs; for a plain callable rather than a module, a plain call
   gives them);
2. the edited pass: the capture backend logging every value, with an
   :class:`EditHook` that replaces each site's value as it is made. Random
   calls draw the same numbers as in the clean run as long as the same ops
   run in the same order.

Where the hook acts
-------------------
* An op site: the op's result, before any later op sees it. For an op that
  writes into a tensor (``relu_``, ``x[i] = y``, ``out=``) the edited value
  is written into that tensor, so every later reader sees it.
* A module site: what the call returned, as a forward hook returning a new
  output would (every tensor of a tuple or dict). When the returned tensor
  was made inside the call and nothing inside read it, its layer takes the
  edited value. Otherwise (the module returns its input, as ``Identity``
  does, or used the tensor inside) the edited value gets a layer of its own,
  an ``intervention`` op whose parent is the returned tensor's layer, so the
  other readers keep the value they read.
* An input site: the input is edited before the pass; an output site: the
  output's saved value.

If the ops that ran after an edit differ from the clean run's (an edit
flipped a Python branch), :class:`OpsChangedWarning` names the first op that
differs; with ``strict=True`` it is a :class:`OpsChangedError`. A site whose
op did not run at its place in the sequence never fires, which raises.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from ..capture import backend_for
from ..capture.gc_pause import cyclic_gc_paused
from ..graph import history_from_capture
from ..model_state import (normalize_inputs, refuse_inside_logged_pass, restore_rng,
                           snapshot_rng)
from ..nested import find_tensors, map_nested
from .report import Tally, apply_edit, finish_report, outside_package_stacklevel, plan, \
    squared_norm


class _EditFailed(BaseException):
    """Carries an edit's error out of the model's forward (which may catch ``Exception``)."""


class OpsChangedWarning(UserWarning):
    """The edited run executed other ops than the clean run (from the op named on)."""


class OpsChangedError(RuntimeError):
    """With ``strict=True``: the edited run executed other ops than the clean run."""


def intervene(model, input_args=None, edits=None, input_kwargs=None, strict=False):
    """Run the model with ``edits`` applied as the ops run; return the edited run's history.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A torch model (TensorFlow models raise ``NotImplementedError``).
    input_args, input_kwargs
        As for ``tll.log_forward_pass``.
    edits : dict
        ``{site: edit}``: sites as ``history[...]`` names layers (labels,
        module addresses, ``:pass`` for one pass, without it every pass) or
        ``tll.select(...)``; edits from ``tll.edits`` or callables
        ``fn(activation, layer) -> tensor``.
    strict : bool
        Raise :class:`OpsChangedError` instead of warning when the edited
        run executes other ops than the clean run.

    Returns
    -------
    ModelHistory
        Every value of the edited run saved; ``history.interventions`` says
        what each edit did (see :mod:`torchlens_like.interventions.report`).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> edited = tll.intervene(model, torch.ones(1, 3), {"1": tll.edits.zero()})
    >>> torch.equal(edited["output_1"].tensor_contents, model[2].bias.detach().view(1, 1))
    True
    >>> edited.interventions[["site", "edit", "fired"]]
      site    edit  fired
    0    1  zero()      1
    """
    refuse_inside_logged_pass("tll.intervene")
    if edits is None:
        raise TypeError("tll.intervene needs edits: tll.intervene(model, x, {site: edit}), or "
                        "tll.intervene(model, edits={...}, input_kwargs={...}) for a model "
                        "called with keywords only.")
    backend = backend_for(model)
    if backend.name != "torch":
        raise NotImplementedError(
            f"tll.intervene does not run {backend.name} models. Interventions run on torch "
            "models: history.intervene(edits) on a history logged from a torch model, "
            "tll.intervene(model, input_args, edits) with a torch model.")
    runner = backend.prepare(model)
    args, kwargs = normalize_inputs(input_args, input_kwargs)
    caller_rng = snapshot_rng()
    restore_state = backend.keep_state(runner, args, kwargs)
    try:
        with cyclic_gc_paused():
            clean_result, expected = _clean_pass(backend, runner, args, kwargs,
                                                 lambda: restart(caller_rng, restore_state))
            hook = EditHook(clean_result.nodes, plan(history_from_capture(clean_result), edits))
            restart(caller_rng, restore_state)
            with hook.failures_raised():
                edited_args, edited_kwargs = hook.edit_inputs(args, kwargs)
                result = backend.capture(runner, edited_args, edited_kwargs, "all",
                                         edit_hook=hook)
                hook.edit_outputs(result.nodes)
            hook.mark(result.nodes)
            edited = history_from_capture(result)
    finally:
        restart(caller_rng, restore_state)
    edited.call_trace = None
    _compare_ops(clean_result.nodes, result.nodes, hook, strict)
    output_change = sum(squared_norm(layer.tensor_contents, expected[layer.source])
                        for layer in edited.layers if layer.kind == "output"
                        and layer.source in expected
                        and layer.tensor_contents.shape == expected[layer.source].shape) ** 0.5
    edited.interventions = finish_report(hook.tallies, output_change, "re-run")
    return edited


def _clean_pass(backend, runner, args, kwargs, restart_state):
    """``(CaptureResult without saved values, {output path: clean output})``.

    A module's outputs are taken from the clean pass itself by a forward hook
    on the model (removed again at once); a plain callable's from a plain
    call, from the same starting state.
    """
    if not isinstance(runner, nn.Module):
        result = backend.capture(runner, args, kwargs, None)
        restart_state()
        return result, backend.plain_outputs(runner, args, kwargs)
    returned = []
    handle = runner.register_forward_hook(lambda module, inputs, output: returned.append(output))
    try:
        result = backend.capture(runner, args, kwargs, None)
    finally:
        handle.remove()
    return result, {path: tensor.detach() for path, tensor in find_tensors(returned[-1])}


def restart(rng, restore_state):
    """Put the generators, buffers and inputs back to where the call started."""
    restore_rng(rng)
    restore_state()


class EditCall:
    """The function of an ``intervention`` layer: the edit applied to one value."""

    def __init__(self, edit, layer):
        self.edit = edit
        self.layer = layer

    def __call__(self, value):
        return self.edit(value, self.layer)

    def __repr__(self):
        return f"intervention {self.edit!r}"


class EditHook:
    """Applies planned edits during a capture, at the clean graph's capture positions.

    Parameters
    ----------
    clean_nodes : list of LayerEntry
        The clean pass's nodes in capture order (before any pass trimmed them).
    planned : list of (Site, Edit)
        Sites resolved against the clean graph.
    """

    def __init__(self, clean_nodes, planned):
        self.clean_nodes = clean_nodes
        self.planned = planned
        self.tallies = [Tally(site, edit) for site, edit in planned]
        self.by_position = {}
        self.by_call = {}
        self.inputs = []
        self.outputs = []
        self.hits = {}
        self.failure = None
        for number, (site, _) in enumerate(planned):
            if site.kind == "module":
                for call in site.calls:
                    self.by_call.setdefault(call, []).append(number)
                continue
            for layer in site.layers:
                if layer.kind == "buffer":
                    raise ValueError(
                        f"tll.intervene cannot edit the buffer layer {layer.layer_label} (site "
                        f"'{site.name}'): a buffer's layer is made when an op first reads it. "
                        "Edit the op that reads it, or use history.intervene(edits).")
                if layer.kind == "input":
                    self.inputs.append((layer, number))
                elif layer.kind == "output":
                    self.outputs.append((layer, number))
                else:
                    self.by_position.setdefault(layer.meta["capture_index"], []).append(number)

    @contextlib.contextmanager
    def failures_raised(self):
        """Around a pass run with this hook: an edit's error leaves the pass as itself.

        Inside the forward it travels as a ``BaseException`` (the model may
        catch ``Exception``); here it is raised again as the edit raised it.
        """
        try:
            yield
        except _EditFailed:
            raise self.failure from None

    def _apply(self, numbers, value, clean_layer):
        for number in numbers:
            site, edit = self.planned[number]
            before = value
            try:
                value = apply_edit(edit, before, clean_layer, site)
            except Exception as exc:
                self.failure = exc
                raise _EditFailed from None
            self.tallies[number].add(clean_layer, before, value)
        return value

    def after_op(self, position, name, out, outputs, written):
        """Edit the outputs of the call ``name`` whose first node gets capture index ``position``.

        An output is edited only where the clean run made the same function's
        output at that position (else the site never fires there).
        """
        found = [(k, self.by_position[position + k]) for k in range(len(outputs))
                 if position + k in self.by_position
                 and self.clean_nodes[position + k].func_name == name]
        if not found:
            return out, outputs
        outputs = list(outputs)
        replaced = {}
        for k, numbers in found:
            path, tensor = outputs[k]
            value = self._apply(numbers, tensor, self.clean_nodes[position + k])
            for number in numbers:
                self.tallies[number].fired += 1
            self.hits.setdefault(position + k, []).extend(numbers)
            if any(tensor is target for target in written):
                tensor.copy_(value)
            else:
                outputs[k] = (path, value)
                replaced[path] = value
        if replaced:
            out = replaced[None] if None in replaced else map_nested(
                out, lambda tensor, path: replaced.get(path, tensor))
        return out, tuple(outputs)

    def after_module(self, session, call, output):
        """Edit what a module call returned, as a forward hook returning a new output would."""
        numbers = self.by_call.get(call)
        if not numbers:
            return output
        for number in numbers:
            self.tallies[number].fired += 1
        edited = {}

        def edit(tensor, path):
            if id(tensor) in edited:
                return edited[id(tensor)]
            node = session.lookup(tensor)
            if node is None:
                raise ValueError(
                    f"Module call {call} (site '{self.planned[numbers[0]][0].name}') returned a "
                    "tensor no op of the pass made (a parameter or a constant); edit the op "
                    "that reads it instead.")
            clean_layer = self.clean_nodes[node.meta["capture_index"]]
            value = self._apply(numbers, tensor, clean_layer)
            if node is not None and call in node.module_calls and not node.child_nodes:
                session.replace_output(node, value)
                self.hits.setdefault(node.meta["capture_index"], []).extend(numbers)
            else:
                first = len(session.nodes)
                session.record_call(EditCall(self.planned[numbers[0]][1], clean_layer),
                                    "intervention", session.resolve_call((tensor,), {}),
                                    ((None, value),), 0.0)
                self.hits.setdefault(first, []).extend(numbers)
            edited[id(tensor)] = value
            return value

        return map_nested(output, edit)

    def edit_inputs(self, args, kwargs):
        """``(args, kwargs)`` with the input sites edited."""
        if not self.inputs:
            return args, kwargs
        by_source = {}
        for layer, number in self.inputs:
            by_source.setdefault(layer.source, (layer, []))[1].append(number)

        def edit(tensor, path):
            source = ("args",) + path[1:] if path[0] == 0 else ("kwargs",) + path[1:]
            if source not in by_source:
                return tensor
            layer, numbers = by_source[source]
            for number in numbers:
                self.tallies[number].fired += 1
            with torch.no_grad():
                return self._apply(numbers, tensor, layer)

        return map_nested((tuple(args), dict(kwargs)), edit)

    def edit_outputs(self, nodes):
        """Edit the saved values of the output sites, once the pass has ended."""
        for layer, number in self.outputs:
            node = next((n for n in nodes if n.kind == "output" and n.source == layer.source),
                        None)
            if node is None:
                continue
            node.tensor_contents = self._apply([number], node.tensor_contents, layer)
            self.tallies[number].fired += 1
            self.hits.setdefault(node.meta["capture_index"], []).append(number)

    def mark(self, nodes):
        """Write each edited node's edits into its ``meta["intervention"]`` (for pictures)."""
        for position, numbers in self.hits.items():
            nodes[position].meta["intervention"] = [repr(self.planned[n][1]) for n in numbers]
        for layer, number in self.inputs:
            node = next((n for n in nodes if n.kind == "input" and n.source == layer.source),
                        None)
            if node is not None:
                node.meta["intervention"] = [repr(self.planned[number][1])]


def _compare_ops(clean_nodes, nodes, hook, strict):
    clean = [(n.kind, n.func_name) for n in clean_nodes]
    edited = [(n.kind, n.func_name) for n in nodes if n.func_name != "intervention"]
    first = next((i for i, (a, b) in enumerate(zip(clean, edited)) if a != b),
                 None if len(clean) == len(edited) else min(len(clean), len(edited)))
    if first is None:
        return
    was = f"{clean[first][1]}" if first < len(clean) else "the end of the pass"
    now = f"{edited[first][1]}" if first < len(edited) else "the end of the pass"
    label = clean_nodes[first].layer_label if first < len(clean_nodes) else None
    message = (f"The edits changed which ops ran: op #{first} was {was}"
               f"{f' ({label})' if label else ''} in the clean run and is {now} in the edited "
               "run (the first op that differs; an edit may have flipped a Python branch). "
               "Labels after it do not correspond to the clean graph's.")
    if strict:
        raise OpsChangedError(message)
    warnings.warn(message, OpsChangedWarning, stacklevel=outside_package_stacklevel())
