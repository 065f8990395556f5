"""Calibrated uncertainty under extrapolation: widen a model's std by what its own backtest shows.

A loss model's std says how sure it is *where it has data*. Asked for a model 3x larger than
any it was fitted on, every model here is overconfident: a GP's kernel and a law's Laplace std
treat the data's checkpoints as independent and the law as right. The only honest measure of
extrapolation error available before training at the target is the study's own data: fit on
the small sizes, predict the larger ones (:mod:`engine.models.backtest`). This module turns
those held-out errors into a std that grows with the distance from the data:

    std_cal(x) = sqrt( std(x)^2 + (|mean(x)| * tau1 * d(x))^2 )

``d`` is the extrapolation distance in log scale, ``log(N / N_max) + log(D / D_max)`` over the
parts that exceed the fitted data (0 inside it): log compute, since loss falls with both.
Inside the data the model's own std stands; beyond it ``tau1``, the relative error added per
e-fold of scale, is fitted by maximum likelihood on the backtest's held-out errors (a
systematic level error at a distance counts as spread there, so the interval covers it), then
scaled by one split-conformal step so that +-1 std covers the held-out runs as a Gaussian would
(68%). One parameter on purpose: backtests hold out a few sizes, at a few distances, and cannot
tell a floor from a slope; the slope is what makes a 10x extrapolation less certain than a 2x.

Where the study has one model size, no size can be held out and the std stays the model's own
(:attr:`Calibration.fitted` is False; callers say so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

#: the share of held-out runs a +-1 std Gaussian interval holds
TARGET_1STD = 0.6827


@dataclass(frozen=True)
class Calibration:
    """Fitted widening of one model's std (module docstring); identity where not ``fitted``."""

    tau1: float = 0.0
    fitted: bool = False
    n: int = 0  # held-out predictions it was fitted on
    d_max: float = 0.0  # the largest distance among them
    coverage_1std: float | None = None  # of the calibrated std on those predictions
    coverage_2std: float | None = None
    note: str = ""

    def apply(self, mean: np.ndarray, std: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Calibrated std at predictions ``mean``/``std`` a distance ``d`` beyond the data."""
        mean, std, d = (np.asarray(a, float) for a in (mean, std, d))
        if not self.fitted:
            return std
        rel = self.tau1 * np.maximum(d, 0.0)
        return np.sqrt(np.nan_to_num(std) ** 2 + (np.abs(mean) * rel) ** 2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def describe(self) -> str:
        if not self.fitted:
            return self.note or "not calibrated"
        return (f"std widened by {self.tau1:.2%} of the prediction per e-fold of scale beyond the data "
                f"(fitted on {self.n} held-out runs up to {math.exp(self.d_max):.1f}x beyond; +-1 std then holds "
                f"{self.coverage_1std:.0%}, +-2 std {self.coverage_2std:.0%})")


def distance(model_params: np.ndarray, length: np.ndarray | None, max_params: float,
             max_length: float | None) -> np.ndarray:
    """Extrapolation distance (module docstring): log of how far (size x length) lies beyond
    the largest fitted size and length, 0 inside."""
    d = np.maximum(np.log(np.asarray(model_params, float) / float(max_params)), 0.0)
    if length is not None and max_length:
        ln = np.log(np.asarray(length, float) / float(max_length))
        d = d + np.maximum(np.nan_to_num(ln, nan=0.0), 0.0)
    return d


def fit_calibration(d: np.ndarray, obs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> Calibration:
    """The widening ``tau1`` from held-out (distance, observed, predicted mean, std): maximum
    likelihood, then one split-conformal step so that +-1 std holds 68% of them."""
    from scipy.optimize import minimize_scalar

    d, obs, mean, std = (np.asarray(a, float) for a in (d, obs, mean, std))
    ok = np.isfinite(d) & np.isfinite(obs) & np.isfinite(mean)
    d, obs, mean, std = np.maximum(d[ok], 0.0), obs[ok], mean[ok], np.nan_to_num(std[ok])
    if len(d) < 3:
        return Calibration(note=f"too few held-out predictions to calibrate ({len(d)})")
    if not (d > 0).any():
        return Calibration(note="the held-out predictions lie within the fitted scales: nothing to calibrate")
    e2 = (obs - mean) ** 2
    am = np.maximum(np.abs(mean), 1e-12)
    rel = np.sqrt(e2) / am

    def nll(log_t1):
        var = std ** 2 + (am * math.exp(log_t1) * d) ** 2 + 1e-24
        return 0.5 * float(np.sum(np.log(var) + e2 / var))

    guess = float(np.sqrt(np.mean(rel[d > 0] ** 2)) / np.sqrt(np.mean(d[d > 0] ** 2)))
    r = minimize_scalar(nll, bounds=(math.log(max(guess, 1e-9)) - 12, math.log(max(guess, 1e-9)) + 6),
                        method="bounded")
    # the std must grow with the distance even where the model's own std happened to cover the
    # backtest: the distance term explains at least half the held-out relative RMS error
    t1 = max(math.exp(r.x), 0.5 * guess)
    cal = Calibration(tau1=t1, fitted=True)
    # one split-conformal step: scale tau1 so that +-1 std holds TARGET_1STD of the held-out runs
    # (never below the floor above, never narrower than the model's own std)
    z = np.sqrt(e2) / np.maximum(cal.apply(mean, std, d), 1e-18)
    q = float(np.quantile(z, TARGET_1STD))
    if np.isfinite(q) and q > 0:
        cal = Calibration(tau1=max(t1 * q, 0.5 * guess), fitted=True)
    s = cal.apply(mean, std, d)
    err = np.sqrt(e2)
    return Calibration(tau1=float(cal.tau1), fitted=True, n=int(len(d)), d_max=float(d.max()),
                       coverage_1std=float(np.mean(err <= s)), coverage_2std=float(np.mean(err <= 2 * s)))


def calibration_from_backtest(predictions: pd.DataFrame, model: str) -> Calibration:
    """The calibration of ``model`` from a backtest's held-out predictions (their ``distance``
    beyond the fitted runs, else log(held-out size / cut))."""
    p = predictions[predictions["model"] == model]
    if p.empty or not p["pred_mean"].notna().any():
        return Calibration(note=f"no backtest predictions of {model}")
    d = (p["distance"].to_numpy(float) if "distance" in p.columns
         else np.log(p["model_params"].to_numpy(float) / p["cut"].to_numpy(float)))
    return fit_calibration(d, p["observed"], p["pred_mean"], p["pred_std"])
