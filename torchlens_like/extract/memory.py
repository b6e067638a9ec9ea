"""Memory planning: split the requested layers into groups that fit a limit.

The idea of DeepJuice's ``FeatureExtractor``: the features of a layer for the
whole stimulus set take ``n_stimuli x bytes_per_stimulus``; layers are
grouped, in the order requested, so that each group's total stays within
``memory_limit``, and the extraction runs one pass over the stimuli per group.
A layer that alone exceeds the limit is an error naming it (reduce it with
``reduction="srp"`` or raise the limit).
"""

from __future__ import annotations

from ..units import format_bytes, parse_bytes


def plan_groups(bytes_per_stimulus, n_stimuli, memory_limit=None):
    """Groups of layer keys whose features for all stimuli fit ``memory_limit``.

    Parameters
    ----------
    bytes_per_stimulus : dict
        Layer key -> bytes one stimulus takes (after reduction), in the order
        the layers were asked for.
    n_stimuli : int
    memory_limit : str or int, optional
        None: one group.

    Examples
    --------
    >>> plan_groups({"a": 600, "b": 300, "c": 500}, 1000, "1MB")
    [['a', 'b'], ['c']]
    """
    keys = list(bytes_per_stimulus)
    if memory_limit is None:
        return [keys]
    limit = parse_bytes(memory_limit, "memory_limit")
    groups, current, used = [], [], 0
    for key in keys:
        need = bytes_per_stimulus[key] * n_stimuli
        if need > limit:
            raise ValueError(f"layer {key!r} alone needs {format_bytes(need)} for {n_stimuli} "
                             f"stimuli, more than memory_limit={memory_limit!r}. Raise the "
                             "limit or reduce the layer (reduction='srp' or 'spatial_mean').")
        if current and used + need > limit:
            groups.append(current)
            current, used = [], 0
        current.append(key)
        used += need
    if current:
        groups.append(current)
    return groups
