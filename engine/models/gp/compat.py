"""The two places mixplan leans on an underscore name of BoTorch / GPyTorch, and nowhere else.

Each is pinned by a test (``tests/test_models_gp.py``) against the public behaviour it stands
for, so a library upgrade that changes one fails there, by name, instead of somewhere deep in a
proposal:

- :func:`gaussian_likelihood`: GPyTorch's ``_GaussianLikelihoodBase`` with our own noise model
  (GPyTorch's public Gaussian likelihoods are homoskedastic or fixed-noise; MFMS-GP's noise is
  learned and differs per point). It is exported in ``gpytorch.likelihoods.__all__``.
- :func:`log_h`: BoTorch's numerically stable ``log(phi(u) + u Phi(u))``, the heart of
  ``LogExpectedImprovement``, for scores computed from a posterior's mean and standard
  deviation directly (thousands of (mixture, fidelity) pairs at once, with the correlation term
  of the augmented EI). The test checks :func:`log_ei` against ``LogExpectedImprovement``.
"""

from __future__ import annotations

import torch


def gaussian_likelihood(noise_covar):
    """A Gaussian likelihood whose noise model is ``noise_covar`` (a GPyTorch ``Noise``)."""
    from gpytorch.likelihoods import _GaussianLikelihoodBase

    return _GaussianLikelihoodBase(noise_covar=noise_covar)


def log_h(u: torch.Tensor) -> torch.Tensor:
    """``log(phi(u) + u Phi(u))``, stable for very negative ``u`` (BoTorch's helper)."""
    from botorch.acquisition.analytic import _log_ei_helper

    return _log_ei_helper(u)


def log_ei(mean: torch.Tensor, sd: torch.Tensor, best_f, maximize: bool) -> torch.Tensor:
    """Log expected improvement over ``best_f`` of a Gaussian (mean, sd), elementwise (the
    formula of BoTorch's ``LogExpectedImprovement``; sd clamped at 1e-12)."""
    sd = sd.clamp_min(1e-12)
    u = (mean - best_f) / sd if maximize else (best_f - mean) / sd
    return log_h(u) + torch.log(sd)
