"""Data Mixing Laws (Ye et al. 2024): ``L(r) = c + k * exp(sum_j t_j r_j)`` for one objective.

Fitted by nonlinear least squares (scipy, several starts). Our extension for tables that span
scales: where the training rows vary in size and/or length, the exponent also gets
``a_m * u_m + a_z * u_z`` (log size / log length, :class:`engine.models.base.Encoding`), i.e.
the mixture effect and the scale trend multiply; an axis the data does not vary is left out.
``k`` may be negative (an objective that rises with a domain's share, such as accuracy).
Since the weights sum to 1, ``k`` and a common shift of the ``t_j`` are one degree of freedom;
a small ridge on ``t`` picks one. ``pred_std`` is the residual std of the fit (constant).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from engine.models.base import LossModel, Prepared


class MixingLaw(LossModel):
    """Exponential mixing law per objective, optionally with scale terms."""

    name = "mixing-law"

    def __init__(self, *, n_starts: int = 6, ridge: float = 1e-6, seed: int = 0):
        self.n_starts = n_starts
        self.ridge = ridge
        self.seed = seed

    def n_params(self, K: int) -> int:
        return K + 2

    def _features(self, W, m, z):
        U = self.encoding_.encode(W, m, z)
        return np.column_stack([U[:, :-2], U[:, -2:][:, self.axes_]])

    def _f(self, p, F):
        c, k = p[0], p[1]
        return c + k * np.exp(np.clip(F @ p[2:], -50, 50))

    def _fit(self, prep: Prepared, *, warm_start=None) -> None:
        U = self.encoding_.encode(prep.W, prep.m, prep.z)
        self.axes_ = np.array([np.ptp(U[:, -2]) > 0, np.ptp(U[:, -1]) > 0])
        F = self._features(prep.W, prep.m, prep.z)
        y = prep.y
        rng = np.random.default_rng(self.seed)
        d = F.shape[1]
        lam = np.sqrt(self.ridge)
        best = None
        spread = float(np.ptp(y)) or 1.0
        for s in range(self.n_starts):
            for sign in (1.0, -1.0):
                t0 = rng.normal(0, 0.5, d) if s else np.zeros(d)
                p0 = np.concatenate([[y.min() - 0.1 * spread if sign > 0 else y.max() + 0.1 * spread,
                                      sign * 0.5 * spread], t0])

                def res(p):
                    return np.concatenate([self._f(p, F) - y, lam * p[2:]])

                def jac(p):
                    e = np.exp(np.clip(F @ p[2:], -50, 50))
                    J = np.column_stack([np.ones(len(F)), e, p[1] * e[:, None] * F])
                    R = np.zeros((d, d + 2))
                    R[:, 2:] = lam * np.eye(d)
                    return np.vstack([J, R])

                try:
                    r = least_squares(res, p0, jac=jac, method="trf", max_nfev=500)
                except (ValueError, FloatingPointError):
                    continue
                if best is None or r.cost < best.cost:
                    best = r
        self.params_ = best.x
        resid = self._f(best.x, F) - y
        self.sigma_ = float(np.sqrt((resid ** 2).sum() / max(1, len(y) - len(best.x))))
        self.c_, self.k_, self.t_ = float(best.x[0]), float(best.x[1]), best.x[2:]

    def _predict_arrays(self, W, m, z):
        F = self._features(W, m, z)
        return self._f(self.params_, F), np.full(len(F), self.sigma_)
