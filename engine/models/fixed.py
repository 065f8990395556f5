"""Fixed-mixture baselines: ``uniform`` (1/K each) and ``natural`` (token-proportional).

Their optimum is the fixed mixture itself (projected onto the bounds). To answer ``predict`` at
any scale they fit a mixture-agnostic curve of the objective in (u_m, u_z) (least squares on
``[1, u_m, u_z, u_m * u_z]``, see :class:`engine.models.base.Encoding`); ``pred_std`` is the
residual std of that fit, i.e. how much the objective varies with the mixture at a scale.

``natural`` needs the domains' sizes (tokens available per domain): pass ``domain_sizes``
(``{domain: tokens}``). Without it the natural mixture defaults to the mean mixture of the
observed runs, a stand-in that is only "natural" where the runs were drawn around it.
"""

from __future__ import annotations

import numpy as np

from engine.errors import ValidationError
from engine.models.base import LossModel, Prepared, project_simplex


def _scale_features(U: np.ndarray) -> np.ndarray:
    um, uz = U[:, -2], U[:, -1]
    return np.column_stack([np.ones(len(U)), um, uz, um * uz])


class _ScaleCurve:
    """Least squares of y on [1, u_m, u_z, u_m u_z], dropping axes the data does not vary."""

    def fit(self, U: np.ndarray, y: np.ndarray) -> "_ScaleCurve":
        F = _scale_features(U)
        self.mask_ = np.array([True, np.ptp(U[:, -2]) > 0, np.ptp(U[:, -1]) > 0,
                               np.ptp(U[:, -2]) > 0 and np.ptp(U[:, -1]) > 0])
        self.coef_, *_ = np.linalg.lstsq(F[:, self.mask_], y, rcond=None)
        r = y - F[:, self.mask_] @ self.coef_
        dof = max(1, len(y) - int(self.mask_.sum()))
        self.sigma_ = float(np.sqrt((r ** 2).sum() / dof))
        return self

    def __call__(self, U: np.ndarray) -> np.ndarray:
        return _scale_features(U)[:, self.mask_] @ self.coef_


class FixedMixture(LossModel):
    """Base of the fixed-mixture baselines."""

    smooth = False

    def _mixture(self, prep: Prepared) -> np.ndarray:
        raise NotImplementedError

    def _fit(self, prep: Prepared, *, warm_start=None) -> None:
        self.mixture_ = self._mixture(prep)
        U = self.encoding_.encode(prep.W, prep.m, prep.z)
        self.curve_ = _ScaleCurve().fit(U, prep.y)

    def _predict_arrays(self, W, m, z):
        U = self.encoding_.encode(W, m, z)
        return self.curve_(U), np.full(len(U), self.curve_.sigma_)

    def _optimize(self, m, z, bounds, sign):
        return project_simplex(self.mixture_[None], bounds)[0]

    @property
    def weights_(self) -> dict[str, float]:
        return {d: float(x) for d, x in zip(self.domains_, self.mixture_)}


class Uniform(FixedMixture):
    """Every domain weighted 1/K."""

    name = "uniform"

    def _mixture(self, prep):
        K = len(prep.domains)
        return np.full(K, 1.0 / K)


class Natural(FixedMixture):
    """Weights proportional to each domain's size (``domain_sizes``, tokens per domain)."""

    name = "natural"

    def __init__(self, domain_sizes: dict[str, float] | None = None):
        self.domain_sizes = domain_sizes

    def _mixture(self, prep):
        if self.domain_sizes is None:
            self.note_ = "domain_sizes not given: the natural mixture is the mean mixture of the observed runs."
            w = prep.W[prep.final_rows()].mean(axis=0)
            return w / w.sum()
        missing = [d for d in prep.domains if d not in self.domain_sizes]
        if missing:
            raise ValidationError(f"domain_sizes lacks {', '.join(missing)}.",
                                  fix="give a token count for every domain of the study.")
        s = np.array([float(self.domain_sizes[d]) for d in prep.domains])
        if (s < 0).any() or s.sum() <= 0:
            raise ValidationError("domain_sizes must be >= 0 with a positive total.")
        self.note_ = "token-proportional to domain_sizes."
        return s / s.sum()
