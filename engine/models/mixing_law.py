"""Data Mixing Laws (Ye et al. 2024): ``L(r) = c + k * exp(sum_j t_j r_j)`` for one objective.

Fitted by nonlinear least squares (scipy, several starts, each screened with a small budget and
the best carried on to convergence). Our extension for tables that span
scales: where the training rows vary in size and/or length, the exponent also gets
``a_m * u_m + a_z * u_z`` (log size / log length, :class:`engine.models.base.Encoding`), i.e.
the mixture effect and the scale trend multiply; an axis the data does not vary is left out.
``k`` may be negative (an objective that rises with a domain's share, such as accuracy).
Since the weights sum to 1, ``k`` and a common shift of the ``t_j`` are one degree of freedom;
a small ridge on ``t`` picks one. Parameters: ``K + 2`` plus one per varied scale axis.

``mean_loss``: as in the paper, one law per validation domain ``L_i(r)`` (each loss column
fitted on its own), and the prediction is their mean. One exponential fitted to the average
cannot represent a sum of exponentials with different signs and rates. ``pred_std`` is the
residual std of the fit (constant); for ``mean_loss`` the residual std of the averaged
prediction against the observed mean loss, so correlated domain errors are counted as they
are (neither the mean of the per-domain stds, which assumes perfect correlation, nor their
root-mean-square / sqrt(n_domains), which assumes none).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from engine.errors import ValidationError
from engine.models.base import LossModel, Prepared

#: evaluations each start gets before the best one is carried on to :data:`MAX_NFEV`: starts that
#: converge do so in 10-20; a start with the wrong sign of ``k`` drifts (k -> 0, t -> inf) and
#: used all 500, which made up ~95% of a fit's time on a 500-run study
SCREEN_NFEV = 60
MAX_NFEV = 500


class MixingLaw(LossModel):
    """Exponential mixing law per objective (per loss column for ``mean_loss``), optionally with
    scale terms."""

    name = "mixing-law"

    def __init__(self, *, n_starts: int = 6, ridge: float = 1e-6, seed: int = 0):
        self.n_starts = n_starts
        self.ridge = ridge
        self.seed = seed

    def n_params(self, K: int) -> int:
        return K + 2

    def n_params_for(self, prep: Prepared) -> int:
        """``K + 2`` plus one exponent per scale axis (size, length) the table varies."""
        return self.n_params(len(prep.domains)) + int(np.ptp(np.log(prep.m)) > 0) + int(np.ptp(np.log(prep.z)) > 0)

    def _features(self, W, m, z):
        U = self.encoding_.encode(W, m, z)
        return np.column_stack([U[:, :-2], U[:, -2:][:, self.axes_]])

    @staticmethod
    def _f(p, F):
        c, k = p[0], p[1]
        return c + k * np.exp(np.clip(F @ p[2:], -50, 50))

    def _fit_one(self, F: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, float]:
        """(params, residual std) of one law on features F; several starts of both signs of k."""
        rng = np.random.default_rng(self.seed)
        d = F.shape[1]
        lam = np.sqrt(self.ridge)
        best = None
        spread = float(np.ptp(y)) or 1.0

        def res(p):
            return np.concatenate([self._f(p, F) - y, lam * p[2:]])

        def jac(p):
            e = np.exp(np.clip(F @ p[2:], -50, 50))
            J = np.column_stack([np.ones(len(F)), e, p[1] * e[:, None] * F])
            R = np.zeros((d, d + 2))
            R[:, 2:] = lam * np.eye(d)
            return np.vstack([J, R])

        errors = []

        def solve(p0, budget):
            try:
                r = least_squares(res, p0, jac=jac, method="trf", max_nfev=budget)
            except (ValueError, FloatingPointError) as exc:
                errors.append(str(exc))
                return None
            self.nfev_ += r.nfev
            return r

        for s in range(self.n_starts):
            for sign in (1.0, -1.0):
                t0 = rng.normal(0, 0.5, d) if s else np.zeros(d)
                p0 = np.concatenate([[y.min() - 0.1 * spread if sign > 0 else y.max() + 0.1 * spread,
                                      sign * 0.5 * spread], t0])
                r = solve(p0, SCREEN_NFEV)
                if r is not None and np.isfinite(r.x).all() and (best is None or r.cost < best.cost):
                    best = r
        if best is not None and best.status == 0:  # the best start ran out of its budget: go on
            r = solve(best.x, MAX_NFEV)
            if r is not None and np.isfinite(r.x).all() and r.cost <= best.cost:
                best = r
        if best is None:
            raise ValidationError(
                f"the mixing law for {what} could not be fitted: all {2 * self.n_starts} least-squares starts "
                f"failed ({errors[0] if errors else 'non-finite parameters'}).",
                fix="check the objective for extreme values, or use another model (e.g. 'regmix').")
        resid = self._f(best.x, F) - y
        sigma = float(np.sqrt((resid ** 2).sum() / max(1, len(y) - len(best.x))))
        return best.x, sigma

    def _fit(self, prep: Prepared, *, warm_start=None) -> None:
        self.nfev_ = 0  # residual evaluations of every start (the fit's cost)
        U = self.encoding_.encode(prep.W, prep.m, prep.z)
        self.axes_ = np.array([np.ptp(U[:, -2]) > 0, np.ptp(U[:, -1]) > 0])
        F = self._features(prep.W, prep.m, prep.z)
        if prep.objective == "mean_loss" and prep.parts:
            # one law per loss column (Ye et al.: L_i per validation domain), averaged
            self.laws_ = {c: self._fit_one(F, y, c)[0] for c, y in prep.parts.items()}
            mu = np.mean([self._f(p, F) for p in self.laws_.values()], axis=0)
            p = F.shape[1] + 2
            self.sigma_ = float(np.sqrt(((mu - prep.y) ** 2).sum() / max(1, len(prep.y) - p)))
            self.params_ = None
            return
        self.laws_ = None
        self.params_, self.sigma_ = self._fit_one(F, prep.y, prep.objective)
        self.c_, self.k_, self.t_ = float(self.params_[0]), float(self.params_[1]), self.params_[2:]

    def _predict_arrays(self, W, m, z):
        F = self._features(W, m, z)
        if self.laws_:
            mu = np.mean([self._f(p, F) for p in self.laws_.values()], axis=0) if len(F) else np.zeros(0)
        else:
            mu = self._f(self.params_, F)
        return mu, np.full(len(F), self.sigma_)
