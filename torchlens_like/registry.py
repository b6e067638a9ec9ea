"""Name-to-function registries: the one lookup that checks a name and lists the valid ones.

Also the reader registry: conveniences such as ``history.validate()``,
``history.render_graph()``, ``history.save()`` and a layer's notebook card are
methods for the user's comfort, but validation, rendering and saving read the
history, so the graph stage and the records must not import them. Instead each
reader registers its function here when its package is imported (importing
:mod:`torchlens_like` imports them all), and the methods look it up by name.

This module is a foundation of the package: it imports nothing from it.
"""

from __future__ import annotations


def lookup(registry, name, argument, hint="", error=ValueError):
    """Return ``registry[name]``, or raise ``error`` listing the valid names.

    Parameters
    ----------
    registry : dict
        Name to implementation.
    name : str
        The requested name.
    argument : str
        What carried ``name`` (an argument, a kind of thing), for the message.
    hint : str
        Said after the valid names: what to do.
    error : type
        The exception to raise (``ValueError``; ``KeyError`` where a missing key is expected).

    Examples
    --------
    >>> lookup({"a": 1}, "a", "method")
    1
    >>> lookup({"a": 1}, "b", "method")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: unknown method 'b'; choose one of: a
    """
    if not isinstance(name, str) or name not in registry:
        message = f"unknown {argument} {name!r}; choose one of: {', '.join(sorted(registry))}"
        raise error(message + (f". {hint}" if hint else ""))
    return registry[name]


READERS = {}
"""``{name: function(history, ...)}``, filled in by the reader packages."""


def register_reader(name, function):
    """Make ``function`` the reader called ``name`` (a later registration replaces it).

    Examples
    --------
    >>> register_reader("layer_count", lambda history: len(history))
    >>> READERS.pop("layer_count")(range(3))
    3
    """
    READERS[name] = function


def reader(name):
    """The registered reader ``name``; a ``KeyError`` listing the registered ones if none.

    Examples
    --------
    >>> import torchlens_like
    >>> reader("validate").__name__
    'validate_verdict'
    """
    return lookup(READERS, name, "reader", "Import torchlens_like (which imports every reader "
                  "package) before calling it", KeyError)
