"""The scales of a study: which (model size, training length) points it offers or has run.

A training length is measured in steps where the study has steps and in tokens where it only has
tokens (DESIGN contract 2 allows either; RegMix's tables give tokens only). :class:`Length`
carries both where ``tokens_per_step`` converts one into the other, so a loss model fitted on
either axis can be asked at it. The app's scale pickers (Landscape, Scaling) and the trajectory's
observed incumbent read lengths from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Length:
    """A training length: ``steps`` and/or ``tokens`` (the other filled in where it converts)."""

    steps: float | None = None
    tokens: float | None = None

    @property
    def label(self) -> str:
        """'5,000 steps' or '1.2B tokens'."""
        if self.steps is not None:
            return f"{int(self.steps):,} steps"
        if self.tokens is not None:
            from engine.numbers import human

            return f"{human(self.tokens)} tokens"
        return "-"

    def value(self, axis: str) -> float | None:
        return self.steps if axis == "steps" else self.tokens


def _has(runs: pd.DataFrame, col: str) -> pd.Series:
    if col not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs[col].notna()


def length_axis(config, runs: pd.DataFrame | None = None) -> str | None:
    """``"steps"`` where every checkpoint has steps (or, with no runs, the config lists steps),
    else ``"tokens"`` where every checkpoint has tokens (or the target is in tokens), else
    whichever more checkpoints have; None when nothing says."""
    runs = runs if runs is not None else pd.DataFrame()
    if len(runs):
        steps, tokens = _has(runs, "steps"), _has(runs, "tokens")
        if steps.all():
            return "steps"
        if tokens.all():
            return "tokens"
        if steps.any() or tokens.any():
            return "steps" if steps.sum() >= tokens.sum() else "tokens"
    if config.scales or (config.target is not None and config.target.steps is not None):
        return "steps"
    if config.target is not None and config.target.tokens is not None:
        return "tokens"
    return None


def make_length(config, axis: str | None, value: float | None) -> Length:
    """A :class:`Length` of ``value`` on ``axis``, with the other unit where it converts."""
    if value is None or axis is None:
        return Length()
    if axis == "steps":
        return Length(int(value), config.tokens_for(value))
    steps = config.steps_for(value)
    return Length(steps if steps is None else float(steps), float(value))


def target_length(config) -> Length | None:
    """The study target's length (None without a target)."""
    t = config.target
    if t is None:
        return None
    if t.steps is not None:
        return Length(int(t.steps), t.tokens if t.tokens is not None else config.tokens_for(t.steps))
    return make_length(config, "tokens", t.tokens)


def run_lengths(runs: pd.DataFrame, config, axis: str) -> np.ndarray:
    """Each checkpoint's length on ``axis`` (NaN where it has none and none converts)."""
    n = len(runs)
    own = pd.to_numeric(runs[axis], errors="coerce").to_numpy(dtype=float) if axis in runs.columns \
        else np.full(n, np.nan)
    other = "tokens" if axis == "steps" else "steps"
    rate = config.tokens_per_step
    if rate and other in runs.columns:
        conv = pd.to_numeric(runs[other], errors="coerce").to_numpy(dtype=float)
        conv = conv / rate if axis == "steps" else conv * rate
        own = np.where(np.isfinite(own), own, conv)
    return own


def length_choices(config, runs: pd.DataFrame) -> tuple[str | None, dict[int, list[Length]]]:
    """(axis, {model size: lengths}): every model size on offer or run (smallest first) with the
    lengths on offer or observed there (shortest first), the target's included."""
    axis = length_axis(config, runs)
    values: dict[int, set[float]] = {}
    for s in config.scales:
        vals = values.setdefault(int(s.model_params), set())
        for st in s.steps:
            v = make_length(config, "steps", st).value(axis) if axis else None
            if v is not None:
                vals.add(float(v))
    if len(runs) and axis is not None:
        L = run_lengths(runs, config, axis)
        mp = runs["model_params"].to_numpy()
        ok = np.isfinite(L)
        for m in np.unique(mp):
            sel = ok & (mp == m)
            values.setdefault(int(m), set()).update(float(x) for x in np.unique(L[sel]))
    tl = target_length(config)
    if tl is not None:
        vals = values.setdefault(int(config.target.model_params), set())
        v = tl.value(axis) if axis else None
        if v is not None:
            vals.add(float(v))
    out = {}
    for m in sorted(values):
        out[m] = [make_length(config, axis, v) for v in sorted(values[m])]
    return axis, out


def default_length(config, model_params: int, lengths: list[Length]) -> Length | None:
    """The target's length at the target size, else the longest length on offer."""
    if not lengths:
        return None
    t = config.target
    if t is not None and int(t.model_params) == int(model_params):
        tl = target_length(config)
        for L in lengths:
            if (tl.steps is not None and L.steps == tl.steps) or (tl.tokens is not None and L.tokens == tl.tokens):
                return L
    return lengths[-1]
