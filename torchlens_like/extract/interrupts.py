"""Holding Ctrl-C back while an output folder is between two consistent states.

Most of an extraction can stop anywhere: each batch's rows are written
before the manifest records them, and the manifest is replaced atomically,
so a run stopped at any point resumes from what the manifest says. The end
of a run is different: converting staged files (``mat``, ``pt``, ``txt``),
removing the staging folder and marking the manifest complete must happen
together. :func:`interrupts_deferred` lets such a step finish and raises the
``KeyboardInterrupt`` right after it.
"""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def interrupts_deferred():
    """Run the block to its end even if Ctrl-C (SIGINT) arrives; raise it afterwards.

    Only Python's own SIGINT handler (the one raising ``KeyboardInterrupt``)
    is deferred, and only in the main thread (where signals arrive); a
    handler the caller installed, or ignoring SIGINT, is left alone.

    Examples
    --------
    >>> import signal
    >>> try:
    ...     with interrupts_deferred():
    ...         signal.raise_signal(signal.SIGINT)
    ...         print("the block ends first")
    ... except KeyboardInterrupt:
    ...     print("then the interrupt")
    the block ends first
    then the interrupt
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        signal.default_int_handler(signal.SIGINT, received[0])
