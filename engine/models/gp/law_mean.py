"""A parametric data-mixing law as MFMS-GP's prior mean: ``mfms-gp`` with ``mean="dmsl"``.

Far beyond its runs a GP reverts to its prior mean, so at a target larger than any run the mean
*is* the level of the prediction, and the kernel's job is the residual near the data. With
``mean="dmsl"`` the mean is the DMSL law (Shukor et al. 2025, :mod:`engine.models.dmsl`) fitted
by least squares on the GP's design before the kernel's hyperparameters, and held fixed
(``learnable = False``: the marginal likelihood trades a law's extrapolation for in-sample fit
if it may move it). The GP then extrapolates in level like the law and corrects the ranking
where the runs show the law wrong. Whether that beats the law alone is a per-study question:
``auto`` backtests ``mfms-gp-law`` beside ``dmsl`` and keeps the better (README, "Which model to
trust").
"""

from __future__ import annotations

import numpy as np
import torch

from engine.models.gp.means import GPMean, register_mean


@register_mean("dmsl")
class DMSLMean(GPMean):
    """The DMSL law (additive form) on the GP's design, fixed (module docstring)."""

    learnable = False
    form = "additive"

    def __init__(self, K: int) -> None:
        super().__init__()
        self.K = K
        self.law_ = None

    def n_params(self, K: int) -> int:
        return 2 * K + 5

    def initialise(self, X: np.ndarray, y: np.ndarray, *, warm, keep) -> None:
        from engine.models.dmsl import DMSL, _Law

        enc = self.encoding_
        K = X.shape[1] - 2
        W = X[:, :K]
        m = np.exp(X[:, K] * enc.log_m_span + enc.log_m_lo)
        z = np.exp(X[:, K + 1] * enc.log_z_span + enc.log_z_lo)
        if warm is not None and keep and warm.law_ is not None:
            self.law_, self.log_n0_, self.log_d0_ = warm.law_, warm.log_n0_, warm.log_d0_
            return
        model = DMSL(form=self.form, per_domain=False)
        model.maximize_ = self.objective_.startswith("metric_")
        model.row_weight_ = np.ones(len(y))
        self.log_n0_, self.log_d0_ = float(np.mean(np.log(m))), float(np.mean(np.log(z)))
        model.log_n0_, model.log_d0_ = self.log_n0_, self.log_d0_
        use_n, use_d = bool(np.ptp(np.log(m)) > 0), bool(np.ptp(np.log(z)) > 0)
        law = _Law(K, self.form, use_n, use_d, model.ridge, model.prior)
        law.sign = -1.0 if model.maximize_ else 1.0
        model._fit_law(law, W, np.log(m) - self.log_n0_, np.log(z) - self.log_d0_, law.sign * y, "the GP's mean")
        self.law_ = law

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        K = self.K
        m, z = self.scales(X)
        return self.law_.torch_value(X[..., :K], torch.log(m) - self.log_n0_, torch.log(z) - self.log_d0_)
