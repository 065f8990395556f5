"""MFMS-GP: a Gaussian process over (mixture, model size, length), as in MFMS-BO (Yen et al. 2025).

Inputs (see :class:`engine.models.base.Encoding`), ``d = K + 2`` columns::

    x = [w_1 .. w_K, u_m, u_z]
    u_m = (log model_params - log m_lo) / (log m_hi - log m_lo)   # training sizes -> [0, 1]
    u_z = (log steps - log z_lo) / (log z_hi - log z_lo)           # training lengths -> [0, 1]

(``steps`` is tokens where the runs carry no steps; an axis the data does not vary uses a
span of log 10.) ``MFMSGP.transform(query_df)`` gives this tensor; ``MFMSGP.botorch_model`` is
the fitted BoTorch ``SingleTaskGP`` on it, whose posterior is in the objective's own units
(a ``Standardize`` outcome transform), differentiable in x, so acquisition functions can be
optimised over w with the size/length columns fixed.

Kernel: ``s^2 * k_w(w) * k_m(u_m) * k_z(u_z)``, a product of Matern-5/2 kernels (ARD over the
K mixture weights), learned by maximising the marginal likelihood. Mean: linear,
``b . w + a_m u_m + a_z u_z`` (its intercept is ``b . w`` since weights sum to 1), so the GP
extrapolates along the size/length trend instead of reverting to a constant.

Scaling to 100k checkpoint rows (the choice): an exact GP on every checkpoint is O(n^3). Runs
are learning curves, smooth in log steps, so each run is summarised by at most
``bins_per_run`` points: its last checkpoint on its own, and the mean (log step, objective) of
its other checkpoints in equal-width bins of log steps. Every checkpoint contributes to a bin
mean; noisy curves are averaged rather than thinned. The GP is then exact on the bin means
(at most ``max_points``; ``bins_per_run`` shrinks to fit, and only past 2 points per run are
runs subsampled, with a fixed seed). Hyperparameters are learned on a random subset of at most
``max_fit_points`` of those points (L-BFGS, ``maxiter`` steps, one attempt), then frozen for
the exact solve on all of them. A refit given ``warm_start`` (a fitted MFMSGP) starts from its
hyperparameters and runs ``warm_maxiter`` steps. ``exact=True`` skips the binning and fits every
checkpoint (only for small tables; ``mfms-gp-exact`` in the registry).
Large predictions (> ``fast_var_above`` rows) use LOVE for the predictive variance.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch

from engine.models.base import LossModel, Prepared

DTYPE = torch.float64


def _make_mean(d: int):
    from gpytorch.means import Mean

    class _Linear(Mean):
        """``x @ weights`` (no separate bias: the K mixture weights sum to 1)."""

        def __init__(self, d: int):
            super().__init__()
            self.register_parameter("weights", torch.nn.Parameter(torch.zeros(d, 1, dtype=DTYPE)))

        def forward(self, x):
            return (x @ self.weights).squeeze(-1)

    return _Linear(d)


def _make_covar(K: int):
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.priors import GammaPrior, LogNormalPrior

    kw = MaternKernel(nu=2.5, ard_num_dims=K, active_dims=tuple(range(K)),
                      lengthscale_prior=LogNormalPrior(math.log(0.5), 1.0),
                      lengthscale_constraint=GreaterThan(1e-3))
    km = MaternKernel(nu=2.5, active_dims=(K,), lengthscale_prior=LogNormalPrior(math.log(1.0), 1.0),
                      lengthscale_constraint=GreaterThan(1e-3))
    kz = MaternKernel(nu=2.5, active_dims=(K + 1,), lengthscale_prior=LogNormalPrior(math.log(1.0), 1.0),
                      lengthscale_constraint=GreaterThan(1e-3))
    return ScaleKernel(kw * km * kz, outputscale_prior=GammaPrior(2.0, 0.5))


def _make_likelihood(noise_floor: float):
    from gpytorch.constraints import GreaterThan
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.priors import LogNormalPrior

    lik = GaussianLikelihood(noise_prior=LogNormalPrior(math.log(1e-3), 2.0),
                             noise_constraint=GreaterThan(noise_floor))
    lik.noise = max(1e-3, 2 * noise_floor)
    return lik


def bin_checkpoints(run_ids: np.ndarray, z: np.ndarray, y: np.ndarray, idx_cols: np.ndarray,
                    bins_per_run: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Summarise each run's checkpoints by <= ``bins_per_run`` points (see the module docstring).

    Returns (run-row index per point, log z per point, y per point, count per point); the
    run-row index points at a representative row of the run (its weights and size).
    """
    lz = np.log(z)
    df = pd.DataFrame({"r": run_ids, "lz": lz, "y": y, "i": idx_cols})
    df = df.sort_values(["r", "lz"], kind="stable")
    g = df.groupby("r", sort=False)
    n = g["lz"].transform("size").to_numpy()
    last = (g.cumcount(ascending=False) == 0).to_numpy()
    lo = g["lz"].transform("min").to_numpy()
    # upper edge: the largest log z below the last checkpoint
    tmp = df["lz"].where(~last)
    hi = tmp.groupby(df["r"]).transform("max").to_numpy()
    nb = max(1, bins_per_run - 1)
    width = np.where(np.isfinite(hi) & (hi > lo), hi - lo, 1.0)
    b = np.floor((df["lz"].to_numpy() - lo) / width * nb).clip(0, nb - 1)
    small = n <= bins_per_run  # few checkpoints: keep each one
    rank = g.cumcount().to_numpy()
    key = np.where(last, -1, np.where(small, rank, b)).astype(np.int64)
    df["k"] = key
    out = df.groupby(["r", "k"], sort=False).agg(lz=("lz", "mean"), y=("y", "mean"), i=("i", "first"),
                                                 c=("y", "size"))
    return out["i"].to_numpy(), out["lz"].to_numpy(), out["y"].to_numpy(), out["c"].to_numpy()


class MFMSGP(LossModel):
    """GP over (w, log size, log steps) with a product kernel; see the module docstring."""

    name = "mfms-gp"
    smooth = True

    def __init__(self, *, exact: bool = False, bins_per_run: int = 8, max_points: int = 2500,
                 max_fit_points: int = 400, maxiter: int = 60, warm_maxiter: int = 10,
                 noise_floor: float = 1e-6, fast_var_above: int = 4096, num_threads: int | None = 1,
                 seed: int = 0):
        self.exact = exact
        self.bins_per_run = bins_per_run
        self.max_points = max_points
        self.max_fit_points = max_fit_points
        self.maxiter = maxiter
        self.warm_maxiter = warm_maxiter
        self.noise_floor = noise_floor
        self.fast_var_above = fast_var_above
        self.num_threads = num_threads
        self.seed = seed

    def n_params(self, K: int) -> int:
        return 2

    # ---- fitting -------------------------------------------------------------------------
    def _design(self, prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
        """Training inputs (encoded) and targets after binning / subsampling."""
        enc = self.encoding_
        idx = np.arange(len(prep.y))
        rng = np.random.default_rng(self.seed)
        if self.exact:
            X = enc.encode(prep.W, prep.m, prep.z)
            return X, prep.y.copy()
        runs = np.unique(prep.run_ids)
        R = len(runs)
        bpr = int(min(self.bins_per_run, max(2, self.max_points // max(R, 1))))
        keep = np.ones(len(idx), bool)
        if R * 2 > self.max_points:  # too many runs even at 2 points each: subsample runs
            chosen = rng.choice(runs, size=self.max_points // 2, replace=False)
            keep = np.isin(prep.run_ids, chosen)
        rows, lz, y, _ = bin_checkpoints(prep.run_ids[keep], prep.z[keep], prep.y[keep], idx[keep], bpr)
        X = enc.encode(prep.W[rows], prep.m[rows], np.exp(lz))
        return X, y

    def _fit(self, prep: Prepared, *, warm_start: LossModel | None = None) -> None:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        K = len(prep.domains)
        X, y = self._design(prep)
        self.n_train_ = len(y)
        W_obs = prep.W[prep.final_rows()]
        self.observed_mixtures_ = np.unique(W_obs.round(6), axis=0)[:256]
        y_mean = float(y.mean())
        y_std = float(y.std(ddof=1)) if len(y) > 1 else 1.0
        if not np.isfinite(y_std) or y_std < 1e-12:
            y_std = 1.0
        Xt = torch.as_tensor(X, dtype=DTYPE)
        Yt = torch.tensor(y, dtype=DTYPE).unsqueeze(-1)

        covar = _make_covar(K)
        mean = _make_mean(K + 2)
        lik = _make_likelihood(self.noise_floor)
        prev = warm_start if isinstance(warm_start, MFMSGP) and hasattr(warm_start, "hypers_") else None
        if prev is not None and prev.hypers_["K"] == K:
            covar.load_state_dict(prev.hypers_["covar"])
            mean.load_state_dict(prev.hypers_["mean"])
            lik.load_state_dict(prev.hypers_["lik"])
            maxiter = self.warm_maxiter
        else:
            # sensible start for the mean: least squares of the standardised targets on x
            coef, *_ = np.linalg.lstsq(X, (y - y_mean) / y_std, rcond=None)
            with torch.no_grad():
                mean.weights.copy_(torch.as_tensor(coef, dtype=DTYPE).unsqueeze(-1))
            maxiter = self.maxiter

        # hyperparameters on a subset, in standardised units
        rng = np.random.default_rng(self.seed)
        n = len(y)
        sub = np.arange(n) if n <= self.max_fit_points else np.sort(rng.choice(n, self.max_fit_points, replace=False))
        Ys = (Yt[sub] - y_mean) / y_std
        if maxiter > 0:
            m_sub = SingleTaskGP(Xt[sub], Ys, likelihood=lik, covar_module=covar, mean_module=mean,
                                 outcome_transform=None)
            mll = ExactMarginalLogLikelihood(m_sub.likelihood, m_sub)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}}, max_attempts=1)
                except Exception:  # noqa: BLE001 - keep the starting hyperparameters
                    pass
        self.hypers_ = {"K": K, "covar": {k: v.clone() for k, v in covar.state_dict().items()},
                        "mean": {k: v.clone() for k, v in mean.state_dict().items()},
                        "lik": {k: v.clone() for k, v in lik.state_dict().items()}}

        # the exact solve on every design point, hyperparameters frozen
        tf = Standardize(m=1)
        model = SingleTaskGP(Xt, Yt, likelihood=lik, covar_module=covar, mean_module=mean,
                             outcome_transform=tf)
        with torch.no_grad():  # Standardize computed its own stats; pin them to ours (same formula)
            tf.means.fill_(y_mean)
            tf.stdvs.fill_(y_std)
            tf._stdvs_sq.fill_(y_std ** 2)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model_ = model
        self.y_mean_, self.y_std_ = y_mean, y_std
        # prime the caches (Cholesky) so the first posterior call is cheap
        with torch.no_grad():
            model.posterior(Xt[:1])

    # ---- torch-level access for BO -------------------------------------------------------
    @property
    def botorch_model(self):
        """The fitted BoTorch ``SingleTaskGP`` on inputs ``transform(query)``; posterior in
        objective units. Its hyperparameters do not require grad (it is not refitted by BO)."""
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
        x = self.encoding_.encode(np.full((1, len(self.domains_)), 1.0 / len(self.domains_)), model_params, z)[0]
        K = len(self.domains_)
        return {K: float(x[K]), K + 1: float(x[K + 1])}

    # ---- prediction ----------------------------------------------------------------------
    def predict_tensor(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std at encoded inputs, differentiable in X (objective units)."""
        post = self.model_.posterior(X)
        return post.mean.squeeze(-1), post.variance.clamp_min(0).sqrt().squeeze(-1)

    def _predict_arrays(self, W, m, z):
        import gpytorch

        X = torch.as_tensor(self.encoding_.encode(W, m, z), dtype=DTYPE)
        means, stds = [], []
        fast = len(X) > self.fast_var_above
        with torch.no_grad(), gpytorch.settings.fast_pred_var(fast):
            for s in range(0, len(X), 4096):
                mu, sd = self.predict_tensor(X[s:s + 4096])
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
            return self._predict_arrays(W, np.full(len(W), m), np.full(len(W), z))[0]

        w0 = optimize_simplex(f, K, bounds, sign=sign, smooth=False, n_candidates=2048,
                              extra=self.observed_mixtures_)
        best_w, best_v = w0, sign * float(f(w0[None])[0])
        um_uz = self.encoding_.encode(w0[None], m, z)[0, K:]

        def fg(w):
            x = torch.as_tensor(np.concatenate([w, um_uz]), dtype=DTYPE).unsqueeze(0).requires_grad_(True)
            mu = self.model_.posterior(x).mean.sum() * sign
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

    def __init__(self, *, maxiter: int = 100, warm_maxiter: int = 15, noise_floor: float = 1e-6,
                 fast_var_above: int = 4096, num_threads: int | None = 1, seed: int = 0):
        super().__init__(exact=True, max_fit_points=10 ** 9, maxiter=maxiter, warm_maxiter=warm_maxiter,
                         noise_floor=noise_floor, fast_var_above=fast_var_above, num_threads=num_threads,
                         seed=seed)
