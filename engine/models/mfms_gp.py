"""MFMS-GP: a Gaussian process over (mixture, model size, length), as in MFMS-BO (Yen et al. 2025).

Inputs (see :class:`engine.models.base.Encoding`), ``d = K + 2`` columns::

    x = [w_1 .. w_K, u_m, u_z]
    u_m = (log model_params - log m_lo) / (log m_hi - log m_lo)   # training sizes -> [0, 1]
    u_z = (log steps - log z_lo) / (log z_hi - log z_lo)           # training lengths -> [0, 1]

(``steps`` is tokens where the runs carry no steps; an axis the data does not vary uses a
span of log 10.) ``MFMSGP.transform(query_df)`` gives this tensor.

The model, in parts (:mod:`engine.models.gp`):

- kernel ``s^2 * k_w(w) * k_m(u_m) * k_z(u_z)``, a product of Matern-5/2 factors (ARD over the
  K mixture weights; :mod:`~engine.models.gp.kernel`);
- a prior mean along which it extrapolates, the kernel modelling the residual
  (:mod:`~engine.models.gp.means`): ``mean="scaling"`` (the default: the data mixing law with
  power laws in size and length), ``"linear"``, or any :class:`~engine.models.gp.means.GPMean`
  (e.g. a fixed parametric scaling law);
- a noise model (:mod:`~engine.models.gp.likelihood`): ``"count"`` (a bin of n checkpoints is n
  times better known than one) or ``"far"`` (misfit growing below the largest scale);
- the design: each run's checkpoints binned into at most ``bins_per_run`` points, every run
  kept up to ``max_points`` runs (:mod:`~engine.models.gp.binning`); ``exact=True`` skips the
  binning (``mfms-gp-exact``, small tables).

Fitting: the mean is fitted on the design first, then the kernel's hyperparameters (and the
mean's, where it is learnable) by maximising the marginal likelihood on at most
``max_fit_points`` design points of randomly chosen whole runs (L-BFGS, ``maxiter`` steps, one
attempt; :mod:`~engine.models.gp.fitting`), then frozen for the exact solve on all of them. A
fit that raises or lowers the likelihood keeps the starting hyperparameters, says so in a
warning and sets ``fit_ok_ = False`` (``fit_message_`` says why); a training covariance that no
jitter up to 1e-2 makes positive definite is an error. ``warm_start`` (a fitted MFMSGP, or its
:meth:`MFMSGP.warm_state`) starts from its hyperparameters and runs ``warm_maxiter`` steps; with
``warm_maxiter = 0`` nothing is re-learned, the scaling mean included (kept as the same law,
re-expressed in the new standardisation). ``neg_mll_`` is the fitted subset's negative log
likelihood per point.

Predictions: ``model_`` is the fitted GP as a BoTorch ``Model`` (:class:`engine.models.gp.model.GPModel`);
its ``posterior(X)`` is what :meth:`predict`, :meth:`predict_mean`, :meth:`optimum` and the
strategies read, in the objective's units and differentiable in X. The settings and their
two presets (``table``, the default here, and ``search``, the strategies') are in
:mod:`engine.models.gp.settings`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch

from engine.models.base import LossModel, Prepared
from engine.models.gp import settings as gp_settings
from engine.models.gp.binning import bin_checkpoints, design, fit_subset
from engine.models.gp.fitting import fit_hypers, neg_mll
from engine.models.gp.kernel import make_kernel
from engine.models.gp.likelihood import NOISE_MODELS, ScaledNoise
from engine.models.gp.means import make_mean, mean_kind, standardisation, standardised
from engine.models.gp.model import GPModel
from engine.models.gp.settings import GPSettings

DTYPE = torch.float64
#: kept for callers of the old module: the fitting helper's former private name
_fit_hypers = fit_hypers


class MFMSGP(LossModel):
    """GP over (w, log size, log steps) with a product kernel; see the module docstring.

    ``preset``: ``"table"`` (default), ``"search"`` or ``"exact"`` (:mod:`engine.models.gp.settings`);
    ``settings``: a :class:`GPSettings` instead; keyword overrides (``mean=``, ``noise=``,
    ``max_points=``, ...) replace single fields."""

    name = "mfms-gp"
    smooth = True
    default_preset = "table"

    def __init__(self, *, preset: str | None = None, settings: GPSettings | None = None,
                 num_threads: int | None = 1, **overrides) -> None:
        base = settings if settings is not None else gp_settings.preset(preset or self.default_preset)
        self.settings = base.with_(**overrides)
        self.num_threads = num_threads

    def n_params(self, K: int) -> int:
        """The mean's parameters: ``c, k`` and one exponent per input (K weights, size, length)
        for ``mean="scaling"``; one weight per input for ``mean="linear"``."""
        return make_mean(self.settings.mean, K).n_params(K)

    def n_params_for(self, prep: Prepared) -> int:
        """Runs needed: 2. The GP does not need a run per mean parameter: its kernel carries the
        mixture effect under priors, and the scaling mean's mixture exponents are only fitted
        where the table has at least K + 2 distinct mixtures (below that they stay 0 and the
        mean is the scale trend alone), so every parameter that is fitted is identified; the
        scale exponents are identified within runs (lengths) and across sizes. One run says
        nothing about how the mixture matters."""
        return 2

    def min_runs_why(self, prep: Prepared, need: int) -> str:
        return ("two mixtures at the least for its kernel to compare; its mean's "
                f"{self.n_params(len(prep.domains))} parameters are fitted only as far as the runs identify them")

    # ---- fitting -------------------------------------------------------------------------
    def warm_state(self) -> dict:
        """The fitted hyperparameters as plain JSON-able data (what a later fit can warm-start
        from, e.g. after a round trip through a database)."""
        self._check_fitted()
        return {k: ({n: v.tolist() for n, v in d.items()} if isinstance(d, dict) else d)
                for k, d in self.hypers_.items()}

    def _warm(self, warm_start, K: int) -> dict | None:
        """The warm start's hyperparameters where it is compatible (same domains count, mean
        and noise model), else None."""
        if isinstance(warm_start, MFMSGP):
            if not hasattr(warm_start, "hypers_"):
                return None
            warm_start = warm_start.hypers_
        if not isinstance(warm_start, dict):
            return None
        s = self.settings
        ok = (warm_start.get("K") == K and warm_start.get("mean_kind") == mean_kind(s.mean)
              and warm_start.get("noise_kind") == s.noise)
        return warm_start if ok else None

    @staticmethod
    def _load(module, state: dict) -> None:
        """``module.load_state_dict`` from tensors or plain lists (a :meth:`warm_state`)."""
        own = module.state_dict()
        # priors' buffers are constants of the model (and broadcast views): not learned state
        module.load_state_dict({k: torch.as_tensor(v, dtype=own[k].dtype).reshape(own[k].shape).clone()
                                for k, v in state.items() if k in own and "_prior." not in k}, strict=False)

    def _fit(self, prep: Prepared, *, warm_start=None) -> None:
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        from engine.models.gp.compat import gaussian_likelihood

        s = self.settings
        K = len(prep.domains)
        d = design(prep, self.encoding_, bins_per_run=s.bins_per_run, max_points=s.max_points, exact=s.exact,
                   seed=s.seed)
        self.n_train_, self.counts_ = len(d.y), d.counts
        self._design_runs, self.points_per_run_, self.runs_dropped_ = d.runs, d.points_per_run, d.runs_dropped
        Xt = torch.as_tensor(d.X, dtype=DTYPE)
        # noise variance sigma^2 / n_eff (count); far: every design point is one observation
        counts = torch.as_tensor(d.counts, dtype=DTYPE) if s.noise == "count" else None
        W_obs = prep.W[prep.final_rows()]
        self.observed_mixtures_ = np.unique(W_obs.round(6), axis=0)[:256]
        y_mean, y_std = standardisation(d.y)

        warm = self._warm(warm_start, K)
        kernel = make_kernel(K)
        noise = ScaledNoise(s.noise, s.noise_floor, Xt[:, K:].max(0).values if s.noise == "far" else None)
        mean = make_mean(s.mean, K)
        warm_mean = None
        if warm is not None:
            self._load(kernel, warm["kernel"])
            self._load(noise, warm["noise"])
            warm_mean = make_mean(s.mean, K)
            self._load(warm_mean, warm["mean"])
        maxiter = s.warm_maxiter if warm is not None else s.maxiter
        mean.fit(d.X, d.y, encoding=self.encoding_, objective=prep.objective, warm=warm_mean,
                 keep=warm is not None and maxiter <= 0)
        if not mean.learnable:
            for p in mean.parameters():
                p.requires_grad_(False)

        # hyperparameters on a subset, in standardised units
        sub = fit_subset(d.runs, s.max_fit_points, s.seed)
        self.fit_ok_ = True
        self.neg_mll_ = math.nan
        self.fit_message_ = ("hyperparameters not re-learned (maxiter 0): the warm start's are used" if maxiter <= 0
                             else "")
        if maxiter > 0:
            noise.set_train_counts(None if counts is None else counts[sub])
            lik = gaussian_likelihood(noise)
            Ys = torch.as_tensor((d.y[sub] - y_mean) / y_std, dtype=DTYPE).unsqueeze(-1)
            m_sub = SingleTaskGP(Xt[sub], Ys, likelihood=lik, covar_module=kernel,
                                 mean_module=standardised(mean, y_mean, y_std), outcome_transform=None)
            mll = ExactMarginalLogLikelihood(lik, m_sub)
            self.fit_ok_, self.fit_message_ = fit_hypers(mll, maxiter)
            # the fitted subset's negative log likelihood (per point): lets a caller compare a
            # warm-started fit with a cold one on the same data (the strategies' surrogate)
            if self.fit_ok_:
                try:
                    self.neg_mll_ = neg_mll(mll)
                except Exception:  # noqa: BLE001 - only a comparison score; nan never wins one
                    self.neg_mll_ = math.nan
            else:
                warnings.warn(f"mfms-gp: {self.fit_message_}. Predictions use the starting hyperparameters "
                              "(fit_ok_ is False); refit with more data, a larger maxiter or another seed.",
                              stacklevel=3)
            noise.set_train_counts(None)
        mean.constrain()
        for mod in (kernel, mean, noise):
            for p in mod.parameters():
                p.requires_grad_(False)
        self.hypers_ = {"K": K, "mean_kind": mean_kind(s.mean), "noise_kind": s.noise,
                        "kernel": {k: v.clone() for k, v in kernel.state_dict().items()},
                        "mean": {k: v.clone() for k, v in mean.state_dict().items()},
                        "noise": {k: v.clone() for k, v in noise.state_dict().items()}}
        self.y_mean_, self.y_std_ = y_mean, y_std
        self.mean_ = mean
        with torch.no_grad():
            noise_var = noise.variances(Xt, counts)
        self.model_ = GPModel(kernel=kernel, mean=mean, noise=noise, X=Xt, y=torch.as_tensor(d.y, dtype=DTYPE),
                              noise_var=noise_var, y_mean=y_mean, y_std=y_std,
                              describe=f"hyperparameters: {self._describe(kernel, noise)}")
        self.X_train_ = Xt

    @staticmethod
    def _describe(kernel, noise) -> str:
        ls = ", ".join(f"{float(x):.3g}" for x in kernel.base_kernel.lengthscale.reshape(-1))
        return f"outputscale {float(kernel.outputscale):.3g}, {noise.describe()}, lengthscales {ls}"

    # ---- torch-level access for BO -------------------------------------------------------
    @property
    def botorch_model(self) -> GPModel:
        """The fitted GP as a BoTorch ``Model`` (:attr:`model_`): ``posterior(X)`` for X of shape
        batch x q x (K+2) is the joint Gaussian posterior of the latent objective in objective
        units. Works with analytic and MC acquisition functions and conditions on new points
        (``condition_on_observations``)."""
        self._check_fitted()
        return self.model_

    def transform(self, query: pd.DataFrame) -> torch.Tensor:
        """Query rows -> (n, K+2) float64 tensor ``[w_1..w_K, u_m, u_z]`` (module docstring)."""
        W, m, z = self.query_arrays(query)
        return torch.as_tensor(self.encoding_.encode(W, m, z), dtype=DTYPE)

    def encode(self, W: np.ndarray, model_params: float | np.ndarray, z: float | np.ndarray) -> torch.Tensor:
        """Arrays -> model inputs; ``z`` is on the model's length axis (``encoding_.z_kind``)."""
        return torch.as_tensor(self.encoding_.encode(W, model_params, z), dtype=DTYPE)

    def scale_columns(self, model_params: float, *, steps: float | None = None,
                      tokens: float | None = None) -> dict[int, float]:
        """``{column: value}`` fixing (u_m, u_z) for ``optimize_acqf(fixed_features=...)``."""
        z = self.encoding_.z_from(steps=steps, tokens=tokens)
        K = len(self.domains_)
        x = self.encoding_.encode(np.full((1, K), 1.0 / K), model_params, z)[0]
        return {K: float(x[K]), K + 1: float(x[K + 1])}

    # ---- prediction ----------------------------------------------------------------------
    def predict_tensor(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std at encoded inputs X (n, K+2), objective units, differentiable in X."""
        post = self.model_.posterior(X.unsqueeze(-2))
        return post.mean.reshape(-1), post.variance.reshape(-1).sqrt()

    def _predict_mean_arrays(self, W, m, z):
        """Posterior mean only: O(n) per row (no triangular solve), for scoring many rows."""
        import gpytorch

        X = torch.as_tensor(self.encoding_.encode(W, m, z), dtype=DTYPE)
        out = []
        with torch.no_grad(), gpytorch.settings.skip_posterior_variances(True):
            for s in range(0, len(X), 2048):
                out.append(self.model_.posterior(X[s:s + 2048].unsqueeze(-2)).mean.reshape(-1).numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def _predict_arrays(self, W, m, z):
        # the variance is O(n^2) per row (a triangular solve against the n training points);
        # 512-row chunks measured fastest here (larger ones were slower on this CPU)
        X = torch.as_tensor(self.encoding_.encode(W, m, z), dtype=DTYPE)
        means, stds = [], []
        with torch.no_grad():
            for s in range(0, len(X), 512):
                mu, sd = self.predict_tensor(X[s:s + 512])
                means.append(mu.numpy())
                stds.append(sd.numpy())
        if not means:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(means), np.concatenate(stds)

    def _optimize(self, m: float, z: float, bounds: np.ndarray, sign: float) -> np.ndarray:
        """Candidates scored in batch, then SLSQP on the exact autograd gradient."""
        from scipy.optimize import minimize

        from engine.models.base import optimize_simplex, project_simplex

        K = len(self.domains_)

        def f(W):
            return self._predict_mean_arrays(W, np.full(len(W), m), np.full(len(W), z))

        w0 = optimize_simplex(f, K, bounds, sign=sign, smooth=False, n_candidates=2048,
                              extra=self.observed_mixtures_)
        best_w, best_v = w0, sign * float(f(w0[None])[0])
        um_uz = self.encoding_.encode(w0[None], m, z)[0, K:]

        def fg(w):
            x = torch.as_tensor(np.concatenate([w, um_uz]), dtype=DTYPE).unsqueeze(0).requires_grad_(True)
            mu = self.model_.posterior(x.unsqueeze(-2)).mean.sum() * sign
            (g,) = torch.autograd.grad(mu, x)
            return float(mu.detach()), g[0, :K].numpy().copy()

        cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(K)}]
        try:
            res = minimize(fg, w0, jac=True, method="SLSQP", bounds=[tuple(x) for x in bounds],
                           constraints=cons, options={"maxiter": 200, "ftol": 1e-12})
            w = project_simplex(res.x[None], bounds)[0]
            v = sign * float(f(w[None])[0])
            if v < best_v:
                best_w = w
        except (ValueError, FloatingPointError):
            pass
        return best_w


class MFMSGPExact(MFMSGP):
    """MFMS-GP on every checkpoint, no binning, hyperparameters on all points (small data)."""

    name = "mfms-gp-exact"
    default_preset = "exact"


__all__ = ["DTYPE", "GPSettings", "MFMSGP", "MFMSGPExact", "NOISE_MODELS", "bin_checkpoints"]


class MFMSGPLaw(MFMSGP):
    """MFMS-GP whose prior mean is the DMSL law (``mean="dmsl"``, :mod:`engine.models.gp.law_mean`):
    the level extrapolates like the law, the kernel models the residual near the runs."""

    name = "mfms-gp-law"

    def __init__(self, **overrides):
        overrides.setdefault("mean", "dmsl")
        super().__init__(**overrides)
