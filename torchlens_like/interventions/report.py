"""What each edit did, never silent: checks on edited values, tallies, ``history.interventions``.

Every engine applies an edit through :func:`apply_edit` (the result must be
a tensor of the value's shape, dtype and device, or it raises naming the
site and both shapes), counts it in a :class:`Tally` per site, and ends with
:func:`finish_report`: a site that never fired raises, an edit that changed
nothing warns (:class:`EditChangedNothingWarning`), and the DataFrame that
becomes ``history.interventions`` is built, one row per site:

``site``
    the site as written; ``edit`` the edit's repr; ``kind`` ``"layer"`` or
    ``"module"``; ``layers`` the labels it edited;
``fired``
    how many times the edit ran (once per pass of a layer site, once per
    call of a module site);
``norm_before``
    the size of the value before the edit (L2 norm over every element it
    edited, every pass together);
``change_at_site``
    L2 norm of (value after - value before) at the site;
``change_at_outputs``
    L2 norm of (edited - clean) over the model's outputs, for the whole
    edited run (the same on every row when several sites are edited at once).
"""

from __future__ import annotations

import math
import os
import sys
import warnings

import torch

from .edits import as_edit
from .sites import resolve_site

COLUMNS = ("site", "edit", "kind", "layers", "fired", "norm_before", "change_at_site",
           "change_at_outputs", "engine")


class EditChangedNothingWarning(UserWarning):
    """An edit left the value at its site exactly as it was (a zero steering vector, ...)."""


class EditNeverFiredError(RuntimeError):
    """A site's edit never ran (an untaken branch, a pass that did not happen)."""


def plan(history, edits):
    """``[(Site, Edit)]``: every site of ``edits`` resolved against ``history``, edits checked.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.get_model_metadata(torch.nn.Sequential(torch.nn.ReLU()), torch.ones(2))
    >>> [(site.kind, edit) for site, edit in plan(history, {"0": tll.edits.zero()})]
    [('module', zero())]
    """
    if not isinstance(edits, dict):
        raise TypeError(f"edits must be a dict {{site: edit}}, e.g. {{'layer1': "
                        f"tll.edits.zero()}}; got {type(edits).__name__}.")
    if not edits:
        raise ValueError("edits is empty: give at least one {site: edit}.")
    return [(resolve_site(history, site), as_edit(edit, site)) for site, edit in edits.items()]


def apply_edit(edit, value, layer, site):
    """``edit(value, layer)``, checked: a tensor of ``value``'s shape, dtype and device.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.interventions.sites import Site
    >>> from torchlens_like.records import LayerEntry
    >>> layer = LayerEntry("op", "relu"); layer.layer_label = "relu_1_2"
    >>> site = Site("relu_1", "layer", (layer,))
    >>> apply_edit(tll.edits.replace(lambda a, l: a[:1]), torch.ones(2, 3), layer, site)
    ... # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: The edit replace(<lambda>) at site 'relu_1' (layer relu_1_2) returned shape (1, 3); the value there has shape (2, 3). ...
    """
    edited = edit(value, layer)
    where = f"The edit {edit!r} at site '{site.name}' (layer {layer.layer_label})"
    if not isinstance(edited, torch.Tensor):
        raise TypeError(f"{where} returned {type(edited).__name__}, not a tensor; an edit "
                        f"returns the new value, a tensor of shape {tuple(value.shape)}.")
    for what, got, expected in (("shape", tuple(edited.shape), tuple(value.shape)),
                                ("dtype", edited.dtype, value.dtype),
                                ("device", edited.device, value.device)):
        if got != expected:
            raise ValueError(f"{where} returned {what} {got}; the value there has {what} "
                             f"{expected}. An edit must keep the value's shape, dtype and device.")
    return edited


class Tally:
    """Running totals for one site: fired count, size before, change at the site."""

    def __init__(self, site, edit):
        self.site = site
        self.edit = edit
        self.fired = 0
        self.layers = []
        self._before = 0.0
        self._change = 0.0

    def add(self, layer, before, after):
        """Count one edited value (a layer of the site)."""
        self.layers.append(layer.layer_label)
        self._before += squared_norm(before)
        self._change += squared_norm(after, before)

    @property
    def norm_before(self):
        return math.sqrt(self._before)

    @property
    def change_at_site(self):
        return math.sqrt(self._change)


def squared_norm(value, minus=None):
    """Sum of squared magnitudes of ``value`` (or of ``value - minus``).

    One norm in the value's own precision (float32 or wider; integers and
    booleans in float64), so the report costs little next to the edit.

    Examples
    --------
    >>> import torch
    >>> squared_norm(torch.tensor([3, 4])), squared_norm(torch.ones(4), torch.zeros(4))
    (25.0, 4.0)
    """
    value = _wide(value.detach())
    if not value.numel():
        return 0.0
    if minus is None:
        return float(torch.linalg.vector_norm(value)) ** 2
    return float(torch.dist(value, _wide(minus.detach()).to(value.device))) ** 2


def _wide(tensor):
    if tensor.is_complex() or tensor.dtype in (torch.float32, torch.float64):
        return tensor
    return tensor.to(torch.float32 if tensor.is_floating_point() else torch.float64)


def change_at_outputs(clean, edited):
    """L2 norm of the outputs' change between two histories of the same graph."""
    total = 0.0
    for label in clean.output_layers:
        if label in edited and clean[label].has_saved_activation:
            total += squared_norm(edited[label].tensor_contents, clean[label].tensor_contents)
    return math.sqrt(total)


def finish_report(tallies, output_change, engine):
    """Raise for sites that never fired, warn for edits that changed nothing; the DataFrame.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.interventions.sites import Site
    >>> from torchlens_like.records import LayerEntry
    >>> layer = LayerEntry("op", "relu"); layer.layer_label = "relu_1_2"
    >>> tally = Tally(Site("relu_1", "layer", (layer,)), tll.edits.zero())
    >>> finish_report([tally], 0.0, "replay")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    EditNeverFiredError: The edit zero() at site 'relu_1' never fired ...
    """
    import pandas as pd

    for tally in tallies:
        if tally.fired == 0:
            raise EditNeverFiredError(
                f"The edit {tally.edit!r} at site '{tally.site.name}' never fired: the op or "
                "module call it names did not run in the edited pass (an untaken branch, a pass "
                "that did not happen). Check the site against the edited run's graph.")
    for tally in tallies:
        if tally.change_at_site == 0.0:
            warnings.warn(
                f"The edit {tally.edit!r} at site '{tally.site.name}' changed nothing: the value "
                f"after it equals the value before at {', '.join(tally.layers)}.",
                EditChangedNothingWarning, stacklevel=outside_package_stacklevel())
    rows = [{"site": tally.site.name, "edit": repr(tally.edit), "kind": tally.site.kind,
             "layers": list(tally.layers), "fired": tally.fired,
             "norm_before": tally.norm_before, "change_at_site": tally.change_at_site,
             "change_at_outputs": output_change, "engine": engine} for tally in tallies]
    return pd.DataFrame(rows, columns=list(COLUMNS))


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def outside_package_stacklevel():
    """The ``stacklevel`` that points a warning at the first caller outside this package."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        level += 1
        frame = frame.f_back
    return level
