"""The fitted MFMS-GP as a BoTorch ``Model``: its :meth:`GPModel.posterior` is the one source of
predictions (the loss model's ``predict``, the strategies' acquisitions and incumbents, the
kriging believer), computed from one Cholesky factor of the training covariance.

Why not BoTorch's ``SingleTaskGP`` for prediction: its lazy-tensor path re-derives the
covariance's factor per call and is several times slower here, and MFMS-GP's training points
have a structure worth using: n points take only R distinct mixtures (a run's points share its
w) and P distinct (size, length) pairs, so with the product kernel
``k(x, x_i) = s^2 k_w(w, W[r_i]) k_mz(u, MZ[p_i])``, each Matern factor is evaluated against
the distinct values only and gathered, and the posterior mean alone is
``sum_{r,p} k_w[r] k_mz[p] A[r, p]`` (``A``: the sums of alpha per (mixture, pair)), O(R P)
per row instead of O(n) (at 100k query rows the direct kernel was 2/3 of the prediction time).
``SingleTaskGP`` is still the vehicle of the marginal likelihood while the hyperparameters are
learned (:mod:`engine.models.gp.fitting`); both evaluate the same kernel
(:mod:`engine.models.gp.kernel`).

Units: the posterior is in the objective's units (targets standardised inside); inputs are the
encoded ``[w_1..w_K, u_m, u_z]``. ``posterior(X)`` for X of shape (..., q, K + 2) is the joint
Gaussian over the q points of each batch (q = 1: the marginals, O(n^2) per point, the mean
O(n)); ``gpytorch.settings.skip_posterior_variances`` skips the variances. A covariance that
no jitter up to 1e-2 makes positive definite raises :class:`~engine.errors.ValidationError`
(at fit time and when conditioning alike).
"""

from __future__ import annotations

import gpytorch
import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator

from engine.errors import ValidationError
from engine.models.gp.kernel import product_matern52, scaled_distance

DTYPE = torch.float64
#: the largest jitter tried before a covariance counts as not positive definite
MAX_JITTER = 1e-2


def cholesky(Kmat: torch.Tensor, what: str) -> tuple[torch.Tensor, float]:
    """Lower Cholesky factor of ``Kmat`` and the jitter it needed (0, else 1e-8, 1e-7, ... up to
    :data:`MAX_JITTER` on the diagonal); a ValidationError naming ``what`` when none works."""
    L, info = torch.linalg.cholesky_ex(Kmat)
    jitter, used = 1e-8, 0.0
    eye = None
    while int(info) != 0 and jitter <= MAX_JITTER:
        eye = torch.eye(Kmat.shape[-1], dtype=Kmat.dtype) if eye is None else eye
        L, info = torch.linalg.cholesky_ex(Kmat + jitter * eye)
        used = jitter
        jitter *= 10
    if int(info) != 0:
        raise ValidationError(
            f"mfms-gp: {what} is not positive definite even with a jitter of 1e-2 of the prior variance "
            f"(Cholesky failed at column {int(info)}).",
            fix="check the table for duplicated runs with different losses or extreme values, raise "
                "noise_floor (e.g. 1e-4), or refit with another seed.")
    return L, used


class GPModel(Model):
    """A fitted MFMS-GP (module docstring). Built by :class:`engine.models.mfms_gp.MFMSGP`;
    conditioned copies come from :meth:`condition_on_observations`.

    ``kernel``: the fitted ``ScaleKernel(ProductMatern52Kernel)``; ``mean``: the fitted
    :class:`~engine.models.gp.means.GPMean` (objective units); ``noise``: the fitted
    :class:`~engine.models.gp.likelihood.ScaledNoise`; ``X`` (n, K + 2), ``y`` (n,) the design
    in objective units; ``noise_var`` (n,) the design's noise variances (standardised units);
    ``y_mean``, ``y_std`` the standardisation."""

    _num_outputs = 1

    def __init__(self, *, kernel, mean, noise, X: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor,
                 y_mean: float, y_std: float, _factor: tuple[torch.Tensor, float] | None = None,
                 describe: str = "") -> None:
        super().__init__()
        self.kernel, self.prior_mean, self.noise_model = kernel, mean, noise
        self.train_X, self.train_y = X, y
        self.noise_var = noise_var
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.K = X.shape[-1] - 2
        with torch.no_grad():
            self.lengthscale = kernel.base_kernel.lengthscale.detach().reshape(-1).clone()
            self.outputscale = float(kernel.outputscale)
            self.groups = kernel.base_kernel.groups
            if _factor is None:
                Kxx = self.kernel_matrix(X, X) + torch.diag(noise_var)
                _factor = cholesky(Kxx, f"the training covariance ({len(X)} points; {describe})")
            self.L, self.jitter = _factor
            resid = (y - self.y_mean) / self.y_std - self._mean_std(X)
            self.alpha = torch.cholesky_solve(resid.unsqueeze(-1), self.L).squeeze(-1)
        self._structure_cache = None

    # ---- BoTorch's Model interface --------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def posterior(self, X: torch.Tensor, output_indices=None, observation_noise=False, posterior_transform=None,
                  **kwargs) -> GPyTorchPosterior:
        """The joint posterior of the latent objective (objective units) at X (..., q, K + 2),
        differentiable in X; ``observation_noise=True`` adds a new observation's noise."""
        if output_indices not in (None, [0], (0,)):
            raise ValueError(f"GPModel has one output; got output_indices={output_indices}")
        if X.dim() < 2:
            raise ValueError(f"GPModel.posterior expects X of shape (..., q, {self.K + 2}), got {tuple(X.shape)}")
        if X.shape[-2] == 1:
            mean, var = self._marginals(X.squeeze(-2), variances=not gpytorch.settings.skip_posterior_variances.on())
            mean, var = mean.unsqueeze(-1), var.unsqueeze(-1)
            if observation_noise is True:
                var = var + self.noise_model.variances(X).detach()
            cov = DiagLinearOperator(var * self.y_std ** 2)
        else:
            mean, cov = self._joint(X)
            if observation_noise is True:
                cov = cov + torch.diag_embed(self.noise_model.variances(X).detach())
            cov = cov * self.y_std ** 2
        post = GPyTorchPosterior(MultivariateNormal(mean * self.y_std + self.y_mean, cov))
        return posterior_transform(post) if posterior_transform is not None else post

    def condition_on_observations(self, X: torch.Tensor, Y: torch.Tensor, **kwargs) -> "GPModel":
        """This model with observations ``Y`` (objective units) at X (q, K + 2) added, each one
        observation (its noise from the noise model); the factor is extended, not recomputed.
        A believer passes the posterior mean as Y (``believe``)."""
        if X.dim() != 2:
            raise ValueError("GPModel.condition_on_observations takes X of shape (q, K + 2) (no batches)")
        with torch.no_grad():
            X = X.detach().to(DTYPE)
            y_new = Y.detach().reshape(-1).to(DTYPE)
            nv = self.noise_model.variances(X).detach()
            K12 = self.kernel_matrix(self.train_X, X)
            K22 = self.kernel_matrix(X, X) + torch.diag(nv)
            B = torch.linalg.solve_triangular(self.L, K12, upper=False)
            L22, _ = cholesky(K22 - B.T @ B, f"the covariance after conditioning on {len(X)} point(s)")
            n, q = len(self.L), len(X)
            L = torch.zeros(n + q, n + q, dtype=DTYPE)
            L[:n, :n], L[n:, :n], L[n:, n:] = self.L, B.T, L22
        return GPModel(kernel=self.kernel, mean=self.prior_mean, noise=self.noise_model,
                       X=torch.cat([self.train_X, X]), y=torch.cat([self.train_y, y_new]),
                       noise_var=torch.cat([self.noise_var, nv]), y_mean=self.y_mean, y_std=self.y_std,
                       _factor=(L, self.jitter))

    def believe(self, X: torch.Tensor | None) -> "GPModel":
        """Kriging believer: conditioned on X at its own posterior mean (X None or empty: itself)."""
        if X is None or len(X) == 0:
            return self
        with torch.no_grad():
            mu = self.posterior(X.unsqueeze(-2)).mean.reshape(-1)
        return self.condition_on_observations(X, mu)

    def forward(self, X):  # pragma: no cover - Model asks for it; posterior is the API
        post = self.posterior(X)
        return post.mvn

    # ---- the kernel and the mean ---------------------------------------------------------
    def kernel_matrix(self, A: torch.Tensor, B: torch.Tensor, *, diag: bool = False) -> torch.Tensor:
        """k(A, B) (standardised units): the fitted kernel through :func:`product_matern52`."""
        return product_matern52(A, B, self.lengthscale, self.groups, diag=diag) * self.outputscale

    def _mean_std(self, X: torch.Tensor) -> torch.Tensor:
        return (self.prior_mean(X) - self.y_mean) / self.y_std

    def _structure(self):
        """(W, iw, MZ, ip, A): the design's R distinct mixtures and P distinct (u_m, u_z) pairs,
        each point's index into them, and ``A[r, p]`` the sum of alpha over the points of mixture
        r at pair p (None where R x P is too large to be worth it). Cached per model."""
        if self._structure_cache is None:
            K = self.K
            Wu, iw = torch.unique(self.train_X[:, :K], dim=0, return_inverse=True)
            MZ, ip = torch.unique(self.train_X[:, K:], dim=0, return_inverse=True)
            n, R, P = len(iw), len(Wu), len(MZ)
            A = None
            if R * P <= min(64 * n, 5_000_000):
                A = torch.zeros(R, P, dtype=DTYPE).index_put_((iw, ip), self.alpha, accumulate=True)
            self._structure_cache = (Wu, iw, MZ, ip, A)
        return self._structure_cache

    def _factors(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_w against the R distinct mixtures, k_m k_z against the P distinct pairs) at X."""
        Wu, _, MZ, _, _ = self._structure()
        g_w, g_m, g_z = self.groups
        ls = self.lengthscale
        kw = product_matern52(X, Wu, ls, (g_w,))
        # the pairs: (u_m, u_z) columns of X against MZ's two columns
        Xs = X[..., g_m.start:]
        kmz = product_matern52(Xs, MZ, ls[g_m.start:], (slice(0, 1), slice(1, 2)))
        return kw, kmz

    def cross_kernel(self, X: torch.Tensor) -> torch.Tensor:
        """k(X, X_train) (standardised units) through the design's structure: each Matern factor
        against the distinct training values only, then gathered."""
        _, iw, _, ip, _ = self._structure()
        kw, kmz = self._factors(X)
        return kw.index_select(-1, iw) * kmz.index_select(-1, ip) * self.outputscale

    def _marginals(self, X: torch.Tensor, *, variances: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance (standardised units) at each row of X (..., d)."""
        if not variances:
            A = self._structure()[4]
            if A is None:
                mean = self._mean_std(X) + self.cross_kernel(X) @ self.alpha
            else:
                kw, kmz = self._factors(X)
                mean = self._mean_std(X) + ((kw @ A) * kmz).sum(-1) * self.outputscale
            return mean, torch.zeros_like(mean)
        shape = X.shape[:-1]
        Xf = X.reshape(-1, X.shape[-1])
        k = self.cross_kernel(Xf)
        mean = self._mean_std(Xf) + k @ self.alpha
        v = torch.linalg.solve_triangular(self.L, k.transpose(-1, -2), upper=False)
        var = (self.outputscale - (v * v).sum(-2)).clamp_min(1e-12)
        return mean.reshape(shape), var.reshape(shape)

    def _joint(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint posterior mean (..., q) and covariance (..., q, q) (standardised units)."""
        q, d = X.shape[-2], X.shape[-1]
        Xf = X.reshape(-1, d)
        k = self.cross_kernel(Xf)  # (N, n)
        mean = (self._mean_std(Xf) + k @ self.alpha).reshape(X.shape[:-1])
        V = torch.linalg.solve_triangular(self.L, k.transpose(-1, -2), upper=False)  # (n, N)
        V = V.transpose(-1, -2).reshape(*X.shape[:-2], q, -1)  # (..., q, n)
        cov = self.kernel_matrix(X, X) - V @ V.transpose(-1, -2)
        cov = cov + 1e-10 * torch.eye(q, dtype=X.dtype)
        return mean, cov

    # ---- descriptions ----------------------------------------------------------------------
    def describe(self) -> str:
        """The hyperparameters in a line (for errors and logs)."""
        ls = ", ".join(f"{float(x):.3g}" for x in self.lengthscale)
        return f"outputscale {self.outputscale:.3g}, {self.noise_model.describe()}, lengthscales {ls}"


__all__ = ["GPModel", "cholesky", "scaled_distance"]
