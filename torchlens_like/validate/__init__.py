"""Validation of saved activations: replay every layer on its parents' saved values.

Reads a :class:`~torchlens_like.graph.ModelHistory` (a reader stage); produces
a verdict. Never imports :mod:`torchlens_like.api`, rendering or other
readers; the entry point that runs a model and then validates,
``validate_saved_activations``, lives with the other entry points in
:mod:`torchlens_like.api`.

An interpreter over the logged graph, in the manner of
``torch.fx.Interpreter`` (:mod:`.replay`): for each op node it calls the
recorded function with every parent tensor replaced by that parent's saved
value (parameters and constant tensors as recorded: the model's own parameter
tensors, so validate a history before changing the model's weights) and
compares the result with the node's saved value. The walk goes backwards from
the outputs, as the TorchLens paper describes ("Validating the accuracy of
saved activations"): once a layer's saved value is reproduced from its
parents, each parent is replaced by random values of the same shape and
dtype, and the output must change, which shows the reproduction actually
rests on that parent's value. A parent shown to matter through one child is
not tested again through its other children.

Each capture backend has its own replayer, picked by ``history.backend``
from :data:`~.backends.REPLAYERS`: :mod:`.replay` for torch, :mod:`.tf_replay`
for TensorFlow (which replays each op's ``NodeDef``).

Modules: :mod:`.backends` (the replayer registry and the entry points
``validate_history`` / ``check_outputs``), :mod:`.replay` (the torch walk), :mod:`.rerun` (re-running one recorded
call as it ran), :mod:`.rules` (the validator's rules: layers not re-run,
when an unchanged output is legitimate), :mod:`.compare` (tolerances),
:mod:`.errors` (the error and its kinds).

Design decisions
----------------
* Tolerances depend on the dtype: exact for integers and booleans, loose for
  float16 / bfloat16, tight for float32 / float64 (:data:`TOLERANCES`); the
  absolute part scales with the largest magnitude in the expected tensor.
* A perturbed parent that leaves the output unchanged is accepted only where
  a rule of :data:`~.rules.INSENSITIVITY_RULES` (a name-to-function registry)
  says the output cannot depend on it: the output is discrete, the parent
  lends only shape or dtype, it holds running statistics, or the call's own
  derivative with respect to it is zero at the saved values. Rules
  are general, never lists of models. Integer and boolean parents (indices,
  masks) are not perturbed: random values would be out of range.
* Calls that cannot be re-run from saved values (``torch.autograd.grad``
  inside a forward) are listed in :data:`~.rules.NOT_REPLAYABLE` with the
  reason; their saved outputs are checked through their children, and the
  verdict names them.
* Values of ``empty``-like calls are undefined; only their shape and dtype
  are compared.
* Each call replays with the generator state it consumed (the capture keeps
  it for every call that drew, fused or composite calls included) and under
  its autocast state; the caller's generator states are restored afterwards.
* Deterministic: perturbations draw from a private generator with a fixed
  seed, so the same history validates the same way every time.
* A failure names the layer, its function, its module, the parent and the
  largest difference, and says which of :data:`~.errors.FAILURE_KINDS`
  happened, so a capture error can be told from a validator limit.
* Saved values are never written: a parent the call writes into (in-place
  methods, ``out=``, buffers, which ``batch_norm`` updates in training) is
  cloned first, and a call that still changes an input's version counter is
  reported.
* Replays run under ``torch.no_grad()`` and outside any logged pass.
"""

from ..graph.readers import register_reader
from .compare import TOLERANCES, matches
from .errors import FAILURE_KINDS, ValidationError
from .backends import REPLAYERS, check_outputs, not_replayed, replayer, validate_history
from .replay import PERTURBATION_SEED, Replayer
from .rules import INSENSITIVITY_RULES, NOT_REPLAYABLE, insensitive, not_replayable_layers


def validate_verdict(history, verbose=False):
    """``True`` when :func:`validate_history` passes, ``False`` when it raises ValidationError.

    With ``verbose=True`` the verdict is printed: the failing layer, its
    function and the largest difference, or the number of layers checked.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> validate_verdict(history, verbose=True)
    Validation passed: 3 layers of Linear.
    True
    """
    return report_verdict(lambda: validate_history(history), history, verbose)


def report_verdict(check, history, verbose):
    """Run ``check()``; return whether it passed, printing the verdict when ``verbose``.

    Layers that were not re-run (:data:`~.rules.NOT_REPLAYABLE`) are listed
    in the verdict with the reason.

    ``history`` names the model in the success message; it may be a callable
    returning the history (for a check that logs the history itself).
    """
    try:
        check()
    except ValidationError as exc:
        if verbose:
            print(f"Validation failed: {exc}")
        return False
    if verbose:
        history = history() if callable(history) else history
        print(f"Validation passed: {len(history.layers)} layers of {history.model_name}.")
        for label, reason in not_replayed(history).items():
            print(f"  {label} not re-run ({reason}); its saved value was checked through "
                  "its children.")
    return True


register_reader("validate", validate_verdict)

__all__ = ["FAILURE_KINDS", "INSENSITIVITY_RULES", "NOT_REPLAYABLE", "PERTURBATION_SEED",
           "REPLAYERS", "Replayer", "TOLERANCES", "ValidationError", "check_outputs",
           "insensitive", "matches", "not_replayable_layers", "not_replayed", "replayer",
           "report_verdict", "validate_history", "validate_verdict"]
