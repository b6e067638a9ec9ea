"""The replayer: re-run each layer's recorded call on its parents' saved values.

An interpreter over the logged graph, in the manner of
``torch.fx.Interpreter``, for histories logged by the torch capture backend.
See :mod:`torchlens_like.validate` for what is checked and why.
"""

from __future__ import annotations

import torch

from ..model_state import restore_rng, snapshot_rng
from ..nested import find_tensors, pick
from .compare import is_continuous, matches, unchanged
from .errors import ValidationError, parent_insensitive, replay_differs, where
from .rerun import run_call
from .rules import (INSENSITIVITY_RULES, NOT_REPLAYABLE, UNDEFINED_VALUES, insensitive,
                    not_replayable_layers)

PERTURBATION_SEED = 73_912_845
"""Seed of the private generator drawing the random parent values: fixed, so the same
history validates the same way every time whatever the global generators hold (and not a
common seed, so the draws do not coincide with inputs drawn after ``torch.manual_seed(0)``)."""


def replay_layers(layers):
    """Replay every layer of a fully saved torch history; raise on the first failure.

    Returns ``{label: reason}`` of the layers not re-run (see
    :data:`~.rules.NOT_REPLAYABLE`); their saved outputs were checked
    through their children. Called by :func:`~.backends.validate_history`.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> replay_layers(tll.log_forward_pass(torch.nn.Linear(3, 2), torch.rand(1, 3)).layers)
    {}
    """
    caller_rng = snapshot_rng()
    try:
        with torch.no_grad():
            Replayer().run(layers)
    finally:
        restore_rng(caller_rng)
    return not_replayable_layers(layers)


not_replayed = not_replayable_layers


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
                f"{node.layer_label}: output differs: the saved output differs from the value of "
                f"{parent.layer_label} that produced it (largest difference {difference})",
                node, "output differs")
        self.shown_to_matter.add(id(parent))

    def check_op(self, node):
        if node.replay.func in NOT_REPLAYABLE:
            return
        replayed = self.call(node, None)
        if node.func_name in UNDEFINED_VALUES:
            same = (isinstance(replayed, torch.Tensor)
                    and replayed.shape == node.tensor_contents.shape
                    and replayed.dtype == node.tensor_contents.dtype)
            difference = "shape or dtype"
        else:
            same, difference = matches(replayed, node.tensor_contents)
        if not same:
            raise replay_differs(node, difference)
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
                raise parent_insensitive(
                    node, parent, f"and no rule ({', '.join(INSENSITIVITY_RULES)}) says it may "
                    "ignore that parent: the link to the parent or its saved value is wrong, or "
                    "this is a case the validator's rules do not know")

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
        key = node.call_index
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
        replacements = None if perturbed_parent is None else {
            id(perturbed_parent): self._noise(perturbed_parent.tensor_contents)}
        try:
            return run_call(node, replacements)
        except ValidationError:
            raise
        except Exception as exc:
            if perturbed_parent is not None:
                return exc
            raise ValidationError(
                f"{where(node)}: replay failed: re-running it on the saved values of its "
                f"parents {node.parent_layers} raised {type(exc).__name__}: {exc}", node,
                "replay failed") from exc


def _perturbable(tensor):
    return is_continuous(tensor.dtype) and tensor.numel() > 0
