"""Activation patching over many sites: ``tll.patching_sweep``.

The clean and the corrupted input are each logged once (from the same
generator state and model state). For each site, the source run's value at
that site is patched into the target run (``direction``) and the metric is
read from the patched run's output. The patched run comes from the replay
engine where it may answer (only the site's descendants are recomputed),
else from the re-run engine; the ``engine`` column says which.

Replay reuses the source run: a descendant whose call and inputs are the
source run's (:mod:`.reuse` says when) takes the source run's saved value
instead of being recomputed. Patching a whole block of a chain of blocks
(resnet's stages, a transformer's layers) then recomputes nothing after
it; ``calls_run`` says how many calls each patched run computed.
"""

from __future__ import annotations

import math
import warnings

from ..capture import backend_for
from ..capture.gc_pause import cyclic_gc_paused
from ..graph import history_from_capture
from ..model_state import normalize_inputs, refuse_inside_logged_pass, snapshot_rng
from .edits import patch
from .replay import ReplayPlan, ReplayRefused
from .report import EditChangedNothingWarning, outside_package_stacklevel
from .reuse import SourceRun
from .rerun import intervene, restart
from .sites import resolve_site

DIRECTIONS = {"clean_to_corrupt": (0, 1), "corrupt_to_clean": (1, 0)}
"""``{direction: (index of the source run, index of the target run)}``, runs (clean, corrupt)."""

COLUMNS = ("site", "metric", "normalized", "change_at_site", "engine", "calls_run")


def patching_sweep(model, clean, corrupt, metric, sites, direction="clean_to_corrupt",
                   input_kwargs=None):
    """Patch each site in turn between a clean and a corrupted run; the metric per site.

    Parameters
    ----------
    model : torch.nn.Module or callable
    clean, corrupt : tensor, tuple or list
        The two inputs, each as ``input_args`` of ``tll.log_forward_pass``.
    metric : callable
        ``metric(output) -> float``, where ``output`` is the model's output
        tensor (its first one, in the order it returns them, when it returns
        several: the logits of a Hugging Face model), a copy the metric may
        write into.
    sites : list
        Sites as ``history[...]`` names layers, or ``tll.select(...)``; a
        module or layer that ran several times, named without ``:pass``, is
        patched in every pass at once.
    direction : {"clean_to_corrupt", "corrupt_to_clean"}
        Patch the clean run's values into the corrupted run (default), or
        the corrupted run's into the clean run.
    input_kwargs : dict, optional
        Keyword arguments given with both inputs.

    Returns
    -------
    pandas.DataFrame
        One row per site: ``metric``; ``normalized``, the metric scaled so
        the corrupted run is 0 and the clean run 1; ``change_at_site`` (L2
        norm of the patched value minus the target run's); ``engine``;
        ``calls_run``, the op calls the patched run computed (replay: the
        site's descendants not taken from the source run; re-run: every
        call of the forward).
        ``attrs`` holds ``clean_metric``, ``corrupt_metric`` and ``direction``.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> clean, corrupt = torch.ones(1, 4), -torch.ones(1, 4)
    >>> sweep = tll.patching_sweep(model, clean, corrupt, lambda out: float(out[0, 0]),
    ...                            sites=["0", "1", "2"])
    >>> sweep[["site", "normalized", "engine"]]
      site  normalized  engine
    0    0         1.0  replay
    1    1         1.0  replay
    2    2         1.0  replay
    """
    refuse_inside_logged_pass("tll.patching_sweep")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose one of: "
                         f"{', '.join(DIRECTIONS)}.")
    if not callable(metric):
        raise TypeError(f"metric must be a callable metric(output) -> float, got "
                        f"{type(metric).__name__}.")
    if isinstance(sites, (str, int)) or not sites:
        raise TypeError("sites must be a non-empty list of sites, e.g. sites=['layer1', "
                        "'layer2'].")
    backend = backend_for(model)
    if backend.name != "torch":
        raise NotImplementedError(f"tll.patching_sweep does not run {backend.name} models; "
                                  "interventions run on torch models.")
    runner = backend.prepare(model)
    inputs = [normalize_inputs(given, input_kwargs) for given in (clean, corrupt)]
    histories = _log_both(backend, runner, inputs)
    metrics = [_metric(metric, model_output(history)) for history in histories]
    source_index, target_index = DIRECTIONS[direction]
    source, target = histories[source_index], histories[target_index]
    for site in sites:
        resolve_site(target, site)
    reuse, cleared = SourceRun(target, source), set()
    rows = []
    for site in sites:
        value, change, engine, calls = _patched(model, inputs[target_index], target, site,
                                                patch(source), metric, reuse, cleared)
        rows.append({"site": site if isinstance(site, (str, int)) else repr(site),
                     "metric": value, "change_at_site": change, "engine": engine,
                     "calls_run": calls})
    import pandas as pd

    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "normalized"])
    span = metrics[0] - metrics[1]
    if span == 0:
        warnings.warn("The metric is the same on the clean and the corrupted run, so it cannot "
                      "be normalised (the column is NaN).", RuntimeWarning,
                      stacklevel=outside_package_stacklevel())
    table.insert(2, "normalized", (table["metric"] - metrics[1]) / span if span else math.nan)
    table.attrs.update(clean_metric=metrics[0], corrupt_metric=metrics[1], direction=direction)
    return table


def model_output(history):
    """The model's first output tensor in a history (the one ``metric`` reads).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model_output(tll.log_forward_pass(torch.nn.ReLU(), torch.tensor([-1.0])))
    tensor([0.])
    """
    return history[history.output_layers[0]].tensor_contents


def _log_both(backend, runner, inputs):
    rng = snapshot_rng()
    states = [backend.keep_state(runner, args, kwargs) for args, kwargs in inputs]
    histories = []
    try:
        with cyclic_gc_paused():
            for (args, kwargs), restore_state in zip(inputs, states):
                histories.append(history_from_capture(backend.capture(runner, args, kwargs,
                                                                      "all")))
                restart(rng, restore_state)
    finally:
        for restore_state in states:
            restart(rng, restore_state)
    return histories


def _patched(model, target_inputs, target, site, edit, metric, reuse, cleared):
    """``(metric, change at the site, engine, calls run)`` of the target run, ``site`` patched."""
    try:
        replay = ReplayPlan(target, {site: edit}, cleared)
    except ReplayRefused:
        args, kwargs = target_inputs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EditChangedNothingWarning)
            edited = intervene(model, args, {site: edit}, input_kwargs=kwargs)
        calls = {layer.call_index for layer in target.layers if layer.kind == "op"}
        return (_metric(metric, model_output(edited)),
                float(edited.interventions["change_at_site"].iloc[0]), "re-run", len(calls))
    values, tallies = replay.run(outputs_only=True, source=reuse)
    output = target[target.output_layers[0]]
    return (_metric(metric, values.get(id(output), output.tensor_contents)),
            tallies[0].change_at_site, "replay", replay.recomputed)


def _metric(metric, output):
    """``float(metric(copy of output))``: a metric that writes into its argument changes nothing
    the sweep still reads (saved values of the two runs, reused by later rows)."""
    value = metric(output.clone())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric(output) must return a number, got {type(value).__name__} "
                        f"{value!r}.") from None
