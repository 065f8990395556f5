"""The one Matern-5/2 kernel of mixplan's GP: a product of Matern-5/2 factors over column groups.

MFMS-GP's inputs are ``[w_1..w_K, u_m, u_z]`` (:class:`engine.models.base.Encoding`); its kernel
is ``s^2 * k_w(w) * k_m(u_m) * k_z(u_z)``, each factor a Matern-5/2 correlation (ARD over the K
mixture weights). Every place that evaluates it (the marginal likelihood while the
hyperparameters are learned, the posterior, its structured fast path) calls the functions
here, so there is one implementation of the formula:

    matern52(d) = (1 + d + d^2 / 3) exp(-d),   d = sqrt(5) * |(a - b) / lengthscale|

and the product over groups uses one ``exp`` of the summed distances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, ScaleKernel
from gpytorch.priors import GammaPrior, LogNormalPrior

DTYPE = torch.float64
SQRT5 = math.sqrt(5.0)


def scaled_distance(A: torch.Tensor, B: torch.Tensor, lengthscale: torch.Tensor, *, diag: bool = False) -> torch.Tensor:
    """``sqrt(5) |(a - b) / lengthscale|`` between the rows of A (..., q, d) and B (..., r, d)
    (all pairs, (..., q, r)), or between paired rows (``diag``: A and B of the same shape,
    (..., q)). One column: the absolute difference (exact at a = b, with a zero gradient);
    several: the expanded square, clamped before the square root (as GPyTorch does)."""
    a, b = A / lengthscale, B / lengthscale
    if diag:
        d = ((a - b) ** 2).sum(-1).clamp_min(1e-30).sqrt()
    elif a.shape[-1] == 1:
        d = (a - b.transpose(-1, -2)).abs()
    else:
        d2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2.0 * a @ b.transpose(-1, -2)
        d = d2.clamp_min(1e-30).sqrt()
    return d * SQRT5


def matern52(d: torch.Tensor) -> torch.Tensor:
    """The Matern-5/2 correlation at scaled distance ``d`` (from :func:`scaled_distance`)."""
    return (1.0 + d * (1.0 + d / 3.0)) * torch.exp(-d)


def product_matern52(A: torch.Tensor, B: torch.Tensor, lengthscale: torch.Tensor, groups: Sequence[slice], *,
                     diag: bool = False) -> torch.Tensor:
    """The product over column ``groups`` of Matern-5/2 correlations (no output scale):
    ``prod_g (1 + d_g + d_g^2 / 3) * exp(-sum_g d_g)``. ``lengthscale`` has one entry per
    column."""
    poly = dsum = None
    for g in groups:
        d = scaled_distance(A[..., g], B[..., g], lengthscale[g], diag=diag)
        p = 1.0 + d * (1.0 + d / 3.0)
        poly = p if poly is None else poly * p
        dsum = d if dsum is None else dsum + d
    return poly * torch.exp(-dsum)


def mfms_groups(K: int) -> tuple[slice, slice, slice]:
    """The column groups of MFMS-GP's inputs: the K weights, u_m, u_z."""
    return slice(0, K), slice(K, K + 1), slice(K + 1, K + 2)


def make_kernel(K: int):
    """``ScaleKernel(ProductMatern52Kernel)`` over ``[w_1..w_K, u_m, u_z]`` with MFMS-GP's priors:
    lengthscales log-normal around 0.5 (weights) and 1 (the scale axes, whose training values
    span [0, 1]), at least 1e-3; the output scale Gamma(2, 0.5)."""
    return ScaleKernel(ProductMatern52Kernel(K), outputscale_prior=GammaPrior(2.0, 0.5)).to(DTYPE)


class ProductMatern52Kernel(Kernel):
    """GPyTorch's view of :func:`product_matern52` (what the marginal likelihood is maximised
    through): one lengthscale per input column, in the groups of :func:`mfms_groups`."""

    has_lengthscale = True

    def __init__(self, K: int) -> None:
        loc = torch.tensor([math.log(0.5)] * K + [0.0, 0.0], dtype=DTYPE)
        super().__init__(ard_num_dims=K + 2, lengthscale_prior=LogNormalPrior(loc, torch.ones(K + 2, dtype=DTYPE)),
                         lengthscale_constraint=GreaterThan(1e-3))
        self.K = K
        self.groups = mfms_groups(K)

    def forward(self, x1, x2, diag: bool = False, last_dim_is_batch: bool = False, **params):
        if last_dim_is_batch:  # pragma: no cover - never asked by mixplan
            raise NotImplementedError("ProductMatern52Kernel has no last_dim_is_batch mode")
        return product_matern52(x1, x2, self.lengthscale.reshape(-1), self.groups, diag=diag)
