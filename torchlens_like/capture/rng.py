"""Generator state of each call, recorded so the call can be replayed.

Which calls draw random numbers cannot be told from their names: a fused or
composite call (``scaled_dot_product_attention`` with ``dropout_p``,
``multi_head_attention_forward`` in training, a custom autograd function)
draws inside. So the generator state is taken before every call, and when
the pass ends, :func:`calls_that_drew` compares each state with the next one:
only the states of calls that moved the generator are kept.
"""

from __future__ import annotations

import torch


def op_rng_state(tensors_on_cuda):
    """The generator state a call is about to consume, for replaying it.

    Examples
    --------
    >>> import torch
    >>> state = op_rng_state(False); a = torch.rand(1)
    >>> torch.set_rng_state(state["torch"]); bool(torch.rand(1) == a)
    True
    """
    state = {"torch": torch.get_rng_state()}
    if tensors_on_cuda and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def calls_that_drew(states, after):
    """For generator states recorded before consecutive calls: whether each call drew.

    ``states`` are :func:`op_rng_state` results in call order, ``after`` the
    state once the last call returned. Call ``i`` drew when its state differs
    from the one before call ``i + 1`` (on the CPU generator, or on the CUDA
    generator where both recorded it).

    Examples
    --------
    >>> import torch
    >>> first = op_rng_state(False); _ = torch.ones(2)
    >>> second = op_rng_state(False); _ = torch.rand(2)
    >>> calls_that_drew([first, second], op_rng_state(False))
    [False, True]
    """
    if not states:
        return []
    sequence = list(states) + [after]
    cpu = torch.stack([state["torch"] for state in sequence])
    drew = (cpu[1:] != cpu[:-1]).any(dim=1).tolist()
    later_cuda = after.get("cuda")
    for i in range(len(states) - 1, -1, -1):
        cuda = states[i].get("cuda")
        if cuda is not None:
            drew[i] = drew[i] or (later_cuda is not None and not torch.equal(cuda, later_cuda))
            later_cuda = cuda
    return drew
