"""Interventions: change the value at any op or module call of a forward pass, and see what changed.

Sites (:mod:`.sites`) name where an edit acts, as ``history[...]`` names
layers or with ``tll.select(func=..., within=...)``; edits (:mod:`.edits`,
public as ``tll.edits``) are data with a readable repr, saved to JSON plus
safetensors. Two engines apply them and return a new ``ModelHistory``:

* the replay engine (:mod:`.replay`), ``history.intervene(edits)``: the
  validator's per-op replay run forwards from the edited sites over saved
  values; only descendants of the sites are recomputed;
* the re-run engine, ``tll.intervene(model, input_args, edits)``: the
  capture backend with the edits applied as the ops run.

Both fill ``history.interventions`` (:mod:`.report`): per site, how often it
fired, the size of the value before, the change at the site and at the
outputs. A site that never fired raises, an edit that changed nothing warns,
an edit of the wrong shape, dtype or device raises naming the site.
:func:`~.sweep.patching_sweep` patches each of many sites in turn.

This is a reader stage: it reads the graph and the validator's replay, and
registers ``history.intervene`` in the reader registry. The engines are
picked by ``history.backend`` from :data:`REPLAY_ENGINES`; TensorFlow
histories raise ``NotImplementedError`` saying what is supported.
"""

from ..graph.readers import register_reader
from . import edits
from .edits import EDITS, Edit
from .replay import ReplayRefused, replay_intervene
from .report import EditChangedNothingWarning, EditNeverFiredError
from .rerun import OpsChangedError, OpsChangedWarning, intervene
from .sites import Selector, Site, resolve_site, select
from .sweep import patching_sweep

REPLAY_ENGINES = {"torch": replay_intervene}
"""``{capture backend name: replay engine(history, edits) -> ModelHistory}``."""

SUPPORTED = ("Interventions run on torch models: history.intervene(edits) on a history logged "
             "from a torch model, tll.intervene(model, input_args, edits) with a torch model.")


def intervene_history(history, edits):
    """``history.intervene(edits)``: the replay engine of the backend that logged ``history``.

    Raises
    ------
    NotImplementedError
        For a backend without one (TensorFlow), saying what is supported.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.tensor([-1.0, 2.0]))
    >>> intervene_history(history, {"relu_1": tll.edits.scale(2)})["output_1"].tensor_contents
    tensor([0., 4.])
    """
    engine = REPLAY_ENGINES.get(history.backend)
    if engine is None:
        raise NotImplementedError(
            f"Interventions on histories logged by the {history.backend} backend are not "
            f"supported. {SUPPORTED} Logging, validation, rendering and extraction work for "
            f"{history.backend} models as before.")
    return engine(history, edits)


register_reader("intervene", intervene_history)

__all__ = ["EDITS", "Edit", "EditChangedNothingWarning", "EditNeverFiredError",
           "OpsChangedError", "OpsChangedWarning", "REPLAY_ENGINES", "ReplayRefused", "Selector",
           "Site", "edits", "intervene", "intervene_history", "patching_sweep", "resolve_site",
           "select"]
