"""Holding Python's cyclic garbage collector off while a pass is logged.

Logging creates many small objects. Left on, the collector would run full
collections over every object in the process (several milliseconds each) in
the middle of the pass. The logged graph has no reference cycles, so there is
nothing for it to collect there; collection simply resumes afterwards.

The collector's switch is process-wide, so calls logging in several threads
at once share one pause: the first to enter records whether the collector
was on, the last to leave puts that back (a switch made by other code while
the pause is held is not kept).
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.Lock()
_state = {"holders": 0, "was_enabled": False}


@contextlib.contextmanager
def cyclic_gc_paused():
    """Context manager: the cyclic collector is off inside, as it was outside.

    Examples
    --------
    >>> import gc
    >>> with cyclic_gc_paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    with _lock:
        if _state["holders"] == 0:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
        _state["holders"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["holders"] -= 1
            if _state["holders"] == 0 and _state["was_enabled"]:
                gc.enable()
