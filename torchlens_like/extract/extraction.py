"""``extract_features``: chosen layers of a model over a whole stimulus set, batch by batch.

The work, in order:

1. stimuli -> :class:`~.stimuli.StimulusSet` (fixed order; ``stimuli.csv``);
2. an existing, finished output with the same arguments is returned as is;
3. the layers are located once on a probe of the first stimuli (:mod:`.layers`);
4. reductions give each layer's stored shape; :mod:`.memory` groups layers;
5. per group, the stimulus ranges not yet written (from the manifest) are
   extracted batch by batch: one logging pass per batch keeping only the
   group's layers, cut short once they are saved when the model is in eval
   mode; each layer's slice is reduced and written at its stimulus indices;
   the manifest records it.

Each batch's sequence of ops is compared with the first batch's, so a model
whose graph changes with the input (data-dependent control flow) stops with
an error naming the layer that moved instead of writing misaligned features.

Under ``torchrun`` (:mod:`.distributed`) steps 3-5 change: rank 0's layer
plan is shared and checked on every rank; rank 0 opens the output and works
out what is still to do (from the manifest and the slices of earlier
launches); each rank extracts its share of the batches into slice files
(:mod:`.slices`); once every rank is done, rank 0 moves the slices into the
output in stimulus order, so the manifest and the arrays are those of a
single process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import zlib

import numpy as np
import torch

from ..api import (GraphDeparted, LeanUnavailable, ValidationError, check_saved_activations,
                   log_forward_pass, log_layers_at_positions, matches, plan_lean_pass)
from ..version import VERSION
from ..units import format_bytes
from . import memory, reductions
from .check_schedule import CheckSchedule
from .features import Features, damaged_rows, features_from_manifest, write_stimuli_table
from .interrupts import interrupts_deferred
from .distributed import (DistributedRun, detect_launch, runs_of, split_from_environment,
                          split_work)
from .layers import in_training_mode, layer_key, locate_layers
from .manifest import Manifest, describe_transform
from .resident_memory import PeriodicTrim, released_after_pass
from .slices import SliceStore
from .stimuli import StimulusError, as_stimulus_set
from .writers import MemoryWriter, get_writer
from .zoo import provenance

PROBE_STIMULI = 3
PROOF_STIMULI = 2
"""Stimuli of a checked batch that get a validated full capture (see :class:`_Run`)."""


class GraphChangedError(RuntimeError):
    """The model ran different operations on a later batch than on the first."""


class ExtractionValidationError(RuntimeError):
    """A checked batch's features differ from its validated full capture."""


def extract_features(model, stimuli, layers, batch_size=32, output_dir=None, format="npy",
                     flatten=False, device=None, memory_limit=None, dry_run=False, progress=True,
                     *, reduction=None, early_stop=True, on_error="raise", num_workers=None,
                     validate_every="auto", verify=True):
    """Features of ``layers`` for every stimulus, in stimulus order, optionally saved and resumable.

    Parameters
    ----------
    model : torch.nn.Module
        Best from :func:`~torchlens_like.load_model` (its name, weights and
        transform are then recorded and used).
    stimuli : ImageFolder, folder path, list of paths, Dataset or DataLoader
        See :func:`~.stimuli.as_stimulus_set`.
    layers : list of str or int
        What ``layers_to_save`` takes: labels (``"add_16"``), short labels,
        module addresses at any depth (``"layer3"``, ``"block:2"``), positions.
    batch_size : int
        Stimuli per forward pass.
    output_dir : str, optional
        Write the features there (with ``manifest.json`` and ``stimuli.csv``);
        a second call with the same arguments resumes or, when finished,
        returns the saved features. Without it, features stay in memory.
    format : str
        ``npy``, ``hdf5``, ``zarr``, ``mat``, ``pt`` or ``txt``.
    flatten : bool
        Store each layer as ``(n_stimuli, features)`` (for layers without
        another reduction).
    device : str or torch.device, optional
        Where batches go; default: where the model's parameters are (under
        torchrun with GPUs: the rank's ``cuda:LOCAL_RANK``, the model moved
        there for the call).
    memory_limit : str or int, optional
        Split the layers into groups whose features for all stimuli fit
        (``"2GB"``); one pass over the stimuli per group.
    dry_run : bool
        Print each layer's shape and bytes, the totals and the plan, and
        return the plan as a DataFrame without extracting.
    progress : bool or str
        Show a progress bar (images/s, ETA); a string also names it
        (``compare_models`` passes each model's name).
    reduction : str, tuple or dict, optional
        A reduction for every layer (``"spatial_mean"``, ``("srp",
        {"n_components": 4096})``, see :mod:`.reductions`), or a dict layer ->
        reduction.
    early_stop : bool
        Skip the rest of the forward pass once the layers are saved (only
        when every module is in eval mode, where it changes nothing kept).
    on_error : {"raise", "skip"}
        An unreadable image raises naming the file, or is skipped: its rows
        are NaN and ``Features.skipped`` lists it.
    num_workers : int, optional
        DataLoader workers decoding images (default: up to 4).
    validate_every : "auto", int or None
        Which batches get a check: their first stimuli get a full capture
        with every layer saved, which is validated (each saved activation
        re-computed from its parents), and their wanted layers must equal
        what the batch's pass produces for them (bitwise on CPU, within the
        validator's tolerances on CUDA). The first batch is always checked;
        after it ``"auto"`` checks a batch whenever the checks stay within
        5 % of the run's time (:mod:`.check_schedule`), an integer ``n``
        every ``n``-th batch, ``None`` none. A failed check stops the run
        naming the layer and stimuli; what was written before stays. The
        checks are listed in ``Features.validation`` and the manifest.
    verify : bool
        Check an existing output's rows against the CRC-32 recorded when they
        were written before resuming or returning it (one read of every
        file); damaged batches are extracted again.

    Returns
    -------
    Features or pandas.DataFrame
        The features; the plan when ``dry_run``.

    Notes
    -----
    After the first batch, each batch runs a lean pass over the graph
    logged on the first stimuli: it records nothing and checks every call
    against that graph. Where every layer is a module output only module
    calls are watched (no cost per op); otherwise every call is checked
    (``Features.validation`` says which ran). A batch whose calls differ
    (data-dependent control flow) is named in a warning and logged with a
    full pass instead, its layers found again by the same label or module
    address; a layer that cannot be found stops the run. Models with a
    module in training mode, and backends without a lean pass, log every
    batch with a full pass.

    The caller's random generators are left as they were (a DataLoader draws
    a seed from the global generator each time it is iterated).

    Launched by ``torchrun`` (any number of processes and nodes), the call
    splits the batches between the ranks and returns on every rank once rank
    0 has assembled the output: the same files, in the same stimulus order,
    as one process would write, with the world size listed in the manifest
    (``world_sizes``). It then needs ``output_dir`` (a folder every rank can
    reach) and a dataset rather than a DataLoader. A relaunch with any number
    of processes resumes. ``TLL_DISTRIBUTED_TIMEOUT`` (seconds, default 1800)
    bounds every wait for the other ranks.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> data = torch.utils.data.TensorDataset(torch.rand(10, 3))
    >>> feats = tll.extract_features(model.eval(), data, ["1", "linear_2"], batch_size=4, progress=False)
    >>> feats["1"].shape, feats.layer_labels
    ((10, 4), {'1': 'relu_1_3', 'linear_2': 'linear_2_4'})
    """
    device = torch.device(device) if device is not None else _default_device(model)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _extract(model, stimuli, layers, batch_size, output_dir, format, flatten, device,
                        memory_limit, dry_run, progress, reduction, early_stop, on_error,
                        num_workers, validate_every, verify)


def _extract(model, stimuli, layers, batch_size, output_dir, format, flatten, device,
             memory_limit, dry_run, progress, reduction, early_stop, on_error, num_workers,
             validate_every, verify):
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    schedule = CheckSchedule(validate_every)
    requests = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not requests:
        raise ValueError("layers is empty; name at least one layer (tll.log_forward_pass(model, "
                         "x).summary() lists them)")
    origin = provenance(model) or {}
    stimulus_set = as_stimulus_set(stimuli, origin.get("transform"), num_workers)
    if not len(stimulus_set):
        raise ValueError("the stimulus set is empty")
    get_writer(format)
    specs = _reduction_specs(requests, reduction, flatten)
    identity = _identity(model, origin, stimuli, stimulus_set, requests, specs, format)
    launch = detect_launch()
    if launch is not None and not dry_run:
        settings = _RunSettings(batch_size, device, on_error, _can_stop_early(model, early_stop),
                                progress, verify)
        return _extract_on_ranks(launch, model, stimulus_set, requests, specs, identity,
                                 output_dir, format, memory_limit, settings, schedule)
    if output_dir is not None and not dry_run:
        finished = _finished_output(output_dir, identity, len(stimulus_set), verify)
        if finished is not None:
            return finished
    probe, indices = _probe_inputs(stimulus_set, on_error)
    probe = probe.to(device)
    checked = None if dry_run else _validated_probe(model, probe, indices)
    plans = locate_layers(model, probe, requests, checked.history if checked else None)
    layouts = _layouts(plans, specs, len(stimulus_set))
    row_bytes = _row_bytes(layouts)
    groups = memory.plan_groups(row_bytes, len(stimulus_set), memory_limit)
    if dry_run:
        return _dry_run_report(plans, layouts, row_bytes, groups, len(stimulus_set))
    if output_dir is None and memory_limit is not None and len(groups) > 1:
        raise ValueError(f"the features need {len(groups)} groups under memory_limit="
                         f"{memory_limit!r} but without output_dir all are kept in memory; "
                         "pass output_dir to write each group to disk")
    settings = _RunSettings(batch_size, device, on_error, _can_stop_early(model, early_stop),
                            progress, verify)
    manifest, writer = _open_output(output_dir, format, identity, plans, layouts,
                                    stimulus_set, model, verify)
    if manifest is not None:
        manifest.world_sizes.append(1)
    with _Run(model, stimulus_set, plans, specs, layouts, settings, schedule, manifest,
              probe_check=checked) as run:
        for group in groups:
            run.extract_group(group, manifest, writer)
    with interrupts_deferred():
        writer.finalize()
        if manifest is not None:
            manifest.complete = True
            manifest.save()
    if manifest is None:
        return Features(writer.arrays, stimulus_set.ids, stimulus_set.labels,
                        {p.key: p.label for p in plans},
                        {"identity": identity, "validation": run.validation}, run.skipped)
    return features_from_manifest(manifest)


def _can_stop_early(model, early_stop):
    return early_stop and not in_training_mode(model)


@dataclasses.dataclass(frozen=True)
class _RunSettings:
    batch_size: int
    device: torch.device
    on_error: str
    early_stop: bool
    progress: bool
    verify: bool = True


def _extract_on_ranks(launch, model, stimulus_set, requests, specs, identity, output_dir,
                      format, memory_limit, settings, schedule):
    """The extraction as one rank of a ``torchrun`` launch (see :mod:`.distributed`)."""
    if output_dir is None:
        raise ValueError("under torchrun, extract_features needs output_dir: every rank writes "
                         "its slices there and rank 0 assembles them, so it must be a folder "
                         "every rank can reach (on several nodes, a shared filesystem)")
    if stimulus_set.loader is not None:
        raise ValueError("under torchrun, pass the Dataset (or image folder), not a DataLoader: "
                         "a DataLoader cannot be split between ranks")
    n = len(stimulus_set)
    with DistributedRun(launch) as ranks, _model_moved_to(model, settings.device):
        finished = None
        with ranks.stage("reading the output folder (rank 0)"):
            if ranks.is_main:
                finished = _finished_output(output_dir, identity, n, settings.verify) is not None
        if ranks.broadcast(finished, "sharing whether the output is finished"):
            return features_from_manifest(Manifest.load(output_dir))
        with ranks.stage("resolving the layers on the first stimuli"):
            probe, indices = _probe_inputs(stimulus_set, settings.on_error)
            probe = probe.to(settings.device)
            checked = _validated_probe(model, probe, indices)
            plans = locate_layers(model, probe, requests, checked.history)
        plans = ranks.check_plans(plans, _describe_plan)
        layouts = _layouts(plans, specs, n)
        groups = memory.plan_groups(_row_bytes(layouts), n, memory_limit)
        store = SliceStore(output_dir)
        output, todo = None, None
        with ranks.stage("opening the output folder (rank 0)"):
            if ranks.is_main:
                output = _open_output(output_dir, format, identity, plans, layouts,
                                      stimulus_set, model, settings.verify)
                output[0].world_sizes.append(ranks.world_size)
                output[0].save()
                todo = [_still_to_do(output[0], store, group, n) for group in groups]
        todo = ranks.broadcast(todo, "sharing the stimuli still to do")
        with _Run(model, stimulus_set, plans, specs, layouts, settings, schedule,
                  probe_check=checked) as run:
            for group, ranges in zip(groups, todo):
                share = split_work(ranges, settings.batch_size, ranks.world_size,
                                   split_from_environment())[ranks.rank]
                run.extract_share(group, share, store, ranks)
        ranks.finish(lambda: _assemble(store, *output, run.validation))
    return features_from_manifest(Manifest.load(output_dir))


def _describe_plan(plan):
    return (f"{plan.key!r} as {plan.label} ({plan.func_name}, shape {plan.shape}, "
            f"{plan.dtype})")


def _still_to_do(manifest, store, keys, n):
    """Stimulus ranges of ``keys`` neither in the output nor in slices of earlier launches."""
    gaps = []
    for key in keys:
        done = _union([[(start, stop) for start, stop, _ in manifest.progress[key]],
                       store.covered(key)])
        gaps.append(_gaps(done, n))
    return _union(gaps)


def _gaps(covered, n):
    gaps, position = [], 0
    for start, stop in covered:
        if start > position:
            gaps.append((position, start))
        position = max(position, stop)
    return gaps + ([(position, n)] if position < n else [])


def _assemble(store, manifest, writer, validation):
    """Move every slice into the output (in stimulus order), finish it, remove the slices.

    ``validation`` is rank 0's list of checks (the other ranks' checks stop
    their rank when they fail, and are not listed).
    """
    manifest.validation.extend(validation)
    for record in store.records():
        values, skipped = store.read(record)
        manifest.skipped.update(skipped)
        for key in record.keys:
            if not manifest.covers(key, record.start, record.stop):
                writer.write(key, record.start, values[key])
                manifest.record(key, record.start, record.stop, values[key])
        writer.flush()
        manifest.save()
    for key in manifest.layers:
        gaps = manifest.missing(key, 0, manifest.n_stimuli)
        if gaps:
            raise RuntimeError(f"layer {key!r} has no features for stimuli {gaps} after every "
                               f"rank finished; run the same command again to extract them")
    writer.finalize()
    manifest.complete = True
    manifest.save()
    store.clear()


class _Run:
    """The per-batch loop of one extraction (state shared by its groups).

    Each batch runs a lean pass (:func:`~torchlens_like.api.plan_lean_pass`)
    over the graph of a validated full capture of the first stimuli (the
    probe's, :func:`_validated_probe`, for the first group). That capture is
    the group's first check, repeated on the batches ``schedule``
    (:class:`.check_schedule.CheckSchedule`) says: :data:`PROOF_STIMULI` stimuli are
    logged with every layer saved and validated
    (:func:`~torchlens_like.api.check_saved_activations`), the wanted layers
    must sit at the positions found on the probe, and the lean pass over the
    same stimuli must reproduce them. Each check is appended to
    :attr:`validation` (and the manifest). A batch the lean pass finds off the
    known graph is logged with a full pass instead (:meth:`_relogged`).
    The lean plans keep their module wrappers until the run is left
    (:meth:`~torchlens_like.capture.lean.LeanPlan.held`); the heap pages a
    full capture freed are handed back after it (:func:`released_after_pass`),
    those of lean passes every few passes (:class:`PeriodicTrim`).
    """

    def __init__(self, model, stimulus_set, plans, specs, layouts, settings, schedule,
                 manifest=None, probe_check=None):
        self.model = model
        self.schedule = schedule
        self.probe_check = probe_check
        self.manifest = manifest
        self.validation = manifest.validation if manifest is not None else []
        self.lean_plans = {}
        self.full_pass_reason = None if not in_training_mode(model) else \
            "a module is in training mode (its random calls and statistics differ per pass)"
        self.stimuli = stimulus_set
        self.plans = {plan.key: plan for plan in plans}
        self.specs = specs
        self.layouts = layouts
        self.batch_size = settings.batch_size
        self.device = settings.device
        self.on_error = settings.on_error
        self.early_stop = settings.early_stop
        self.progress = settings.progress
        self.reference_ops = None
        self.skipped = {}
        self._held_plans = contextlib.ExitStack()
        self._lean_trim = PeriodicTrim()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._held_plans.close()

    def extract_group(self, keys, manifest, writer):
        n = len(self.stimuli)
        todo = _union([manifest.missing(k, 0, n) for k in keys]) if manifest else [(0, n)]
        if manifest is not None:
            self.skipped.update(manifest.skipped)
        total = sum(stop - start for start, stop in todo)
        from tqdm.auto import tqdm

        with tqdm(total=total, unit="img", disable=not self.progress or not total,
                  desc=_bar_label(self.progress, keys)) as bar:
            for start, stop in todo:
                for first, inputs, errors in self.stimuli.batches(start, stop, self.batch_size):
                    count = self._write_batch(keys, first, inputs, errors, manifest, writer)
                    bar.update(count)

    def extract_share(self, keys, batches, store, ranks):
        """This rank's ``batches`` of layers ``keys``, each written as a slice of ``store``."""
        loaded = (item for start, stop in runs_of(batches, self.batch_size)
                  for item in self.stimuli.batches(start, stop, self.batch_size))

        from tqdm.auto import tqdm

        total = sum(stop - start for start, stop in batches)
        with tqdm(total=total, unit="img", disable=not (self.progress and ranks.is_main and total),
                  desc=f"rank 0 of {ranks.world_size}, {len(keys)} layer(s)") as bar:

            def work(item):
                first, inputs, errors = item
                count, rows = self._batch_rows(keys, first, inputs, errors, None)
                store.write(first, first + count, rows, dict(errors))
                bar.update(count)

            ranks.run_share(batches, loaded, work)

    def _batch_rows(self, keys, first, inputs, errors, manifest):
        count = (len(inputs) if inputs is not None else 0) + len(errors)
        self._handle_errors(errors, manifest)
        values = self._layer_values(keys, inputs, first) if inputs is not None else {}
        return count, {key: _with_unread_rows(values.get(key), errors, first, count,
                                              self.layouts[key]) for key in keys}

    def _write_batch(self, keys, first, inputs, errors, manifest, writer):
        if manifest is not None:
            count = (len(inputs) if inputs is not None else 0) + len(errors)
            keys = [k for k in keys if not manifest.covers(k, first, first + count)]
        count, rows = self._batch_rows(keys, first, inputs, errors, manifest)
        for key in keys:
            writer.write(key, first, rows[key])
        writer.flush()
        if manifest is not None:
            for key in keys:
                manifest.record(key, first, first + count, rows[key])
            manifest.save()
        return count

    def _handle_errors(self, errors, manifest):
        for index, message in errors:
            if self.on_error == "raise":
                raise StimulusError(f"{message}. Remove or replace the file, or pass "
                                    "on_error='skip' to skip it (its rows become NaN). Features "
                                    "written so far are kept.")
            self.skipped[index] = message
            if manifest is not None:
                manifest.skipped[index] = message

    def _layer_values(self, keys, inputs, first):
        inputs = inputs.to(self.device)
        with torch.no_grad():
            tensors = self._kept_tensors(keys, inputs, first)
        values = {}
        for key in keys:
            plan = self.plans[key]
            tensor = torch.as_tensor(tensors[plan.position]).movedim(plan.stimulus_axis, 0)
            if tuple(tensor.shape[1:]) != plan.shape:
                raise GraphChangedError(
                    f"layer {key!r} ({plan.label}) has shape {tuple(tensor.shape[1:])} per "
                    f"stimulus for stimuli {first}-{first + len(inputs) - 1}, not {plan.shape} "
                    "as on the first stimuli. Give every stimulus the same size (the transform "
                    "should resize and crop).")
            reduced = reductions.apply(self.specs[key], tensor, key, len(self.stimuli))
            values[key] = reduced.detach().cpu().numpy()
        return values

    def _kept_tensors(self, keys, inputs, first):
        group = tuple(keys)
        if self.schedule.due(group):
            started = time.perf_counter()
            earlier = self.probe_check.seconds if self.probe_check is not None else 0.0
            with released_after_pass():
                self._check_batch(keys, inputs, first)
            self.schedule.record(time.perf_counter() - started + earlier)
        lean = self.lean_plans.get(group)
        if lean is None:
            with released_after_pass():
                return self._full_pass(keys, inputs, first)
        try:
            kept = lean.run((inputs,), {}, stop_early=self.early_stop)
            self._lean_trim.after_pass()
            return kept
        except GraphDeparted as departure:
            with released_after_pass():
                return self._relogged(keys, inputs, first, departure)

    def _full_pass(self, keys, inputs, first):
        positions = {self.plans[k].position for k in keys}
        tensors, ops = log_layers_at_positions(self.model, inputs, positions,
                                               stop_early=self.early_stop)
        self._check_ops(ops, keys, first, len(inputs))
        return tensors

    def _check_batch(self, keys, inputs, first):
        """Validate a full capture of the batch's first stimuli; the batch's pass must match it.

        The first group's first check is the probe's validated capture
        (:func:`_validated_probe`), made before the run started. Stimuli that
        leave the known graph have their layers found again by key, as the
        batch's will be (:meth:`_relogged`).
        """
        group = tuple(keys)
        probe_check, self.probe_check = self.probe_check, None
        if probe_check is not None and probe_check.record is not None:
            history, sample = probe_check.history, probe_check.stimuli
            record = dict(probe_check.record, layers=list(keys))
        else:
            sample = inputs[:PROOF_STIMULI]
            record = {"stimuli": [first, first + len(sample)], "layers": list(keys),
                      "torchlens_like": VERSION}
            try:
                history = check_saved_activations(self.model, sample)
            except ValidationError as exc:
                self._fail(record, f"the full capture of stimuli {_span(record)} did not "
                                   f"validate: {exc}")
        if group not in self.lean_plans and self.full_pass_reason is None:
            try:
                self.lean_plans[group] = self._held_plans.enter_context(plan_lean_pass(
                    self.model, history, [self.plans[k].position for k in keys]).held())
            except LeanUnavailable as exc:
                self.full_pass_reason = str(exc)
        lean = self.lean_plans.get(group)
        record["pass"] = lean.path if lean is not None else \
            f"full capture ({self.full_pass_reason})"
        departed = False
        if lean is not None:
            try:
                kept = lean.run((sample,), {}, stop_early=self.early_stop)
            except GraphDeparted as departure:
                record["pass"] = f"full capture (the stimuli left the known graph: {departure})"
                kept = self._relogged(keys, sample, record["stimuli"][0], departure)
                departed = True
        else:
            kept, _ = log_layers_at_positions(self.model, sample,
                                              {self.plans[k].position for k in keys},
                                              stop_early=self.early_stop)
        by_position = {layer.meta["capture_index"]: layer for layer in history.layers}
        for key in keys:
            plan = self.plans[key]
            where = f"layer {key!r} ({plan.label}) on stimuli {_span(record)}"
            if departed:
                expected = history[_as_request(key)].tensor_contents
            else:
                layer = by_position.get(plan.position)
                if layer is None or layer.layer_label != plan.label:
                    self._fail(record, f"{where}: the validated capture has "
                                       f"{layer.layer_label if layer is not None else 'no layer'} "
                                       f"at position {plan.position}")
                expected = layer.tensor_contents
            got = kept.get(plan.position)
            if got is None or not _same_values(got, expected):
                self._fail(record, f"{where}: the {'full' if departed else record['pass']} pass "
                                   "kept a value that differs from the validated full capture")
        record["result"] = "passed"
        self._note(record)

    def _fail(self, record, message):
        record["result"] = f"failed: {message}"
        self._note(record)
        raise ExtractionValidationError(f"{message}. The run stopped; the features written "
                                        "before are kept.")

    def _note(self, record):
        self.validation.append(record)
        if self.manifest is not None:
            self.manifest.save()

    def _relogged(self, keys, inputs, first, departure):
        """A full pass of a batch that left the known graph; its layers found again by key."""
        import warnings

        last = first + len(inputs) - 1
        warnings.warn(f"stimuli {first}-{last} left the graph of the first stimuli ({departure}); "
                      "this batch was logged with a full pass and its layers found again by "
                      "label or module address", RuntimeWarning, stacklevel=2)
        try:
            history = log_forward_pass(self.model, inputs,
                                       layers_to_save=[_as_request(key) for key in keys])
        except ValueError as exc:
            names = ", ".join(f"{key!r} ({self.plans[key].label})" for key in keys)
            raise GraphChangedError(
                f"layer(s) {names} cannot all be found on stimuli {first}-{last}, whose graph "
                f"differs from the first stimuli' ({departure}): {exc}. The graph depends on "
                "the input (data-dependent control flow); use a module address or a layer that "
                "every input reaches, or layers before the branch.") from None
        return {self.plans[key].position: history[_as_request(key)].tensor_contents
                for key in keys}

    def _check_ops(self, ops, keys, first, count):
        reference = self.reference_ops
        if reference is None or len(ops) > len(reference):
            common = reference or []
            if ops[:len(common)] == common:
                reference = self.reference_ops = ops
        shorter = min(len(ops), len(reference))
        moved = next((i for i in range(shorter) if ops[i] != reference[i]), None)
        missing = [k for k in keys if self.plans[k].position >= len(ops)]
        wrong = [k for k in keys if self.plans[k].position < len(ops)
                 and ops[self.plans[k].position][1] != self.plans[k].func_name]
        if moved is None and not missing and not wrong:
            return
        affected = [k for k in keys if moved is not None and self.plans[k].position >= moved]
        names = ", ".join(f"{k!r} ({self.plans[k].label})"
                          for k in dict.fromkeys(missing + wrong + affected))
        where = f" from op #{moved} ({ops[moved][1]} instead of {reference[moved][1]})" \
            if moved is not None else ""
        raise GraphChangedError(
            f"the model ran different operations on stimuli {first}-{first + count - 1} than on "
            f"the first ones{where}, so layer(s) {names} moved. The graph depends on the input "
            "(data-dependent control flow); extract with batch_size=1 and layers that every "
            "input reaches, or use layers before the branch.")


def _span(record):
    start, stop = record["stimuli"]
    return f"{start}-{stop - 1}"


def _same_values(got, expected):
    if not isinstance(got, torch.Tensor):
        return np.asarray(got).dtype == np.asarray(expected).dtype and \
            np.array_equal(np.asarray(got), np.asarray(expected))
    if got.device.type == "cpu":
        return got.dtype == expected.dtype and got.shape == expected.shape and \
            torch.equal(got, expected)
    return matches(got, expected)[0]


def _as_request(key):
    try:
        return int(key)
    except ValueError:
        return key


def _bar_label(progress, keys):
    """The progress bar's label: what is extracted, after the caller's name for the run if any.

    Examples
    --------
    >>> _bar_label(True, ["a", "b"]), _bar_label("resnet18", ["a"])
    ('2 layers', 'resnet18: 1 layer')
    """
    layers = f"{len(keys)} layer{'s' * (len(keys) > 1)}"
    return f"{progress}: {layers}" if isinstance(progress, str) else layers


def _row_bytes(layouts):
    return {key: int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            for key, (shape, dtype) in layouts.items()}


def _union(ranges_per_key):
    merged = []
    for start, stop in sorted(r for ranges in ranges_per_key for r in ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _with_unread_rows(values, errors, first, count, layout):
    if not errors:
        return values
    shape, dtype = layout
    rows = np.full((count,) + tuple(shape), np.nan, dtype=dtype)
    unread = {index - first for index, _ in errors}
    kept = [i for i in range(count) if i not in unread]
    if values is not None:
        rows[kept] = values
    return rows


def _reduction_specs(requests, reduction, flatten):
    per_layer = reduction if isinstance(reduction, dict) else {}
    unknown = set(map(layer_key, per_layer)) - set(map(layer_key, requests))
    if unknown:
        raise ValueError(f"reduction names layers that are not in layers: {sorted(unknown)}")
    specs = {}
    for request in requests:
        key = layer_key(request)
        spec = per_layer.get(request, per_layer.get(key)) if isinstance(reduction, dict) \
            else reduction
        if spec in (None, "none") and flatten:
            spec = "flatten"
        reductions.resolve_reduction(spec)
        specs[key] = spec
    return specs


def _layouts(plans, specs, n_stimuli):
    layouts = {}
    for plan in plans:
        dtype = getattr(torch, plan.dtype.removeprefix("torch."))
        sample = torch.zeros((2,) + plan.shape, dtype=dtype)
        reduced = reductions.apply(specs[plan.key], sample, plan.key, n_stimuli)
        layouts[plan.key] = (tuple(reduced.shape[1:]), str(reduced.numpy().dtype))
    return layouts


def _probe_inputs(stimulus_set, on_error):
    """The first readable stimuli (at most :data:`PROBE_STIMULI`) and their indices."""
    size = min(PROBE_STIMULI, len(stimulus_set))
    gathered, indices = [], []
    for first, inputs, errors in stimulus_set.leading_batches(size):
        if errors and on_error == "raise":
            raise StimulusError(f"{errors[0][1]}. Remove or replace the file, or pass "
                                "on_error='skip'.")
        if inputs is not None:
            gathered.append(inputs)
            unread = {index for index, _ in errors}
            indices += [i for i in range(first, first + len(inputs) + len(errors))
                        if i not in unread]
        if len(indices) >= size:
            break
    if not gathered:
        raise StimulusError("no stimulus could be read")
    return torch.cat(gathered)[:size], indices[:size]


@dataclasses.dataclass(frozen=True)
class ProbeCheck:
    """The run's first check (:func:`_validated_probe`).

    The validated capture, its stimuli, its manifest record (None when the
    stimuli are not contiguous) and the seconds it took.
    """

    history: object
    stimuli: torch.Tensor
    record: dict | None
    seconds: float


def _validated_probe(model, probe, indices):
    """The first check of the run: a validated full capture of the probe's first stimuli.

    Its history also resolves the layers, so the run pays one full capture
    for both. Returns a :class:`ProbeCheck`; its record is None when an
    unreadable stimulus lies between the checked ones (the run's first batch
    is then checked on its own).
    """
    started = time.perf_counter()
    sample = probe[:PROOF_STIMULI]
    checked = indices[:len(sample)]
    try:
        history = check_saved_activations(model, sample)
    except ValidationError as exc:
        raise ExtractionValidationError(
            f"the full capture of stimuli {checked[0]}-{checked[-1]} did not validate: {exc}. "
            "The run stopped before writing anything; features written by earlier runs are "
            "kept.") from None
    seconds = time.perf_counter() - started
    contiguous = checked == list(range(checked[0], checked[0] + len(checked)))
    record = {"stimuli": [checked[0], checked[-1] + 1], "torchlens_like": VERSION} \
        if contiguous else None
    return ProbeCheck(history, sample, record, seconds)


def _default_device(model):
    """The model's device; under torchrun on a machine with GPUs, the rank's ``LOCAL_RANK`` GPU."""
    launch = detect_launch()
    if launch is not None and torch.cuda.is_available():
        return torch.device("cuda", launch.local_rank)
    return _model_device(model)


@contextlib.contextmanager
def _model_moved_to(model, device):
    """The model on ``device`` for the extraction, moved back afterwards (also on error)."""
    original = _model_device(model)
    if not isinstance(model, torch.nn.Module) or original == device:
        yield
        return
    model.to(device)
    try:
        yield
    finally:
        model.to(original)


def _model_device(model):
    for tensor in (model.parameters() if isinstance(model, torch.nn.Module) else ()):
        return tensor.device
    return torch.device("cpu")


def _identity(model, origin, stimuli, stimulus_set, requests, specs, format):
    transform = getattr(getattr(stimulus_set.dataset, "dataset", None), "transform", None) \
        or getattr(stimulus_set.dataset, "transform", None)
    stimulus_text = "\n".join(f"{i},{label}" for i, label in
                              zip(stimulus_set.ids, stimulus_set.labels))
    return {
        "model": origin.get("model", type(model).__name__),
        "source": origin.get("source"),
        "weights": origin.get("weights"),
        "model_checksum": _model_checksum(model),
        "transform": describe_transform(transform),
        "stimuli": type(stimuli).__name__,
        "stimuli_checksum": zlib.crc32(stimulus_text.encode()),
        "layers": [layer_key(r) for r in requests],
        "reductions": {k: reductions.reduction_name(v) for k, v in specs.items()},
        "format": format,
    }


def _model_checksum(model):
    if not isinstance(model, torch.nn.Module):
        return None
    crc = 0
    for name, tensor in model.state_dict().items():
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
                         .tobytes(), crc)
    return crc


def _finished_output(output_dir, identity, n_stimuli, verify):
    """The features of a finished output with these arguments; None when there is work to do.

    With ``verify``, damaged batches (rows whose bytes no longer match their
    CRC) are dropped from the manifest, so the run extracts them again.
    """
    import os
    import warnings

    from .manifest import FILENAME

    if not os.path.exists(os.path.join(output_dir, FILENAME)):
        return None
    manifest = Manifest.load(output_dir)
    manifest.check_identity(identity, n_stimuli)
    if not manifest.complete:
        return None
    features = features_from_manifest(manifest)
    if not verify:
        return features
    damage = damaged_rows(manifest, features)
    if not damage:
        return features
    del features
    warnings.warn(f"the features in {output_dir!r} were changed after they were written ("
                  + "; ".join(f"layer {key!r}: rows " + ", ".join(f"{a}-{b - 1}" for a, b in rows)
                              for key, rows in damage.items())
                  + "); those rows are extracted again", RuntimeWarning, stacklevel=4)
    for key, rows in damage.items():
        manifest.progress[key] = [entry for entry in manifest.progress[key]
                                  if (entry[0], entry[1]) not in rows]
    manifest.complete = False
    manifest.save()
    return None


def _open_output(output_dir, format, identity, plans, layouts, stimulus_set, model, verify):
    import os
    import platform

    if output_dir is None:
        writer = MemoryWriter(None, layouts, len(stimulus_set))
        writer.create()
        return None, writer
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("torchlens_like")
    except PackageNotFoundError:
        package_version = None
    os.makedirs(output_dir, exist_ok=True)
    writer = get_writer(format)(output_dir, layouts, len(stimulus_set))
    layers = {p.key: {"label": p.label, "position": p.position, "func_name": p.func_name,
                      "stimulus_axis": p.stimulus_axis, "layer_shape": list(p.shape),
                      "layer_dtype": p.dtype, "shape": list(layouts[p.key][0]),
                      "dtype": layouts[p.key][1]} for p in plans}
    if os.path.exists(os.path.join(output_dir, "manifest.json")):
        manifest = Manifest.load(output_dir)
        manifest.check_identity(identity, len(stimulus_set))
        writer.open()
        if verify:
            for key in manifest.layers:
                manifest.verify(key, lambda a, b, key=key: writer.read_slice(key, a, b))
        return manifest, writer
    write_stimuli_table(output_dir, stimulus_set.ids, stimulus_set.labels)
    writer.create()
    versions = {"torchlens_like": package_version, "torch": torch.__version__,
                "numpy": np.__version__, "python": platform.python_version()}
    manifest = Manifest(output_dir, identity, layers, len(stimulus_set), versions)
    manifest.save()
    return manifest, writer


def _dry_run_report(plans, layouts, row_bytes, groups, n_stimuli):
    import pandas as pd

    group_of = {key: i + 1 for i, group in enumerate(groups) for key in group}
    table = pd.DataFrame([{
        "layer": p.key, "label": p.label, "shape": (n_stimuli,) + layouts[p.key][0],
        "dtype": layouts[p.key][1], "bytes_per_stimulus": row_bytes[p.key],
        "total_bytes": row_bytes[p.key] * n_stimuli, "group": group_of[p.key]} for p in plans])
    print(f"extract_features dry run: {n_stimuli} stimuli, {len(plans)} layers")
    print(table.assign(
        bytes_per_stimulus=table.bytes_per_stimulus.map(format_bytes),
        total_bytes=table.total_bytes.map(format_bytes)).to_string(index=False))
    print(f"Total for the whole set: {format_bytes(int(table.total_bytes.sum()))}")
    for i, group in enumerate(groups):
        size = sum(row_bytes[k] for k in group) * n_stimuli
        print(f"Group {i + 1}: {len(group)} layer(s), {format_bytes(size)}: "
              f"{', '.join(group)}")
    return table
