"""The reader registry: conveniences on ``ModelHistory`` that later stages provide.

``history.validate()``, ``history.render_graph()`` and ``history.to_html()``
are methods for the user's comfort, but validation and rendering read the
history, so :mod:`torchlens_like.graph` must not import them. Instead each
reader registers its function here when its package is imported (importing
:mod:`torchlens_like` imports them all), and the methods look it up by name.
"""

from __future__ import annotations

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
    try:
        return READERS[name]
    except KeyError:
        raise KeyError(f"No reader '{name}' is registered; registered readers: "
                       f"{', '.join(sorted(READERS)) or 'none'}. Import torchlens_like (which "
                       "imports every reader package) before calling it.") from None
