"""The unit a study counts cost in, and costs written for people.

A study's costs (proposals, `autopilot --budget`, the spend) are in one unit: the
``cost_per_step`` unit where its scales give one (whatever the user priced a step in:
GPU-hours, dollars; the config's ``cost_unit`` names it, default "cost units"), else FLOPs
(6 x model_params x tokens). A bare "spent 0 of 20" hides that 20 FLOPs buys nothing, so every
place that prints a cost (the CLI, the app) asks here for the unit and the formatting.
"""

from __future__ import annotations

import math

from engine.config import StudyConfig

FLOPS = "FLOPs"
#: What a cost_per_step counts in when the config does not say.
DEFAULT_STEP_UNIT = "cost units"


def cost_unit(config: StudyConfig) -> str:
    """The unit of the study's costs: the config's ``cost_unit`` if given, else "cost units"
    where a scale prices its steps (``cost_per_step``), else "FLOPs"."""
    if config.cost_unit:
        return config.cost_unit
    if any(s.cost_per_step is not None for s in config.scales):
        return DEFAULT_STEP_UNIT
    return FLOPS


def number(value: float | None) -> str:
    """A cost as a short number: 4 significant digits, exponents written 1.39e14 (not
    1.39e+14) for very large or small values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = float(value)
    text = f"{v:.4g}" if v == 0 or 1e-3 <= abs(v) < 1e5 else f"{v:.3g}"
    if "e" not in text:
        return text
    mant, exp = text.split("e")
    return f"{mant}e{int(exp)}"


def format_cost(value: float | None, unit: str) -> str:
    """``value`` with its unit, e.g. "1.39e14 FLOPs" or "0.253 cost units"."""
    return f"{number(value)} {unit}"
