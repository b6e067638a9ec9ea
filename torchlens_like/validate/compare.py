"""Comparing a replayed tensor with a saved one: dtype-dependent tolerances."""

from __future__ import annotations

import torch

TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.complex128: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.complex64: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.complex32: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}
"""``{dtype: (rtol, atol)}``; other floating dtypes (float8) use ``(0.13, 0.13)``."""


def is_continuous(dtype):
    """Floating or complex: values a small perturbation can move.

    Examples
    --------
    >>> import torch
    >>> is_continuous(torch.float16), is_continuous(torch.int64)
    (True, False)
    """
    return dtype.is_floating_point or dtype.is_complex


def unchanged(actual, expected):
    """Bit for bit the same (any change, however small, shows a dependence).

    Examples
    --------
    >>> import torch
    >>> unchanged(torch.ones(2), torch.ones(2)), unchanged(torch.ones(2), torch.zeros(2))
    (True, False)
    """
    return (isinstance(actual, torch.Tensor) and actual.shape == expected.shape
            and actual.dtype == expected.dtype and torch.equal(actual.to(expected.device),
                                                               expected))


def matches(actual, expected):
    """``(same, largest difference)`` under the dtype's tolerance (:data:`TOLERANCES`).

    The absolute tolerance scales with the largest finite magnitude in ``expected``.

    Examples
    --------
    >>> import torch
    >>> matches(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.00001]))[0]
    True
    >>> matches(torch.tensor([1, 2]), torch.tensor([1, 3]))
    (False, 1.0)
    """
    if not isinstance(actual, torch.Tensor):
        return False, f"a {type(actual).__name__} instead of a tensor"
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return False, (f"shape/dtype {tuple(actual.shape)} {actual.dtype} instead of "
                       f"{tuple(expected.shape)} {expected.dtype}")
    if actual.device != expected.device:
        actual = actual.to(expected.device)
    if torch.equal(actual, expected):
        return True, 0.0
    if not is_continuous(expected.dtype):
        return False, _largest_difference(actual, expected)
    rtol, atol = TOLERANCES.get(expected.dtype, (0.13, 0.13))
    wide = torch.complex128 if expected.dtype.is_complex else torch.float64
    a, b = actual.to(wide), expected.to(wide)
    finite = b[torch.isfinite(b)].abs()
    scale = max(1.0, float(finite.max())) if finite.numel() else 1.0
    same = bool(torch.isclose(a, b, rtol=rtol, atol=atol * scale, equal_nan=True).all())
    return same, _largest_difference(actual, expected)


def _largest_difference(actual, expected):
    if expected.numel() == 0:
        return 0.0
    wide = torch.complex128 if expected.dtype.is_complex else torch.float64
    diff = (actual.to(wide) - expected.to(wide)).abs()
    both_nan = torch.isnan(actual.to(wide).abs()) & torch.isnan(expected.to(wide).abs())
    diff = torch.where(both_nan, torch.zeros_like(diff), diff)
    return float(torch.nan_to_num(diff, nan=float("inf")).max())
