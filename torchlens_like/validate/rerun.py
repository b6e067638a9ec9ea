"""Re-run one recorded call on its parents' saved values, as it ran in the logged pass.

The call runs with the generator state it consumed (when it drew random
numbers) and under the autocast state it ran under, so fused calls that
draw inside (attention dropout) and calls inside an autocast region
reproduce their outputs. Saved values are never written: a parent the call
writes into (in-place methods, ``out=``, buffers that ``batch_norm`` updates
in training) is cloned first, and a call that still changes an input's
version counter is reported.
"""

from __future__ import annotations

import contextlib

import torch

from ..model_state import AUTOCAST_DEVICES, autocast_state, tensor_version
from ..nested import find_tensors, map_nested
from ..records import is_slot
from .errors import ValidationError, where


def run_call(node, replacements=None, writable=frozenset()):
    """Run ``node``'s recorded call with every parent's saved value, some replaced.

    Parameters
    ----------
    node : LayerEntry
        An op node of a fully saved history.
    replacements : dict, optional
        ``{id(parent node): tensor}``: values to use instead of those parents'
        saved values.
    writable : set of int, optional
        ``id`` of replacement tensors the caller owns: a call writing into one
        writes into it instead of into a copy.

    Returns
    -------
    The call's whole result (every output of a multi-output call).

    Raises
    ------
    ValidationError
        When the call wrote into one of its inputs (its in-place behaviour was
        not recognised when logging). Errors of the call itself propagate.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.relu, torch.tensor([-1.0, 2.0]))
    >>> relu = history["relu_1"]
    >>> run_call(relu), run_call(relu, {id(relu.parent_nodes[0]): torch.tensor([3.0, -4.0])})
    (tensor([0., 2.]), tensor([3., 0.]))
    """
    replacements = replacements or {}
    buffer_copies = {}
    replay = node.replay

    def value(slot):
        if slot.kind != "layer":
            return replay.values[slot]
        if id(slot.ref) in replacements:
            return replacements[id(slot.ref)]
        if slot.ref.kind == "buffer":
            if id(slot.ref) not in buffer_copies:
                buffer_copies[id(slot.ref)] = slot.ref.tensor_contents.clone()
            return buffer_copies[id(slot.ref)]
        return slot.ref.tensor_contents

    args, kwargs = _fill(node.args, value), _fill(node.kwargs, value)
    written = tuple(replay.writes(args, kwargs)) if replay.writes is not None else ()
    if kwargs.get("out") is not None:
        written += tuple(t for _, t in find_tensors(kwargs["out"]))
    if written and any(id(t) not in writable for t in written):
        copies = {id(t): t.clone() for t in written if id(t) not in writable}
        args, kwargs = (_fill(node.args, lambda s: _swap(value(s), copies)),
                        _fill(node.kwargs, lambda s: _swap(value(s), copies)))
        written = tuple(copies.get(id(t), t) for t in written)
    targets = {id(t) for t in written}
    inputs = [t for _, t in find_tensors((args, kwargs)) if id(t) not in targets]
    versions = [tensor_version(t) for t in inputs]
    if replay.rng_state is None and replay.autocast_state == autocast_state():
        result = replay.func(*args, **kwargs)
    else:
        with as_recorded(node):
            result = replay.func(*args, **kwargs)
    if [tensor_version(t) for t in inputs] != versions:
        raise ValidationError(
            f"{where(node)}: replay failed: it wrote into one of its inputs when re-run, so its "
            "in-place behaviour was not recognised when logging", node, "replay failed")
    if result is None and written:
        return written[0]
    return result


@contextlib.contextmanager
def as_recorded(node):
    """Generator and autocast state as when ``node``'s call ran; the caller's afterwards.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(lambda x: x + torch.rand(2), torch.zeros(2))
    >>> with as_recorded(history["rand_1"]):
    ...     bool((torch.rand(2) == history["rand_1"].tensor_contents).all())
    True
    """
    replay = node.replay
    with contextlib.ExitStack() as stack:
        if replay.rng_state is not None:
            stack.enter_context(_generator_state(replay.rng_state))
        if replay.autocast_state != autocast_state():
            recorded = dict(replay.autocast_state or ())
            for device in AUTOCAST_DEVICES:
                if device in recorded or torch.is_autocast_enabled(device):
                    stack.enter_context(torch.autocast(device, dtype=recorded.get(device),
                                                       enabled=device in recorded))
        yield


@contextlib.contextmanager
def _generator_state(state):
    before = torch.get_rng_state()
    cuda_before = torch.cuda.get_rng_state() if "cuda" in state else None
    try:
        torch.set_rng_state(state["torch"])
        if cuda_before is not None:
            torch.cuda.set_rng_state(state["cuda"])
        yield
    finally:
        torch.set_rng_state(before)
        if cuda_before is not None:
            torch.cuda.set_rng_state(cuda_before)


def _fill(value, resolve):
    return map_nested(value, lambda slot, _: resolve(slot), is_slot)


def _swap(tensor, copies):
    return copies.get(id(tensor), tensor) if isinstance(tensor, torch.Tensor) else tensor

