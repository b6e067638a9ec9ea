"""What the benchmark scripts share: timing one call, and timing two side by side.

Imported by the scripts next to it (``python benchmarks/NAME.py`` puts this
folder on the import path).
"""

from __future__ import annotations

import statistics
import time


def time_call(fn):
    """Wall-clock seconds of ``fn()``; its result is dropped before returning."""
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def paired(fn, reference, repeats):
    """Median of ``time(fn) / time(reference)`` over repeats (each pair back to back).

    Returns that ratio, and the median seconds of ``fn`` and of ``reference``.
    """
    ratios, seconds, references = [], [], []
    for _ in range(repeats):
        reference_s = time_call(reference)
        elapsed = time_call(fn)
        ratios.append(elapsed / reference_s)
        seconds.append(elapsed)
        references.append(reference_s)
    return statistics.median(ratios), statistics.median(seconds), statistics.median(references)
