"""Numbers as people read them (the data layer's formatter, so modules below the plots, such as
:mod:`engine.trajectory` and :mod:`engine.scales`, need not import the plotting package).

- :func:`human` -- large or small quantities (parameters, tokens, FLOPs, costs): 3 significant
  digits with K / M / B / T, e.g. ``20M``, ``1.2B``, ``0.00013``.
"""

from __future__ import annotations

import math

__all__ = ["human"]


def human(n: float | int | None) -> str:
    """1.2e9 -> '1.2B', 20_000_000 -> '20M', 0.00012963 -> '0.00013'; None/NaN/inf -> '-'."""
    if n is None:
        return "-"
    try:
        n = float(n)
    except (TypeError, ValueError):
        return str(n)
    if not math.isfinite(n):
        return "-"
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"
