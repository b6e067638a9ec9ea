"""Resident memory that stays flat however many stimuli an extraction runs over.

Two things made the peak resident memory of an extraction grow with the
number of stimuli (resnet18 ``layer1`` on 224-px inputs, batch 32: 1.6 GB
for 256 images, 3.0 GB for 2,048, all of it anonymous memory; the ``npy``
and ``hdf5`` files' mapped pages stayed under 20 MB):

* A logging pass cut short by the early stop leaves its record of the pass in
  a reference cycle (the stop's traceback holds the model's frames, and they
  hold the record and the batch's activations). An automatic collection that
  ran while the pass was still returning promoted the cycle to an older
  generation, where only a full collection (a tenth of a second with torch
  loaded, so rare) frees it: every batch's activations stayed resident.
  Automatic collection is now held off until the pass has returned, when the
  whole cycle is in the youngest generation and a collection of microseconds
  frees it.
* Freed activations smaller than glibc's mmap threshold (which rises to
  32 MB as larger blocks are freed) stay in the heap, which fragments and
  grows batch after batch. ``malloc_trim`` hands the freed pages back after
  each pass (glibc only; elsewhere nothing is done).

With both, the same extraction peaks at about 1.1 GB for 256 and for 2,048
images.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import platform


@contextlib.contextmanager
def released_after_pass():
    """Run one logging pass; afterwards free its reference cycles and hand freed memory back.

    The caller's garbage-collector setting is restored on exit.

    Examples
    --------
    >>> import gc
    >>> with released_after_pass():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect(0)
        if was_enabled:
            gc.enable()
        _trim_heap()


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
