"""What the benchmark scripts share: timing one call.

Imported by the scripts next to it (``python benchmarks/NAME.py`` puts this
folder on the import path).
"""

from __future__ import annotations

import time


def time_call(fn):
    """Wall-clock seconds of ``fn()``; its result is dropped before returning."""
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed
