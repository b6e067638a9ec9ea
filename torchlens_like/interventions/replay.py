"""The replay engine: ``history.intervene(edits)`` recomputes only what lies downstream.

The validator's per-op replay (:func:`torchlens_like.validate.rerun.run_call`)
run forwards: each site's saved value is edited, then every descendant of
the sites is re-run, in execution order, on its parents' values (edited
where they were recomputed, saved otherwise), with the generator state each
random call consumed in the logged pass and the parameter tensors it read.
Everything upstream of the sites keeps its saved value; the result is a new
history (records copied, unchanged values shared), the source is untouched.

Replay refuses, with a :class:`ReplayRefused` that says to use the re-run
(``tll.intervene``), where it could give a wrong answer:

* the history has no replay information (loaded from a file) or lacks a
  saved value it needs;
* a parameter a recomputed op reads was written since the pass read it (its
  version counter moved: a write later in the forward, an optimiser step,
  ``load_state_dict``);
* a value downstream of a site was turned into a Python value (``item``,
  ``bool``, ``tolist``...; capture records them): a Python branch could have
  gone the other way;
* a recomputed op cannot be re-run from saved values
  (:data:`~torchlens_like.validate.NOT_REPLAYABLE`);
* a module site whose returned tensor the graph cannot separate from other
  uses: the module returns a tensor it did not compute (its input, as
  ``Identity`` does), or uses its result inside after computing it; a forward
  hook's edit would reach only the returned value, which replay cannot tell.

Writes to a parameter through ``.data`` move no version counter and are not
seen here; replay before changing the model's weights, or re-run.
"""

from __future__ import annotations

import torch

from ..graph.duplicate import copy_history
from ..model_state import (refuse_inside_logged_pass, restore_rng, snapshot_rng,
                           storage_address, tensor_version)
from ..nested import find_leaves, find_tensors, pick
from ..records import is_slot
from ..validate.rerun import run_call
from ..validate.rules import NOT_REPLAYABLE
from .report import Tally, apply_edit, change_at_outputs, finish_report, plan, squared_norm


class ReplayRefused(ValueError):
    """The replay engine cannot give a trustworthy answer here; the message says why."""


def replay_intervene(history, edits):
    """A new history with ``edits`` applied, replaying only the descendants of the sites.

    See :meth:`torchlens_like.ModelHistory.intervene` and the module docstring.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(lambda x: torch.relu(x) * 2, torch.tensor([-1.0, 3.0]))
    >>> edited = replay_intervene(history, {"relu_1": tll.edits.scale(10)})
    >>> edited["mul_1"].tensor_contents, history["mul_1"].tensor_contents
    (tensor([ 0., 60.]), tensor([0., 6.]))
    """
    replay = ReplayPlan(history, edits)
    values, tallies = replay.run()
    edited = copy_history(history)
    for old, new in zip(history.layers, edited.layers):
        if id(old) in values:
            new.tensor_contents = values[id(old)]
            new.meta["change"] = squared_norm(new.tensor_contents, old.tensor_contents) ** 0.5
        for number in replay.targets.get(id(old), ()):
            new.meta.setdefault("intervention", []).append(repr(replay.planned[number][1]))
    edited.interventions = finish_report(tallies, change_at_outputs(history, edited), "replay")
    return edited


class ReplayPlan:
    """Edits resolved against a history and checked for replay; :meth:`run` computes them.

    ``planned`` is ``[(Site, Edit)]``, ``targets`` ``{id(layer): [numbers in
    planned]}`` and ``downstream`` ``{id(layer): layer}`` of the edited layers
    and everything downstream, in execution order. Making one raises
    :class:`ReplayRefused` where replay could answer wrongly. Plans of one
    history made one after another may share ``cleared``, a set of ``id``
    of the ops whose own checks (replay information, replayable function,
    unchanged weights) passed, so each op is checked once.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(lambda x: torch.relu(x) * 2, torch.tensor([-1.0, 3.0]))
    >>> values, tallies = ReplayPlan(history, {"relu_1": tll.edits.zero()}).run()
    >>> values[id(history["output_1"])], tallies[0].fired
    (tensor([0., 0.]), 1)
    """

    def __init__(self, history, edits, cleared=None):
        refuse_inside_logged_pass("history.intervene")
        self.planned = plan(history, edits)
        self.targets = {}
        for number, (site, _) in enumerate(self.planned):
            _refuse_inseparable_module_outputs(history, site)
            for layer in site.layers:
                self.targets.setdefault(id(layer), []).append(number)
        self.downstream = _descendants(history, self.targets)
        self.recomputed = self.reused = 0
        _refuse_what_replay_cannot_do(self.targets, self.downstream,
                                      set() if cleared is None else cleared)

    def run(self, outputs_only=False, source=None):
        """``({id(layer): new value}, [Tally])`` for the edited and downstream layers.

        Runs without gradients; the caller's generator states are kept. With
        ``outputs_only`` the caller reads only the output layers' values: an
        in-place op then writes into a value this replay computed (and that
        shares memory with nothing saved) instead of into a copy, so the
        values of the layers before such writes are not kept. With a
        :class:`~.reuse.SourceRun` as ``source``, an op whose call and inputs
        are the source run's (see :mod:`.reuse`) takes that run's saved value
        instead of being recomputed. ``self.reused`` counts those ops and
        ``self.recomputed`` the calls run, in the last run (0 before any).
        """
        tallies = [Tally(site, edit) for site, edit in self.planned]
        caller_rng = snapshot_rng()
        try:
            with torch.no_grad():
                values = self._values(tallies, set() if outputs_only else None, source)
        finally:
            restore_rng(caller_rng)
        for tally in tallies:
            tally.fired = len(tally.site.calls or tally.site.layers)
        return values, tallies

    def _values(self, tallies, owned, source):
        values, results = {}, {}
        same = set()
        self.recomputed = self.reused = 0
        for old in self.downstream.values():
            parents = old.arg_positions
            if not any(id(parent) in values for parent in parents):
                value = old.tensor_contents
            elif old.kind != "op":
                value = values[id(old.parent_nodes[0])]
                if id(old.parent_nodes[0]) in same:
                    same.add(id(old))
            elif source is not None and _takes_source_value(old, parents, values, same, source):
                value = source.same_call(old).tensor_contents
                same.add(id(old))
                self.reused += 1
            else:
                if old.call_index not in results:
                    result = results[old.call_index] = run_call(old, values, owned or ())
                    self.recomputed += 1
                    if owned is not None:
                        owned.update(_fresh(result, old, values))
                result = results[old.call_index]
                value = pick(result, old.output_path) if old.output_path is not None else result
            for number in self.targets.get(id(old), ()):
                site, edit = self.planned[number]
                before = value
                value = apply_edit(edit, before, old, site)
                tallies[number].add(old, before, value)
                same.discard(id(old))
                if source is not None and source.is_source_value(old, value):
                    same.add(id(old))
            values[id(old)] = value
        return values


def _takes_source_value(node, parents, values, same, source):
    """Whether ``node``'s call and every input are the source run's (see :mod:`.reuse`)."""
    if source.same_call(node) is None:
        return False
    return all(id(parent) in same if id(parent) in values else source.same_value(parent)
               for parent in parents)


def _fresh(result, node, values):
    """``id`` of the tensors of ``result`` that share memory with none of the call's inputs."""
    inputs = [values.get(id(parent), parent.tensor_contents) for parent in node.arg_positions]
    inputs += [node.replay.values[slot] for _, slot in find_leaves((node.args, node.kwargs), is_slot)
               if slot.kind != "layer"]
    storages = {storage_address(tensor) for tensor in inputs if isinstance(tensor, torch.Tensor)}
    found = [result] if isinstance(result, torch.Tensor) else [t for _, t in find_tensors(result)]
    return {id(tensor) for tensor in found
            if tensor._base is None and storage_address(tensor) not in storages}



def _descendants(history, targets):
    """``{id: layer}`` of the edited layers and every layer downstream, in execution order."""
    found = set(targets)
    for layer in history.layers:
        if id(layer) not in found and any(id(parent) in found for parent in layer.arg_positions):
            found.add(id(layer))
    return {id(layer): layer for layer in history.layers if id(layer) in found}


RERUN = ("tll.intervene(model, input_args, edits), which re-runs the model with the edits "
         "applied as the ops run")


def _refuse(reason, instead=f"Use {RERUN}."):
    raise ReplayRefused(f"history.intervene cannot replay this edit: {reason} {instead}")


def _refuse_inseparable_module_outputs(history, site):
    if site.kind != "module":
        return
    for call, outputs in site.call_outputs(history).items():
        for layer in outputs:
            if call not in layer.module_calls:
                _refuse(f"module call {call} returns {layer.layer_label}, a tensor it did not "
                        "compute (its input passed through, as Identity does); a forward hook "
                        "edits only what the module returns, and the graph cannot tell which "
                        "later ops read the module's output rather than that tensor.")
            inside = [child.layer_label for child in layer.child_nodes
                      if call in child.module_calls]
            if inside:
                _refuse(f"module call {call} returns {layer.layer_label} but also uses it inside "
                        f"({', '.join(inside[:3])}) before returning; a forward hook's edit "
                        "would not reach those uses, which replay cannot keep apart.")


def _refuse_what_replay_cannot_do(targets, downstream, cleared):
    recomputed = [layer for layer in downstream.values()
                  if any(id(parent) in downstream for parent in layer.arg_positions)]
    ops = [layer for layer in recomputed if layer.kind == "op" and id(layer) not in cleared]
    if any(layer.replay is None for layer in ops):
        _refuse("this history keeps no replay information (the functions and generator states "
                "of its calls): it was loaded from a file, which keeps only data.")
    needed = [layer for layer in downstream.values() if id(layer) in targets
              and not any(id(parent) in downstream for parent in layer.arg_positions)]
    needed += [parent for layer in recomputed for parent in layer.arg_positions
               if id(parent) not in downstream]
    missing = sorted({layer.layer_label for layer in needed if not layer.has_saved_activation})
    if missing:
        _refuse(f"it needs saved values the history does not hold ({', '.join(missing[:6])}"
                f"{' ...' if len(missing) > 6 else ''}).",
                f"Log with layers_to_save='all', or use {RERUN}.")
    for layer in ops:
        if layer.replay.func in NOT_REPLAYABLE:
            _refuse(f"{layer.layer_label} ({layer.func_name}) lies downstream of an edited site "
                    f"and cannot be re-run from saved values: {NOT_REPLAYABLE[layer.replay.func]}.")
    for layer in downstream.values():
        converted = layer.meta.get("to_python")
        if converted:
            _refuse(f"the value of {layer.layer_label}, downstream of an edited site, was turned "
                    f"into a Python value ({', '.join(converted)}) in the logged pass: Python code "
                    "may have branched on it, and with the edit it could go the other way.")
    _refuse_changed_weights(ops)
    cleared.update(id(layer) for layer in ops)


def _refuse_changed_weights(ops):
    for layer in ops:
        replay = layer.replay
        for _, slot in find_leaves((layer.args, layer.kwargs), is_slot):
            if slot.kind == "layer":
                continue
            recorded = (replay.versions or {}).get(slot, "unknown")
            now = tensor_version(replay.values[slot])
            if recorded != now:
                _refuse(f"the model's weights changed since the logged pass read them: "
                        f"{slot.name} (read by {layer.layer_label}) was written, in the pass or "
                        f"after it (version counter {recorded} then, {now} now), so replay would "
                        "mix activations of the old weights with the new ones.",
                        f"Log the pass again, or use {RERUN}.")
