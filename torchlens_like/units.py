"""Sizes in bytes, written and read the same way everywhere (layer tables, pictures, plans).

Decimal units throughout, named as the SI names them: ``kB`` (1000 bytes),
``MB``, ``GB``, ``TB``. Reading also takes binary units with an ``i``
(``MiB`` = 2**20 bytes), which are then what they say. A foundation module:
the graph stage and the extraction both use it, and it imports nothing.
"""

from __future__ import annotations

import re

DECIMAL_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
"""The units :func:`format_bytes` writes, largest first."""

_READ = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def format_bytes(n_bytes):
    """A size in decimal units with two decimals: ``40_020_000`` -> ``'40.02 MB'``.

    Examples
    --------
    >>> format_bytes(999), format_bytes(12_000), format_bytes(3 * 1024 ** 2)
    ('999 B', '12.00 kB', '3.15 MB')
    """
    for unit, factor in DECIMAL_UNITS:
        if n_bytes >= factor:
            return f"{n_bytes / factor:.2f} {unit}"
    return f"{int(n_bytes)} B"


def parse_bytes(size, name="size"):
    """Bytes in ``"2GB"``, ``"500 kB"``, ``"1.5 MiB"`` or a number; ``name`` is the argument's name.

    Examples
    --------
    >>> parse_bytes("2GB"), parse_bytes("1.5 MiB"), parse_bytes(1000), parse_bytes("12.00 kB")
    (2000000000, 1572864, 1000, 12000)
    >>> parse_bytes("lots", "memory_limit")
    Traceback (most recent call last):
    ...
    ValueError: memory_limit 'lots' is not a size; write e.g. '2GB', '500MB', '4GiB' or a number of bytes
    """
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        return int(size)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(size))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _READ:
        raise ValueError(f"{name} {size!r} is not a size; write e.g. '2GB', '500MB', '4GiB' or a "
                         "number of bytes")
    return int(float(match.group(1)) * _READ[unit])
