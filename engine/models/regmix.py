"""RegMix (Liu et al. 2024): gradient-boosted regression from mixture to loss, on many small runs.

Features: the K mixture weights, plus ``u_m`` and ``u_z`` (log size / log length, see
:class:`engine.models.base.Encoding`) so one regressor covers every scale in the table (they are
constant, hence unused, when all runs share one scale, as in the paper's 1M-parameter proxies).
LightGBM with the paper's settings (gbdt, regression objective, 1,000 rounds, learning rate
0.01). ``pred_std`` is 0: the regressor gives no uncertainty.

Optimum, as in the paper: score many random mixtures (``n_samples`` Dirichlet draws; the paper
uses more, raise it where time allows; plus the
observed ones) at the requested scale and average the ``top_k`` best; the average is projected
onto the bounds.
"""

from __future__ import annotations

import numpy as np

from engine.models.base import LossModel, Prepared, project_simplex, sample_simplex


class RegMix(LossModel):
    """LightGBM regression of the objective on [w, u_m, u_z]."""

    name = "regmix"
    smooth = False

    def __init__(self, *, n_estimators: int = 1000, learning_rate: float = 0.01, num_leaves: int = 31,
                 min_child_samples: int = 5, n_samples: int = 20_000, top_k: int = 100, seed: int = 42,
                 n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_samples = n_samples
        self.top_k = top_k
        self.seed = seed
        self.n_jobs = n_jobs

    def n_params(self, K: int) -> int:
        return K + 1

    def _fit(self, prep: Prepared, *, warm_start=None) -> None:
        import lightgbm as lgb

        X = self.encoding_.encode(prep.W, prep.m, prep.z)
        self.regressor_ = lgb.LGBMRegressor(
            objective="regression", boosting_type="gbdt", n_estimators=self.n_estimators,
            learning_rate=self.learning_rate, num_leaves=self.num_leaves,
            min_child_samples=min(self.min_child_samples, max(1, len(X) // 4)), random_state=self.seed,
            n_jobs=self.n_jobs, verbose=-1)
        self.regressor_.fit(X, prep.y)
        self.observed_mixtures_ = np.unique(prep.W[prep.final_rows()].round(6), axis=0)

    def _predict_arrays(self, W, m, z):
        X = self.encoding_.encode(W, m, z)
        if len(X) == 0:
            return np.zeros(0), np.zeros(0)
        return self.regressor_.predict(X), np.zeros(len(X))

    def _optimize(self, m, z, bounds, sign):
        rng = np.random.default_rng(self.seed)
        K = len(self.domains_)
        C = np.vstack([sample_simplex(self.n_samples, K, bounds, rng, 1.0),
                       project_simplex(self.observed_mixtures_, bounds)])
        v = sign * self._predict_arrays(C, np.full(len(C), m), np.full(len(C), z))[0]
        top = np.argsort(v)[: self.top_k]
        return project_simplex(C[top].mean(axis=0)[None], bounds)[0]
