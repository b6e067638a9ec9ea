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
