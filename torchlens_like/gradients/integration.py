"""How integrated gradients approximate the path integral: points on the path and their weights.

A registry ``{name: rule}``; a rule takes the number of steps ``n`` and
returns ``(alphas, weights)``: where on the straight path from the baseline
(0) to the input (1) gradients are taken, and the weight of each. The names
and values are those of Captum's ``approximation_methods`` (Gauss-Legendre
by default), so the same settings give the same numbers. That includes
Captum's trapezoid rule, whose ``n`` points are evenly spaced from 0 to 1
with weights ``1 / n`` (the two ends halved): they sum to ``1 - 1 / n``, not
1, so its estimates are that much smaller.
"""

from __future__ import annotations

import numpy as np
import torch

from ..registry import lookup


def gauss_legendre(n):
    """Gauss-Legendre nodes on [0, 1] and their weights (exact for polynomials of degree 2n-1).

    Examples
    --------
    >>> alphas, weights = gauss_legendre(2)
    >>> [round(a, 4) for a in alphas], [round(w, 4) for w in weights]
    ([0.2113, 0.7887], [0.5, 0.5])
    """
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()


def _riemann(where):
    def rule(n):
        if n < 2:
            raise ValueError("Riemann sums need n_steps >= 2.")
        weights = [1 / n] * n
        if where == "trapezoid":
            weights[0] /= 2
            weights[-1] /= 2
        start, stop = {"left": (0, 1 - 1 / n), "right": (1 / n, 1),
                       "middle": (1 / (2 * n), 1 - 1 / (2 * n)), "trapezoid": (0, 1)}[where]
        return torch.linspace(start, stop, n).tolist(), weights

    rule.__name__ = f"riemann_{where}"
    rule.__doc__ = f"The {where} Riemann sum: ``n`` equal steps."
    return rule


RULES = {"gausslegendre": gauss_legendre,
         **{f"riemann_{where}": _riemann(where)
            for where in ("left", "right", "middle", "trapezoid")}}
"""``{name: rule(n) -> (alphas, weights)}``, Captum's names."""


def path_points(name, n_steps):
    """``(alphas, weights)`` of the rule ``name`` with ``n_steps`` points.

    Examples
    --------
    >>> path_points("riemann_trapezoid", 3)
    ([0.0, 0.5, 1.0], [0.16666666666666666, 0.3333333333333333, 0.16666666666666666])
    >>> path_points("simpson", 3)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: unknown integration rule 'simpson'; choose one of: ...
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}.")
    return lookup(RULES, name, "integration rule", "integration= names how the path integral "
                  "is approximated")(n_steps)
