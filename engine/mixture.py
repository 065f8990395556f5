"""Mixture weights: validation shared by the store, strategies, the CLI and the app."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from engine.errors import ValidationError

#: Largest |sum(w) - 1| accepted for a mixture typed or edited by hand; it is renormalised.
SUM_TOLERANCE = 1e-6


def validate_weights(
    weights: Mapping[str, float],
    domains: Sequence[str],
    bounds: Sequence[tuple[float, float]] | None = None,
    *,
    tolerance: float = SUM_TOLERANCE,
    where: str = "mixture",
) -> dict[str, float]:
    """Check a mixture against the study's domains and bounds; return it in domain order,
    renormalised to sum exactly to 1.

    Raises :class:`ValidationError` naming the domain and the fix for: missing or unknown
    domains, non-numeric / NaN / negative weights, a sum off 1 by more than ``tolerance``,
    a weight outside its bound.
    """
    missing = [d for d in domains if d not in weights]
    unknown = [d for d in weights if d not in domains]
    if unknown:
        raise ValidationError(f"{where}: unknown domain(s) {unknown}.",
                              fix=f"the study's domains are {list(domains)}.")
    if missing:
        raise ValidationError(f"{where}: no weight for domain(s) {missing}.",
                              fix="give every domain a weight (0 is allowed).")
    out: dict[str, float] = {}
    for d in domains:
        w = weights[d]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(float(w)):
            raise ValidationError(f"{where}: weight of '{d}' is {w!r}, not a finite number.")
        if w < 0:
            raise ValidationError(f"{where}: weight of '{d}' is {w} < 0.", fix="weights must be >= 0.")
        out[d] = float(w)
    total = sum(out.values())
    if abs(total - 1.0) > tolerance:
        raise ValidationError(f"{where}: weights sum to {total:.6g}, off 1 by {total - 1.0:+.3g}.",
                              fix="make the weights sum to 1.")
    out = {d: w / total for d, w in out.items()}
    if bounds is not None:
        for d, (lo, hi) in zip(domains, bounds):
            if not (lo - 1e-9 <= out[d] <= hi + 1e-9):
                raise ValidationError(f"{where}: weight of '{d}' is {out[d]:.4g}, outside its bounds [{lo}, {hi}].",
                                      fix="change the weight or the study's [bounds].")
    return out
