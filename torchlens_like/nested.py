"""The one walker over nested arguments, inputs and outputs.

Call arguments and model inputs/outputs may nest tuples, lists, dicts and
named tuples (``PackedSequence`` is one). Every part of the package that looks
inside such a structure goes through :func:`map_nested` (rebuild it with
leaves replaced, like ``torch.fx.node.map_aggregate``) or :func:`find_leaves`
(list the leaves with the path that reaches each), so all of them agree on
what a container is: a named tuple is rebuilt field by field, a dict subclass
keeps its type, and a container whose leaves are unchanged is returned as the
same object.

This module is the foundation of the package: it imports nothing from it.
"""

from __future__ import annotations

import torch

_Tensor = torch.Tensor


def is_tensor(obj):
    """The default leaf test: a ``torch.Tensor``."""
    return isinstance(obj, _Tensor)


def is_namedtuple(obj):
    """Whether ``obj`` is a named tuple (rebuilt with ``type(obj)(*items)``)."""
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def map_nested(obj, replace, is_leaf=is_tensor, path=()):
    """Rebuild ``obj`` with each leaf ``x`` swapped for ``replace(x, path)``.

    Containers whose leaves all come back unchanged are returned as they are.

    Parameters
    ----------
    obj : object
        A leaf, or tuples / lists / named tuples / dicts nesting leaves.
    replace : callable
        ``replace(leaf, path) -> new leaf``; ``path`` is the tuple of indices
        and keys leading from ``obj`` to the leaf.
    is_leaf : callable
        Which objects are leaves (default: tensors).
    path : tuple
        Path of ``obj`` itself, prefixed to every leaf's path.

    Examples
    --------
    >>> import torch
    >>> map_nested([1, (torch.ones(1),)], lambda t, path: path)
    [1, ((1, 0),)]
    """
    if is_leaf(obj):
        return replace(obj, path)
    if isinstance(obj, (tuple, list)):
        items = [map_nested(item, replace, is_leaf, path + (i,)) for i, item in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(*items) if is_namedtuple(obj) else type(obj)(items)
    if isinstance(obj, dict):
        items = {key: map_nested(item, replace, is_leaf, path + (key,))
                 for key, item in obj.items()}
        if all(items[key] is obj[key] for key in obj):
            return obj
        return items if type(obj) is dict else type(obj)(items)
    return obj


def find_leaves(obj, is_leaf=is_tensor, path=()):
    """Return ``[(path, leaf), ...]`` for every leaf nested in ``obj``, in order.

    The same containers as :func:`map_nested`, walked without rebuilding them.

    Examples
    --------
    >>> import torch
    >>> [p for p, _ in find_leaves((torch.ones(1), {"a": [1, torch.zeros(1)]}))]
    [(0,), (1, 'a', 1)]
    """
    found = []
    _collect(obj, is_leaf, path, found)
    return found


def _collect(obj, is_leaf, path, found):
    if is_leaf(obj):
        found.append((path, obj))
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            _collect(item, is_leaf, path + (i,), found)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            _collect(item, is_leaf, path + (key,), found)


def find_tensors(obj, path=()):
    """Return ``[(path, tensor), ...]`` for every tensor nested in ``obj``.

    Examples
    --------
    >>> import torch
    >>> [p for p, _ in find_tensors([torch.ones(1), 2, (torch.zeros(1),)])]
    [(0,), (2, 0)]
    """
    return find_leaves(obj, is_tensor, path)


def pick(obj, path):
    """Return the element of a nested structure that ``path`` leads to.

    Examples
    --------
    >>> pick({"a": [1, (2, 3)]}, ("a", 1, 0))
    2
    """
    for step in path:
        obj = obj[step]
    return obj
