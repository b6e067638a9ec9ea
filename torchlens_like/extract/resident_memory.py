"""Resident memory that stays flat however many stimuli an extraction runs over.

Two things made the peak resident memory of an extraction grow with the
number of stimuli (resnet18 ``layer1`` on 224-px inputs, batch 32: 1.6 GB
for 256 images, 3.0 GB for 2,048, all of it anonymous memory; the ``npy``
and ``hdf5`` files' mapped pages stayed under 20 MB):

* A logging pass cut short by the early stop left its record of the pass in
  a reference cycle that kept every batch's activations alive until a rare
  full collection. That is fixed where it arose, in the capture session
  (:meth:`~torchlens_like.capture.session.CaptureSession.note_failure`).
* Freed activations smaller than glibc's mmap threshold (which rises to
  32 MB as larger blocks are freed) stay in the heap, which fragments and
  grows batch after batch. ``malloc_trim`` hands the freed pages back after
  each pass (glibc only; elsewhere nothing is done).

With both, the same extraction peaks at about 1.1 GB for 256 and for 2,048
images.

A trim has a price where the forward is fast: the next pass faults the pages
back in (about 2 ms per batch of mobilenet_v3_small at 64 px, a fifth of the
forward). A full capture, which makes the most garbage, is followed by a trim
each time (:func:`released_after_pass`); lean passes, which allocate what a
plain forward does, are trimmed every :data:`LEAN_TRIM_EVERY`-th
(:class:`PeriodicTrim`), which bounds the heap's growth by what a few batches
can fragment.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import platform


@contextlib.contextmanager
def released_after_pass():
    """Run one logging pass; afterwards hand the heap pages it freed back to the system.

    Examples
    --------
    >>> with released_after_pass():
    ...     pass
    """
    try:
        yield
    finally:
        _trim_heap()


LEAN_TRIM_EVERY = 8
"""Lean passes between two trims of the heap."""


class PeriodicTrim:
    """Trim the heap after every ``every``-th pass counted with :meth:`after_pass`.

    Examples
    --------
    >>> trim = PeriodicTrim(every=2)
    >>> [trim.after_pass() for _ in range(4)]
    [False, True, False, True]
    """

    def __init__(self, every=LEAN_TRIM_EVERY):
        self.every = every
        self.passes = 0

    def after_pass(self):
        """Count one pass; trim (and return True) on every ``every``-th."""
        self.passes += 1
        if self.passes % self.every:
            return False
        _trim_heap()
        return True


def _trim_heap():
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
