"""The acquisition functions of the GP strategies, as BoTorch ``AcquisitionFunction`` objects
over the fitted GP (:class:`engine.models.gp.model.GPModel`): every value comes from the model's
``posterior``; nothing here evaluates a kernel or factors a covariance.

Inputs are the GP's encoded points ``[w_1..w_K, u_m, u_z]``: a mixture at a fidelity (model
size, steps). Both functions take X of shape (b, 1, K + 2) in ``forward`` (what
``optimize_acqf`` calls) and, for screening many mixtures at every fidelity at once, a grid
(..., F, K + 2) in :meth:`terms`, scored through one joint posterior per mixture.

- :class:`AugmentedEI` (Huang et al. 2006, over size and steps): the improvement is measured
  where it matters, at the target fidelity against the target's incumbent, and a run at a
  cheaper fidelity is worth what it tells about the target, its posterior correlation with the
  target point of the same mixture::

      log EI_target(w) + p * log corr(f(w, fidelity), f(w, target))

  (p = ``corr_power``: 1 is Huang's form, 2 the share of the target's variance the observation
  explains). The search subtracts ``log(cost / target cost)``.
- :class:`FidelityLogEI`: log EI at the point itself against that fidelity's own incumbent
  (optionally plus log corr with the target point); the search subtracts ``log cost``.

Log EI is BoTorch's numerically stable form (:func:`engine.models.gp.compat.log_ei`).
"""

from __future__ import annotations

import torch
from botorch.acquisition import AcquisitionFunction

from engine.models.gp.compat import log_ei

#: correlations are clamped to [CORR_MIN, 1] before the log
CORR_MIN = 1e-6


def at_target(X: torch.Tensor, target: tuple[float, float]) -> torch.Tensor:
    """X with its (u_m, u_z) columns set to the target's."""
    Xt = X.clone()
    Xt[..., -2] = target[0]
    Xt[..., -1] = target[1]
    return Xt


def _with_target(model, X: torch.Tensor, target: tuple[float, float]):
    """The joint posterior at the F points of X (..., F, d) and, last, the target point of the
    first one's mixture: (mean (..., F+1), var (..., F+1), cov with the target (..., F))."""
    Xt = at_target(X[..., :1, :], target)
    post = model.posterior(torch.cat([X, Xt], dim=-2))
    cov = post.mvn.covariance_matrix
    var = torch.diagonal(cov, dim1=-2, dim2=-1)
    return post.mean.squeeze(-1), var, cov[..., :-1, -1]


def _log_corr(var: torch.Tensor, cov_t: torch.Tensor) -> torch.Tensor:
    """log corr of each of the F points with the target (last of ``var``)."""
    vt = var[..., -1:].clamp_min(1e-18)
    vf = var[..., :-1].clamp_min(1e-18)
    return torch.log((cov_t / (vf.sqrt() * vt.sqrt())).clamp(CORR_MIN, 1.0))


class AugmentedEI(AcquisitionFunction):
    """``log EI_target(w) + p log corr(f(x), f(x_target))`` (module docstring). ``target`` is the
    target's (u_m, u_z); ``best_f`` the target incumbent's value (objective units)."""

    def __init__(self, model, best_f: float, target: tuple[float, float], *, maximize: bool,
                 corr_power: float = 1.0) -> None:
        super().__init__(model=model)
        self.best_f = float(best_f)
        self.target = (float(target[0]), float(target[1]))
        self.maximize = bool(maximize)
        self.corr_power = float(corr_power)

    def terms(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log EI at the target (...,), log corr (..., F)) for X (..., F, d): F fidelities of one
        mixture per batch entry (its first point's mixture is the one judged at the target).
        A point at the target itself has log corr 0."""
        mean, var, cov_t = _with_target(self.model, X, self.target)
        lei_t = log_ei(mean[..., -1], var[..., -1].clamp_min(1e-18).sqrt(), self.best_f, self.maximize)
        lcorr = _log_corr(var, cov_t)
        is_t = (X[..., -2] == self.target[0]) & (X[..., -1] == self.target[1])
        return lei_t, torch.where(is_t, torch.zeros_like(lcorr), lcorr)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        lei_t, lcorr = self.terms(X)
        return lei_t + self.corr_power * lcorr[..., 0]


class FidelityLogEI(AcquisitionFunction):
    """``log EI(f(x))`` against ``best_f`` (objective units), plus ``log corr(f(x), f(x_target))``
    where ``target`` (the target's (u_m, u_z)) is given (module docstring)."""

    def __init__(self, model, best_f, *, maximize: bool, target: tuple[float, float] | None = None) -> None:
        super().__init__(model=model)
        self.best_f = torch.as_tensor(best_f, dtype=torch.float64)
        self.maximize = bool(maximize)
        self.target = None if target is None else (float(target[0]), float(target[1]))

    def terms(self, X: torch.Tensor) -> torch.Tensor:
        """log EI (+ log corr) at every point of X (..., F, d), point j against ``best_f[j]``."""
        if self.target is None:
            post = self.model.posterior(X.unsqueeze(-2))
            mean, sd = post.mean.reshape(X.shape[:-1]), post.variance.reshape(X.shape[:-1]).sqrt()
            return log_ei(mean, sd, self.best_f, self.maximize)
        mean, var, cov_t = _with_target(self.model, X, self.target)
        lei = log_ei(mean[..., :-1], var[..., :-1].clamp_min(1e-18).sqrt(), self.best_f, self.maximize)
        return lei + _log_corr(var, cov_t)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.terms(X)[..., 0]


__all__ = ["AugmentedEI", "FidelityLogEI", "at_target", "log_ei"]
