"""The replayer: re-run each layer's recorded call on its parents' saved values.

An interpreter over the logged graph, in the manner of
``torch.fx.Interpreter``, for histories logged by the torch capture backend.
See :mod:`torchlens_like.validate` for what is checked and why.
"""

from __future__ import annotations

import torch

from ..capture.inplace import call_traits
from ..graph.layer import ArgSlot
from ..model_state import refuse_inside_logged_pass, restore_rng, snapshot_rng
from ..nested import find_tensors, map_nested, pick
from .compare import is_continuous, matches, unchanged
from .rules import insensitive

UNDEFINED_VALUES = frozenset({"empty", "empty_like", "new_empty", "empty_strided",
                              "new_empty_strided"})
"""Calls whose output values are uninitialised memory: only shape and dtype are compared."""

PERTURBATION_SEED = 73_912_845
"""Seed of the private generator drawing the random parent values (not a common seed, so
the draws do not coincide with inputs a user drew after ``torch.manual_seed(0)``)."""


class ValidationError(Exception):
    """One layer failed validation; the message names the layer and what differed."""


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
    refuse_inside_logged_pass("Validation")
    missing = [layer.layer_label for layer in history.layers if not layer.has_saved_activation]
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


def check_outputs(history, expected):
    """Check a history's output layers against a plain forward's output tensors.

    Parameters
    ----------
    history : ModelHistory
    expected : dict
        ``{path in the model's return value: tensor}``, as
        :func:`~torchlens_like.nested.find_tensors` lists a plain forward's output.

    Raises
    ------
    ValidationError
        When the outputs sit elsewhere or differ.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.nested import find_tensors
    >>> model, x = torch.nn.Linear(3, 2), torch.rand(1, 3)
    >>> check_outputs(tll.log_forward_pass(model, x), dict(find_tensors(model(x))))
    """
    logged = {layer.source: layer for layer in history.layers if layer.kind == "output"}
    if logged.keys() != expected.keys():
        raise ValidationError(
            f"the logged outputs sit at {sorted(map(str, logged))}, a plain forward returns "
            f"tensors at {sorted(map(str, expected))}")
    for path, layer in logged.items():
        same, difference = matches(layer.tensor_contents, expected[path].detach())
        if not same:
            raise ValidationError(
                f"output {layer.layer_label} differs from the plain forward's output at {path} "
                f"(largest difference {difference})")


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
        same, difference = matches(node.tensor_contents, parent.tensor_contents)
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
            same, difference = matches(replayed, node.tensor_contents)
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
            if not unchanged(perturbed, node.tensor_contents) or (
                    node.output_path is not None and self._other_output_changed(parent)):
                self.shown_to_matter.add(id(parent))
            elif insensitive(node, parent) is None:
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
            not unchanged(p, r) for (_, r), (_, p) in zip(replayed, perturbed))

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
    return map_nested(value, lambda slot, _: resolve(slot), _is_slot)


def _is_slot(value):
    return isinstance(value, ArgSlot)


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


def _perturbable(tensor):
    return is_continuous(tensor.dtype) and tensor.numel() > 0
