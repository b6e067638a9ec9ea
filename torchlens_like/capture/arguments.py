"""Walking nested call arguments and model inputs/outputs.

Arguments of torch calls and model inputs/outputs may nest tuples, lists,
dicts and named tuples (``PackedSequence`` is one). These helpers find every
tensor in such a structure, with the path that reaches it, and rebuild the
structure with tensors swapped for placeholders.
"""

from __future__ import annotations

import torch

_Tensor = torch.Tensor


def is_namedtuple(obj):
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def find_tensors(obj, path=()):
    """Return ``[(path, tensor), ...]`` for every tensor nested in ``obj``.

    Examples
    --------
    >>> import torch
    >>> [p for p, _ in find_tensors((torch.ones(1), {"a": [1, torch.zeros(1)]}))]
    [(0,), (1, 'a', 1)]
    """
    found = []
    _walk(obj, path, found)
    return found


def _walk(obj, path, found):
    if isinstance(obj, _Tensor):
        found.append((path, obj))
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            _walk(item, path + (i,), found)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            _walk(item, path + (key,), found)


def substitute(obj, replace):
    """Rebuild ``obj`` with each tensor ``t`` swapped for ``replace(t)``.

    Containers that hold no tensor are returned as they are.

    Examples
    --------
    >>> import torch
    >>> substitute([1, (torch.ones(1),)], lambda t: "T")
    [1, ('T',)]
    """
    if isinstance(obj, _Tensor):
        return replace(obj)
    if isinstance(obj, (tuple, list)):
        items = [substitute(item, replace) for item in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        if is_namedtuple(obj):
            return type(obj)(*items)
        return type(obj)(items)
    if isinstance(obj, dict):
        items = {key: substitute(item, replace) for key, item in obj.items()}
        if all(items[k] is obj[k] for k in obj):
            return obj
        return type(obj)(items) if type(obj) is not dict else items
    return obj


def pick(obj, path):
    """Return the element of a nested structure that ``path`` leads to."""
    for step in path:
        obj = obj[step]
    return obj
