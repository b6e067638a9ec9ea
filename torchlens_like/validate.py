"""Validation of saved activations: replay every layer on its parents' saved values.

An interpreter over the logged graph, in the manner of
``torch.fx.Interpreter``: for each op node it calls the recorded function
with every parent tensor replaced by that parent's saved value (parameters
and constant tensors as recorded: the model's own parameter tensors, so
validate a history before changing the model's weights) and compares the
result with the node's saved value. The walk goes backwards from the outputs, as the TorchLens paper
describes ("Validating the accuracy of saved activations"): once a layer's
saved value is reproduced from its parents, each parent is replaced by random
values of the same shape and dtype, and the output must change, which shows
the reproduction actually rests on that parent's value. A parent shown to
matter through one child is not tested again through its other children.

Design decisions
----------------
* Tolerances depend on the dtype: exact for integers and booleans, loose for
  float16 / bfloat16, tight for float32 / float64 (:data:`TOLERANCES`); the
  absolute part scales with the largest magnitude in the expected tensor.
* A perturbed parent that leaves the output unchanged is accepted only where
  the output legitimately cannot change (:func:`_insensitive`): the output is
  constant (multiplication by zero, a saturated clamp, ``fill_``), discrete
  (comparisons, argmax, integer ops), a function of shape or dtype only
  (``zeros_like``, ``expand_as`` ...), a ``where`` whose condition selects
  one side everywhere, attention over a single key (the softmax is 1 whatever
  the query and key), running statistics of a training-mode normalisation,
  or a write (in place or scatter) covering the whole target.
  Integer and boolean parents (indices, masks) are not perturbed: random
  values would be out of range.
* Values of ``empty``-like calls are undefined; only their shape and dtype
  are compared.
* Random calls replay with the generator state recorded just before the
  original call; the caller's generator states are restored afterwards, and
  perturbations draw from a private generator.
* Saved values are never written: a parent the call writes into (in-place
  methods, ``out=``, buffers, which ``batch_norm`` updates in training) is
  cloned first, and a call that still changes an input's version counter is
  reported.
* Replays run under ``torch.no_grad()`` and outside any logged pass.
"""

from __future__ import annotations

import torch

from .capture.arguments import find_tensors, pick
from .capture.inplace import call_traits
from .capture.rng import restore_rng, seed_all, snapshot_rng
from .capture.session import is_capturing
from .graph.layer import ArgSlot

TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.complex128: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.complex64: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.complex32: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}
"""``{dtype: (rtol, atol)}``; other floating dtypes (float8) use ``(0.13, 0.13)``."""

SHAPE_ONLY = frozenset({
    "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_full", "new_empty", "new_empty_strided",
    "new_tensor", "expand_as", "view_as", "reshape_as", "type_as",
})
"""Calls whose output depends on a tensor argument's shape, dtype or device only."""

IGNORABLE_ARGUMENTS = {
    **{name: (1, 2, "running_mean", "running_var") for name in ("batch_norm", "instance_norm")},
    **{name: (0, "input", "self") for name in (
        "scatter", "scatter_add", "scatter_reduce", "index_put", "index_copy", "index_fill",
        "masked_scatter", "slice_scatter", "select_scatter", "diagonal_scatter",
        "as_strided_scatter")},
}
"""``{function: argument positions}`` whose values the output may not depend on at all:
running statistics in training-mode normalisation, and the target of a scatter that
overwrites every element."""

UNDEFINED_VALUES = frozenset({"empty", "empty_like", "new_empty", "empty_strided",
                              "new_empty_strided"})
"""Calls whose output values are uninitialised memory."""


PERTURBATION_SEED = 73_912_845
"""Seed of the private generator drawing the random parent values (not a common seed, so
the draws do not coincide with inputs a user drew after ``torch.manual_seed(0)``)."""


class ValidationError(Exception):
    """One layer failed validation; the message names the layer and what differed."""


def validate_saved_activations(model, input_args, input_kwargs=None, random_seed=None,
                               verbose=False):
    """Log a pass with every activation saved, and check every saved value.

    The model is run once plainly (the ground-truth outputs) and once logged;
    the logged outputs must equal the plain ones, and then
    :func:`validate_history` replays every layer (before the buffers are put
    back, since saved activations may share a buffer's memory). The model's
    buffers and all random generators are left as they were before the call.

    Parameters
    ----------
    model : torch.nn.Module or callable
    input_args : tensor, tuple or list
        As for :func:`~torchlens_like.log_forward_pass`.
    input_kwargs : dict, optional
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
    from .api import _copy_buffers, _normalize_inputs, _restore_buffers, log_forward_pass
    from .capture.modules import prepare_model

    _refuse_inside_capture()
    runner = prepare_model(model)
    args, kwargs = _normalize_inputs(input_args, input_kwargs)
    caller_rng = snapshot_rng()
    buffers = _copy_buffers(runner)
    try:
        if random_seed is not None:
            seed_all(random_seed)
        expected = dict(find_tensors(runner(*args, **kwargs)))
        restore_rng(caller_rng)
        _restore_buffers(runner, buffers)
        history = log_forward_pass(model, args, kwargs, random_seed=random_seed)
        _check_outputs(history, expected)
        validate_history(history)
    except ValidationError as exc:
        if verbose:
            print(f"Validation failed: {exc}")
        return False
    finally:
        restore_rng(caller_rng)
        _restore_buffers(runner, buffers)
    if verbose:
        print(f"Validation passed: {len(history.layers)} layers of {history.model_name}.")
    return True


def _check_outputs(history, expected):
    logged = {layer.source: layer for layer in history.layers if layer.kind == "output"}
    if logged.keys() != expected.keys():
        raise ValidationError(
            f"the logged outputs sit at {sorted(map(str, logged))}, a plain forward returns "
            f"tensors at {sorted(map(str, expected))}")
    for path, layer in logged.items():
        same, difference = _matches(layer.tensor_contents, expected[path].detach())
        if not same:
            raise ValidationError(
                f"output {layer.layer_label} differs from the plain forward's output at {path} "
                f"(largest difference {difference})")


def validate_history(history):
    """Replay every layer of a fully saved history; raise on the first failure.

    Parameters
    ----------
    history : ModelHistory
        Logged with ``layers_to_save="all"``.

    Raises
    ------
    ValidationError
        Naming the layer, its function and the largest difference.
    ValueError
        When some activations were not saved.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> validate_history(history)
    >>> history["linear_1"].tensor_contents.add_(1.0)  # doctest: +ELLIPSIS
    tensor(...)
    >>> validate_history(history)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValidationError: output_1_3 ...
    """
    _refuse_inside_capture()
    missing = [layer.layer_label for layer in history.layers if layer.tensor_contents is None]
    if missing:
        raise ValueError(
            f"Validation needs every activation saved; {len(missing)} are not (e.g. "
            f"{', '.join(missing[:5])}). Log with layers_to_save='all', or call "
            "tll.validate_saved_activations(model, input_args).")
    caller_rng = snapshot_rng()
    try:
        with torch.no_grad():
            Replayer().run(history.layers)
    finally:
        restore_rng(caller_rng)


def _refuse_inside_capture():
    if is_capturing():
        raise RuntimeError("Validation cannot run inside a logged forward pass; call it after "
                           "log_forward_pass has returned.")


class Replayer:
    """Walks the graph backwards and re-runs each op on saved parent values.

    ``run(layers)`` checks every layer in reverse execution order;
    :meth:`call` runs one node with some parents replaced, like
    ``torch.fx.Interpreter.run_node``.
    """

    def __init__(self, seed=PERTURBATION_SEED):
        self.generator = torch.Generator().manual_seed(seed)
        self._pool = torch.empty(0)
        self.shown_to_matter = set()
        self._cache_key = None
        self._cache = {}

    def run(self, layers):
        for node in reversed(layers):
            if node.kind == "output":
                self.check_output(node)
            elif node.kind == "op":
                self.check_op(node)

    def check_output(self, node):
        parent = node.parent_nodes[0] if node.parent_nodes else None
        if parent is None:
            return
        same, difference = _matches(node.tensor_contents, parent.tensor_contents)
        if not same:
            raise ValidationError(
                f"{node.layer_label}: the saved output differs from the value of "
                f"{parent.layer_label} that produced it (largest difference {difference})")
        self.shown_to_matter.add(id(parent))

    def check_op(self, node):
        replayed = self.call(node, None)
        if node.func_name in UNDEFINED_VALUES:
            same = (isinstance(replayed, torch.Tensor)
                    and replayed.shape == node.tensor_contents.shape
                    and replayed.dtype == node.tensor_contents.dtype)
            difference = "shape or dtype"
        else:
            same, difference = _matches(replayed, node.tensor_contents)
        if not same:
            raise ValidationError(
                f"{node.layer_label} ({node.func_name}): re-running the function on the saved "
                f"values of its parents {node.parent_layers} does not reproduce its saved "
                f"value (largest difference {difference}); the saved value of this layer or "
                "of a parent is wrong")
        for parent in node.parent_nodes:
            if id(parent) in self.shown_to_matter or not _perturbable(parent.tensor_contents):
                continue
            try:
                perturbed = self.call(node, parent)
            except Exception:
                self.shown_to_matter.add(id(parent))
                continue
            if not _unchanged(perturbed, node.tensor_contents) or (
                    node.output_path is not None and self._other_output_changed(parent)):
                self.shown_to_matter.add(id(parent))
            elif not _insensitive(node, parent):
                raise ValidationError(
                    f"{node.layer_label} ({node.func_name}): its output does not change when "
                    f"its parent {parent.layer_label} is replaced by random values, so that "
                    "parent's saved value is not what the function used")

    def _noise(self, like):
        """Random normal values shaped, typed and laid out like ``like``.

        Slices of one pool drawn once (and redrawn larger when needed):
        drawing fresh values for every parent costs more than the replays.
        """
        noise = torch.empty_like(like)
        if like.dtype.is_complex:
            return noise.normal_(generator=self.generator)
        if self._pool.numel() < like.numel():
            self._pool = torch.randn(max(like.numel(), 2 * self._pool.numel()),
                                     generator=self.generator)
        return noise.copy_(self._pool[:like.numel()].view(like.shape))

    def _other_output_changed(self, parent):
        """For a call with several outputs: did perturbing ``parent`` change any of them?"""
        replayed = find_tensors(self._cache[id(None)])
        perturbed = find_tensors(self._cache[id(parent)])
        return len(replayed) != len(perturbed) or any(
            not _unchanged(p, r) for (_, r), (_, p) in zip(replayed, perturbed))

    def call(self, node, perturbed_parent):
        """Run ``node``'s function on saved parent values, one parent optionally randomised.

        Returns the node's output (its element of a multi-output result).
        """
        key = (id(node.args), id(node.kwargs), id(node.func))
        if key != self._cache_key:
            self._cache_key, self._cache = key, {}
        slot = id(perturbed_parent)
        if slot not in self._cache:
            self._cache[slot] = self._execute(node, perturbed_parent)
        result = self._cache[slot]
        if isinstance(result, BaseException):
            raise result
        return pick(result, node.output_path) if node.output_path is not None else result

    def _execute(self, node, perturbed_parent):
        noise = None if perturbed_parent is None else self._noise(perturbed_parent.tensor_contents)
        buffer_copies = {}

        def value(slot):
            if slot.kind != "layer":
                return slot.ref
            if slot.ref is perturbed_parent:
                return noise
            if slot.ref.kind == "buffer":
                if id(slot.ref) not in buffer_copies:
                    buffer_copies[id(slot.ref)] = slot.ref.tensor_contents.clone()
                return buffer_copies[id(slot.ref)]
            return slot.ref.tensor_contents

        args, kwargs = _fill(node.args, value), _fill(node.kwargs, value)
        writes = call_traits(node.func)[1]
        written = tuple(writes(args, kwargs)) if writes is not None else ()
        if kwargs.get("out") is not None:
            written += tuple(t for _, t in find_tensors(kwargs["out"]))
        if written:
            copies = {id(t): t.clone() for t in written}
            args, kwargs = (_fill(node.args, lambda s: _swap(value(s), copies)),
                            _fill(node.kwargs, lambda s: _swap(value(s), copies)))
            written = tuple(copies.values())
        copied = {id(t) for t in written}
        inputs = [t for _, t in find_tensors((args, kwargs)) if id(t) not in copied]
        versions = [_version(t) for t in inputs]
        try:
            if node.rng_state is not None:
                result = _with_rng(node.rng_state, node.func, args, kwargs)
            else:
                result = node.func(*args, **kwargs)
        except Exception as exc:
            if perturbed_parent is not None:
                return exc
            raise ValidationError(
                f"{node.layer_label} ({node.func_name}): re-running the function on the saved "
                f"values of its parents raised {type(exc).__name__}: {exc}") from exc
        if [_version(t) for t in inputs] != versions:
            raise ValidationError(
                f"{node.layer_label} ({node.func_name}) wrote into one of its inputs when "
                "re-run, so its in-place behaviour was not recognised when logging")
        if result is None and written:
            return written[0]
        return result


def _fill(value, resolve):
    if isinstance(value, ArgSlot):
        return resolve(value)
    if isinstance(value, (tuple, list)):
        items = [_fill(v, resolve) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _fill(v, resolve) for k, v in value.items()}
    return value


def _swap(tensor, copies):
    return copies.get(id(tensor), tensor) if isinstance(tensor, torch.Tensor) else tensor


def _version(tensor):
    try:
        return tensor._version
    except RuntimeError:
        return None


def _with_rng(state, func, args, kwargs):
    before = torch.get_rng_state()
    cuda_before = torch.cuda.get_rng_state() if "cuda" in state else None
    try:
        torch.set_rng_state(state["torch"])
        if cuda_before is not None:
            torch.cuda.set_rng_state(state["cuda"])
        return func(*args, **kwargs)
    finally:
        torch.set_rng_state(before)
        if cuda_before is not None:
            torch.cuda.set_rng_state(cuda_before)


def _is_continuous(dtype):
    return dtype.is_floating_point or dtype.is_complex


def _perturbable(tensor):
    return _is_continuous(tensor.dtype) and tensor.numel() > 0


def _unchanged(actual, expected):
    """Bit for bit the same (any change, however small, shows a dependence)."""
    return (isinstance(actual, torch.Tensor) and actual.shape == expected.shape
            and actual.dtype == expected.dtype and torch.equal(actual.to(expected.device),
                                                               expected))


def _matches(actual, expected):
    """``(same, largest difference)`` under the dtype's tolerance."""
    if not isinstance(actual, torch.Tensor):
        return False, f"a {type(actual).__name__} instead of a tensor"
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return False, (f"shape/dtype {tuple(actual.shape)} {actual.dtype} instead of "
                       f"{tuple(expected.shape)} {expected.dtype}")
    if actual.device != expected.device:
        actual = actual.to(expected.device)
    if torch.equal(actual, expected):
        return True, 0.0
    if not _is_continuous(expected.dtype):
        return False, _largest_difference(actual, expected)
    rtol, atol = TOLERANCES.get(expected.dtype, (0.13, 0.13))
    wide = torch.complex128 if expected.dtype.is_complex else torch.float64
    a, b = actual.to(wide), expected.to(wide)
    finite = b[torch.isfinite(b)].abs()
    scale = max(1.0, float(finite.max())) if finite.numel() else 1.0
    same = bool(torch.isclose(a, b, rtol=rtol, atol=atol * scale, equal_nan=True).all())
    return same, _largest_difference(actual, expected)


def _largest_difference(actual, expected):
    if expected.numel() == 0:
        return 0.0
    wide = torch.complex128 if expected.dtype.is_complex else torch.float64
    diff = (actual.to(wide) - expected.to(wide)).abs()
    both_nan = torch.isnan(actual.to(wide).abs()) & torch.isnan(expected.to(wide).abs())
    diff = torch.where(both_nan, torch.zeros_like(diff), diff)
    return float(torch.nan_to_num(diff, nan=float("inf")).max())


def _insensitive(node, parent):
    """Whether ``node``'s output may legitimately ignore ``parent``'s values."""
    saved = node.tensor_contents
    if not _is_continuous(saved.dtype) or saved.numel() == 0 or node.func_name in SHAPE_ONLY:
        return True
    if node.arg_positions.get(id(parent)) in IGNORABLE_ARGUMENTS.get(node.func_name, ()):
        return True
    flat = saved.reshape(-1)
    if flat.numel() > 1 and bool((flat == flat[0]).all()):
        return True
    if node.func_name == "scaled_dot_product_attention" and len(node.args) > 1 and \
            node.arg_positions.get(id(parent)) in (0, 1, "query", "key") and \
            isinstance(node.args[1], ArgSlot) and _slot_value(node.args[1]).shape[-2] == 1:
        return True
    if node.func_name == "where" and node.args and isinstance(node.args[0], ArgSlot):
        condition = _slot_value(node.args[0])
        if condition.dtype == torch.bool and (bool(condition.all()) or not condition.any()):
            return True
    writes = call_traits(node.func)[1]
    target = node.args[0] if node.args else None
    return writes is not None and isinstance(target, ArgSlot) and target.ref is parent


def _slot_value(slot):
    return slot.ref.tensor_contents if slot.kind == "layer" else slot.ref
