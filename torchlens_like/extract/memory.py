"""Memory planning: split the requested layers into groups that fit a limit.

The idea of DeepJuice's ``FeatureExtractor``: the features of a layer for the
whole stimulus set take ``n_stimuli x bytes_per_stimulus``; layers are
grouped, in the order requested, so that each group's total stays within
``memory_limit``, and the extraction runs one pass over the stimuli per group.
A layer that alone exceeds the limit is an error naming it (reduce it with
``reduction="srp"`` or raise the limit).
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size):
    """Bytes in ``"2GB"``, ``"500 MiB"``, ``1e9`` (decimal units, binary with ``i``).

    Examples
    --------
    >>> parse_size("2GB"), parse_size("1.5 MiB"), parse_size(1000)
    (2000000000, 1572864, 1000)
    """
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        return int(size)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(size))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"memory_limit {size!r} is not a size; write e.g. '2GB', '500MB', "
                         "'4GiB' or a number of bytes")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(n_bytes):
    """``1234567`` -> ``'1.23 MB'``.

    Examples
    --------
    >>> format_size(999), format_size(40_020_000)
    ('999 B', '40.02 MB')
    """
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n_bytes >= factor:
            return f"{n_bytes / factor:.2f} {unit}"
    return f"{n_bytes} B"


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
    limit = parse_size(memory_limit)
    groups, current, used = [], [], 0
    for key in keys:
        need = bytes_per_stimulus[key] * n_stimuli
        if need > limit:
            raise ValueError(f"layer {key!r} alone needs {format_size(need)} for {n_stimuli} "
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
