"""Numbers as people read them: the one place that turns counts, sizes, costs and durations
into text, so every page of the app, the plots and the CLI say ``1M`` (never ``1000000``) and
``1 min 05 s`` (never ``65.3``).

- :func:`human` -- large or small quantities (parameters, tokens, FLOPs, costs): 3 significant
  digits with K / M / B / T, e.g. ``20M``, ``1.2B``, ``0.00013``.
- :func:`count` -- how many of something: ``64``, ``1,234``.
- :func:`duration` -- seconds as ``8 s``, ``1 min 05 s``, ``2 h 03 min``.
- :func:`cost_text` -- a cost with the study's unit (see :func:`cost_unit`).

Tables in the app use Streamlit's ``compact`` number format for the same columns (``1M``,
``614B``), which agrees with :func:`human` on every round number.
"""

from __future__ import annotations

import math

__all__ = ["cost_text", "cost_unit", "count", "duration", "human"]


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


def count(n: float | int | None) -> str:
    """A count with thousands separators ('1,234'); '-' when unknown."""
    if n is None:
        return "-"
    try:
        f = float(n)
    except (TypeError, ValueError):
        return str(n)
    if not math.isfinite(f):
        return "-"
    return f"{int(round(f)):,}"


def duration(seconds: float | None) -> str:
    """'8 s', '1 min 05 s', '2 h 03 min' ('-' when unknown). Sub-second times read '< 1 s'."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "-"
    s = max(0.0, float(seconds))
    if s < 1:
        return "< 1 s"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    h, rest = divmod(s, 3600)
    if h < 48:
        return f"{h} h {rest // 60:02d} min"
    return f"{h // 24} d {h % 24:02d} h"


def cost_unit(config) -> str:
    """The unit costs of a study are counted in: ``FLOPs`` where no scale has a
    ``cost_per_step`` (cost = 6 x params x tokens), else the unit of the config's
    ``cost_per_step`` (it has no name: "cost units"). Mixed configs say both."""
    scales = list(getattr(config, "scales", ()) or ())
    per_step = [s.cost_per_step is not None for s in scales]
    if scales and all(per_step):
        return "cost units"
    if any(per_step):
        return "cost units (FLOPs where a scale has no cost_per_step)"
    return "FLOPs"


def cost_text(cost: float | None, unit: str = "") -> str:
    """'6.14T FLOPs', '1.3 cost units' ('-' when unknown)."""
    text = human(cost)
    return text if text == "-" or not unit else f"{text} {unit}"
