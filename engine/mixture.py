"""Mixture weights: validation shared by the store, strategies, the CLI and the app."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

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


#: a share this close to its lower bound is an optimiser's residue (3e-6 of a domain), not a choice
MIN_SHARE = 1e-4


def snap_to_bounds(w: np.ndarray, bounds: np.ndarray, tol: float = MIN_SHARE) -> np.ndarray:
    """``w`` with every share within ``tol`` of its lower bound set to that bound and the mass
    this frees given to the other shares in proportion to them (none beyond its upper bound).
    Why: an optimum's 0.000003 of a domain would be exported into a training blend as a real
    (tiny) share, and shown as 0.0000 beside it. ``w`` is returned unchanged where nothing is
    that close, or no other share can take the mass."""
    w = np.asarray(w, float)
    lo, hi = np.asarray(bounds, float)[:, 0], np.asarray(bounds, float)[:, 1]
    near = w < lo + tol
    if not near.any() or (w[near] == lo[near]).all():
        return w
    out = w.copy()
    out[near] = lo[near]
    spare = w[near].sum() - lo[near].sum()
    for _ in range(len(w)):  # each round fills at least one share to its upper bound
        room = ~near & (out < hi)
        if spare <= 1e-15 or not room.any() or out[room].sum() <= 0:
            break
        add = spare * out[room] / out[room].sum()
        new = np.minimum(out[room] + add, hi[room])
        spare -= float((new - out[room]).sum())
        out[room] = new
    return out if spare <= 1e-12 else w


def project_to_simplex(V: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Euclidean projection of the rows of ``V`` onto {lo <= w <= hi, sum w = 1}.

    Bisection on the shift t in clip(V - t, lo, hi); the last ulp is then put where there is room,
    so every row sums to 1 to machine precision and stays within its bounds. ``bounds`` is a
    (K, 2) array of (low, high)."""
    V = np.atleast_2d(np.asarray(V, dtype=float))
    lo, hi = bounds[:, 0], bounds[:, 1]
    a = (V - hi).min(axis=1) - 1.0  # sum(clip(V - a)) = sum(hi) >= 1
    c = (V - lo).max(axis=1) + 1.0  # sum(clip(V - c)) = sum(lo) <= 1
    for _ in range(100):
        t = 0.5 * (a + c)
        s = np.clip(V - t[:, None], lo, hi).sum(axis=1)
        big = s > 1.0
        a = np.where(big, t, a)
        c = np.where(big, c, t)
    W = np.clip(V - 0.5 * (a + c)[:, None], lo, hi)
    err = 1.0 - W.sum(axis=1)
    room = np.where(err[:, None] > 0, hi - W, W - lo)
    j = np.argmax(room, axis=1)
    W[np.arange(len(W)), j] += err
    return W
