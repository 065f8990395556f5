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
K mixture weights), learned by maximising the marginal likelihood. Mean (``mean="scaling"``,
the default): the data mixing law extended with scale terms, ``c + k exp(t . w + a_m u_m +
a_z u_z)`` (a power law in size and length; :mod:`engine.models.mixing_law`), initialised by
least squares on the design points and learned with the kernel, so the GP extrapolates to larger
sizes along the fitted scaling trend and models the residual; ``mean="linear"`` learns
``b . w + a_m u_m + a_z u_z`` with the kernel instead. The mixture exponents ``t`` are fitted
only where the table has at least K + 2 distinct mixtures (fewer cannot identify them; they
stay 0, the mean is the scale trend alone and the kernel carries the mixture effect), so two
runs suffice to fit (``n_params_for``), while ``n_params`` reports the mean's K + 4.

Scaling to 100k checkpoint rows (the choice): an exact GP on every checkpoint is O(n^3). Runs
are learning curves, smooth in log steps, so each run is summarised by at most
``bins_per_run`` points: its last checkpoint on its own, and the mean (log step, objective) of
its other checkpoints in equal-width bins of log steps, where the bin's value is a local
quadratic in log steps through all its checkpoints read at the bin's mean log step (no bias
from the curve's convexity, unlike a plain mean). Every checkpoint contributes; noisy curves
are averaged rather than thinned. A bin's value is known better than one checkpoint's: the
likelihood gives point i the noise variance ``sigma^2 / n_i`` (``n_i`` its effective number of
checkpoints, the inverse of the quadratic's variance factor; 1 for single checkpoints), with
``sigma^2``, the noise of one checkpoint, learned. The GP is then exact on the bin values (at most
``max_points``): ``bins_per_run`` shrinks to ``max_points // runs``, down to 2 points per run
and then to 1 (the last checkpoint), so every run, i.e. every mixture, is kept up to
``max_points`` runs; only beyond that are runs subsampled (fixed seed, with a warning).
Hyperparameters are learned on the points of randomly chosen whole runs, at most
``max_fit_points`` of them (L-BFGS, ``maxiter`` steps, one attempt), then frozen for
the exact solve on all of them. A fit that raises or lowers the likelihood keeps the starting
hyperparameters, says so in a warning and sets ``fit_ok_ = False`` (``fit_message_`` says why);
a training covariance that no jitter up to 1e-2 makes positive definite is an error. A refit
given ``warm_start`` (a fitted MFMSGP) starts from its
hyperparameters and runs ``warm_maxiter`` steps; with ``warm_maxiter = 0`` nothing is
re-learned, the scaling mean included (kept as the same law, re-expressed in the new
standardisation). ``neg_mll_`` is the fitted subset's negative log likelihood per point.
Two noise models (``noise``). ``"count"`` (the default) is the one above: checkpoint noise
is independent, so a bin is ``n_i`` times better known than one checkpoint. ``"far"`` is for
finding the optimum at the largest scale, where the residual is model misfit rather than
checkpoint noise: misfit is correlated along a run (averaging a bin does not shrink it) and
grows away from the scale that matters, so every design point gets ``sigma^2 exp(far_m d_m +
far_z d_z)``, with ``d`` the distance of its (u_m, u_z) below the largest in the table and
``far_m, far_z >= 0`` learned with the other hyperparameters. On the MFMS simulator the
``count`` model's single-checkpoint noise (std ~0.013 in loss) let the final checkpoints of
runs near the target miss by 0.002-0.006, more than the differences between good mixtures;
``far`` learned ``far_z`` ~6, fitted them to ~0.0015 and raised the strategies' speed-ups
(``engine.strategies.surrogate`` uses it).
``exact=True`` skips the binning and fits every checkpoint (only for small tables; ``mfms-gp-exact`` in the registry).
Predictions reuse one Cholesky of the training covariance (:meth:`MFMSGP.predict_tensor`):
O(n) per point for the mean, O(n^2) for the variance, in chunks of 512 rows; ``predict_mean``
skips the variance (measured at 100k rows against 2,565 GP points: see engine.bench.predict).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch

from engine.errors import ValidationError
from engine.models.base import LossModel, Prepared

DTYPE = torch.float64
#: the likelihood's noise models (module docstring)
NOISE_MODELS = ("count", "far")


def _neg_mll(mll) -> float:
    """The negative marginal log likelihood (with priors) at the current hyperparameters."""
    model = mll.model
    was_training = model.training
    mll.train()
    try:
        with torch.no_grad():
            out = model(*model.train_inputs)
            return float(-mll(out, model.train_targets, *model.train_inputs))
    finally:
        mll.train(was_training)


def _fit_hypers(mll, maxiter: int) -> tuple[bool, str]:
    """Maximise the marginal likelihood (L-BFGS-B, ``maxiter`` steps, one attempt); returns
    (ok, message). The optimiser's point is kept where it improves the likelihood, even if
    L-BFGS-B ended abnormally (its last point is its best; BoTorch's default would roll it back
    to the start); where the fit raises or makes the likelihood worse, the starting
    hyperparameters are restored and ok is False, with the reason in the message."""
    from botorch.fit import fit_gpytorch_mll

    start = {k: v.detach().clone() for k, v in mll.state_dict().items()}
    notes: list[str] = []

    def keep(w) -> bool:  # accept the optimiser's point; judged below by the likelihood
        notes.append(str(w.message).splitlines()[0][:160])
        return True

    try:
        f0 = _neg_mll(mll)
    except Exception:  # noqa: BLE001 - a start that cannot be evaluated still gets its fit
        f0 = float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpytorch's numerical warnings; outcomes are judged below
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}}, max_attempts=1,
                             warning_handler=keep)
        f1 = _neg_mll(mll)
        if not np.isfinite(f1):
            raise FloatingPointError(f"the marginal likelihood is not finite after fitting ({-f1})")
        if np.isfinite(f0) and f1 > f0 + 1e-9 * max(1.0, abs(f0)):
            raise FloatingPointError(f"the fit made the marginal likelihood worse ({-f0:.6g} -> {-f1:.6g})")
    except Exception as exc:  # noqa: BLE001 - reported through the return value and a warning
        mll.load_state_dict(start)
        mll.eval()
        return False, f"hyperparameter fit failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
    mll.eval()
    msg = f"ok (-mll {f0:.6g} -> {f1:.6g})"
    if notes:
        msg += "; optimiser: " + "; ".join(dict.fromkeys(notes))
    return True, msg


def _describe_hypers(covar, lik) -> str:
    ls = [float(x) for k in covar.base_kernel.kernels for x in k.lengthscale.reshape(-1)]
    return (f"outputscale {float(covar.outputscale):.3g}, noise {float(lik.noise.reshape(-1)[0]):.3g}, "
            f"lengthscales {', '.join(f'{x:.3g}' for x in ls)}")


def _make_mean(d: int, mean: str):
    from gpytorch.means import Mean

    class _Linear(Mean):
        """``x @ weights`` (no separate bias: the K mixture weights sum to 1)."""

        def __init__(self, d: int):
            super().__init__()
            self.register_parameter("weights", torch.nn.Parameter(torch.zeros(d, 1, dtype=DTYPE)))

        def forward(self, x):
            return (x @ self.weights).squeeze(-1)

    class _Scaling(Mean):
        """``c + k * exp(x @ t)``: the data mixing law with log-size / log-length terms (a power
        law in size and length times an exponential in the mixture), initialised by least
        squares, then learned with the kernel by maximising the marginal likelihood."""

        def __init__(self, d: int):
            super().__init__()
            self.register_parameter("c", torch.nn.Parameter(torch.zeros((), dtype=DTYPE)))
            self.register_parameter("k", torch.nn.Parameter(torch.zeros((), dtype=DTYPE)))
            self.register_parameter("t", torch.nn.Parameter(torch.zeros(d, dtype=DTYPE)))
            # 1 where an exponent is fitted, 0 where the data cannot identify it (held at 0,
            # also while the kernel's hyperparameters are learned)
            self.register_buffer("mask", torch.ones(d, dtype=DTYPE))

        def forward(self, x):
            return self.c + self.k * torch.exp((x @ (self.t * self.mask)).clamp(-50, 50))

    return _Linear(d) if mean == "linear" else _Scaling(d)


def _is_loss(objective: str) -> bool:
    """A cross-entropy objective (``loss_<domain>``, ``mean_loss``): non-negative, falling with scale."""
    return objective == "mean_loss" or objective.startswith("loss_")


def _physical_bounds(floor: float | None, n_mix: int, n_scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares bounds on ``[c, k, t_mix..., t_scale...]``: none for a metric; for a loss
    ``c >= floor`` (the irreducible loss is not negative), ``k >= 0`` and ``t_scale <= 0``."""
    n = 2 + n_mix + n_scale
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    if floor is not None:
        lo[0], lo[1] = floor, 0.0
        hi[2 + n_mix:] = 0.0
    return lo, hi


def _project_scaling_mean(mean, floor: float, K: int) -> None:
    """Put a loss's scaling mean back inside :func:`_physical_bounds` after the marginal
    likelihood moved it (the exponents of the size and length columns, K and K + 1)."""
    with torch.no_grad():
        mean.c.clamp_(min=floor)
        mean.k.clamp_(min=0.0)
        mean.t[K:K + 2].clamp_(max=0.0)


def _mean_columns(X: np.ndarray, mixture: bool) -> np.ndarray:
    """Which columns of the design ``[w_1..w_K, u_m, u_z]`` the scaling mean fits an exponent
    for: the mixture columns where ``mixture`` (enough distinct mixtures), each scale axis
    where the data varies it."""
    K = X.shape[1] - 2
    return np.r_[np.full(K, bool(mixture)), np.ptp(X[:, K]) > 0, np.ptp(X[:, K + 1]) > 0]


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
    """A Gaussian likelihood whose noise at training point i is ``sigma^2 / n_i``.

    ``n_i`` is the effective number of checkpoints behind point i (a bin's value averages its
    checkpoints, see :func:`bin_checkpoints`): a bin of 40 checkpoints is known far better
    than a single one. ``sigma^2`` (the noise of one checkpoint) is learned as GPyTorch's usual
    homoskedastic noise; :meth:`set_train` gives the per-point scale ``1 / n_i`` for the
    training inputs, recognised by value (so the same likelihood serves the hyperparameter
    subset, the full solve and :attr:`MFMSGP.singletask_gp`). Inputs that extend the training
    inputs (fantasies, believed points) get ``1 / n_i`` on the training rows and ``sigma^2`` on
    the new ones; any other input (a query's observation noise) gets ``sigma^2``: a new
    observation is one checkpoint."""
    from gpytorch.constraints import GreaterThan, Positive
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.priors import LogNormalPrior
    from linear_operator.operators import DiagLinearOperator

    class CountScaledGaussianLikelihood(GaussianLikelihood):
        def __init__(self, **kw):
            super().__init__(**kw)
            self._train_X: torch.Tensor | None = None
            self._scale: torch.Tensor | None = None
            # with set_reference (noise="far"): misfit grows with the distance below the
            # largest scales, the log noise rising by far_m per unit of u_m and far_z per unit
            # of u_z below them (both learned, positive)
            self.register_parameter("raw_far", torch.nn.Parameter(torch.zeros(2, dtype=DTYPE)))
            self.register_constraint("raw_far", Positive())
            self._ref: torch.Tensor | None = None
            self._dist: torch.Tensor | None = None

        @property
        def far(self) -> torch.Tensor:
            return self.raw_far_constraint.transform(self.raw_far)

        def set_reference(self, u_ref: torch.Tensor | None) -> None:
            """The (u_m, u_z) of the largest scales: points there get sigma^2 / n_i."""
            self._ref = u_ref

        def set_train(self, X: torch.Tensor | None, scale: torch.Tensor | None) -> None:
            """Per-point noise scale (n,) for training inputs X (n, d); None: homoskedastic."""
            self._train_X, self._scale = X, scale
            self._dist = None
            if X is not None and self._ref is not None:
                self._dist = (self._ref - X[:, -2:]).clamp_min(0.0)

        def train_noise(self, n_total: int) -> torch.Tensor:
            """Noise variances (n_total,) of the training inputs followed by new points."""
            base = self.noise.reshape(-1)[0]
            out = base.expand(n_total).clone()
            if self._scale is not None:
                k = min(n_total, len(self._scale))
                sc = self._scale[:k]
                if self._dist is not None:
                    sc = sc * torch.exp(self._dist[:k] @ self.far)
                out[:k] = base * sc
            return out

        def _shaped_noise_covar(self, base_shape, *params, **kwargs):
            if self._scale is not None and params and "noise" not in kwargs:
                x = params[0] if torch.is_tensor(params[0]) else (
                    params[0][0] if isinstance(params[0], (list, tuple)) and params[0] else None)
                n = self._train_X.shape[-2]
                if (torch.is_tensor(x) and x.dim() >= 2 and x.shape[-2] >= n and x.shape[-2] == base_shape[-1]
                        and x.shape[-1] == self._train_X.shape[-1] and bool((x[..., :n, :] == self._train_X).all())):
                    diag = self.train_noise(x.shape[-2])
                    return DiagLinearOperator(diag.expand(*base_shape))
            return super()._shaped_noise_covar(base_shape, *params, **kwargs)

    lik = CountScaledGaussianLikelihood(noise_prior=LogNormalPrior(math.log(1e-3), 2.0),
                                        noise_constraint=GreaterThan(noise_floor))
    lik.noise = max(1e-3, 2 * noise_floor)
    return lik


def bin_checkpoints(run_ids: np.ndarray, z: np.ndarray, y: np.ndarray, idx_cols: np.ndarray,
                    bins_per_run: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Summarise each run's checkpoints by <= ``bins_per_run`` points (see the module docstring).

    Returns (run-row index per point, log z per point, y per point, effective checkpoint count
    per point: the noise of the point's value is that of one checkpoint over this count); the
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
    grp = df.groupby(["r", "k"], sort=False)
    centre = grp["lz"].transform("mean").to_numpy()
    scale = grp["lz"].transform("std").fillna(0).to_numpy()
    t = (df["lz"].to_numpy() - centre) / np.where(scale > 0, scale, 1.0)
    yv = df["y"].to_numpy()
    mom = pd.DataFrame({"r": df["r"].to_numpy(), "k": key, "s1": t, "s2": t ** 2, "s3": t ** 3, "s4": t ** 4,
                        "t1": t * yv, "t2": t * t * yv})
    sums = mom.groupby(["r", "k"], sort=False).sum()
    out = grp.agg(lz=("lz", "mean"), y=("y", "mean"), i=("i", "first"), c=("y", "size"))
    # a local quadratic in log steps through each bin, read at the bin's mean log step: unlike
    # the plain mean it has no bias from the curve's convexity (exact for quadratics)
    n_ = out["c"].to_numpy().astype(float)
    S1, S2, S3, S4 = (sums[c].to_numpy() for c in ("s1", "s2", "s3", "s4"))
    T0 = out["y"].to_numpy() * n_
    T1, T2 = sums["t1"].to_numpy(), sums["t2"].to_numpy()
    A = np.stack([np.stack([n_, S1, S2], -1), np.stack([S1, S2, S3], -1), np.stack([S2, S3, S4], -1)], -2)
    rhs = np.stack([T0, T1, T2], -1)
    y_out = out["y"].to_numpy().copy()
    lz_out = out["lz"].to_numpy().copy()
    # bins of < 4 checkpoints: their middle checkpoint as it is (a mean would be biased)
    rank = grp.cumcount().to_numpy()
    size = grp["y"].transform("size").to_numpy()
    mid = (rank == size // 2) & (size < 4)
    small_bins = np.flatnonzero(n_ < 4)
    if len(small_bins):
        # groups appear in out in first-seen order, as do their middle rows in df
        y_out[small_bins] = yv[mid]
        lz_out[small_bins] = df["lz"].to_numpy()[mid]
    # effective checkpoint count per point, for the noise variance sigma^2 / n_eff: one for a
    # single checkpoint (the last, or the middle of a small bin), n for a plain mean, and for
    # the local quadratic 1 / (A^-1)_00, the variance of its value at the bin's mean log step
    # over sigma^2 (iid checkpoint noise; about n / 2.25 for evenly spread checkpoints)
    n_eff = np.ones(len(n_))
    ok = n_ >= 4
    if ok.any():
        n_eff[ok] = n_[ok]  # a plain mean where the quadratic is ill-conditioned
        det = np.linalg.det(A[ok])
        good = np.abs(det) > 1e-9 * np.maximum(1.0, n_[ok]) ** 3
        idx = np.flatnonzero(ok)[good]
        if len(idx):
            beta = np.linalg.solve(A[idx], rhs[idx][..., None])[..., 0]
            y_out[idx] = beta[:, 0]
            e0 = np.zeros((len(idx), 3, 1))
            e0[:, 0, 0] = 1.0
            n_eff[idx] = 1.0 / np.linalg.solve(A[idx], e0)[:, 0, 0]
    return out["i"].to_numpy(), lz_out, y_out, n_eff


class MFMSGP(LossModel):
    """GP over (w, log size, log steps) with a product kernel; see the module docstring."""

    name = "mfms-gp"
    smooth = True

    def __init__(self, *, exact: bool = False, mean: str = "scaling", bins_per_run: int = 8, max_points: int = 3000,
                 max_fit_points: int = 400, maxiter: int = 60, warm_maxiter: int = 10,
                 noise_floor: float = 1e-6, noise: str = "count", num_threads: int | None = 1,
                 seed: int = 0):
        if noise not in NOISE_MODELS:
            raise ValidationError(f"mfms-gp: unknown noise model '{noise}'.", fix=f"use one of {', '.join(NOISE_MODELS)}.")
        self.noise = noise
        self.exact = exact
        self.mean = mean
        self.bins_per_run = bins_per_run
        self.max_points = max_points
        self.max_fit_points = max_fit_points
        self.maxiter = maxiter
        self.warm_maxiter = warm_maxiter
        self.noise_floor = noise_floor
        self.num_threads = num_threads
        self.seed = seed

    def n_params(self, K: int) -> int:
        """The mean's parameters: ``c, k`` and one exponent per input (K weights, size, length)
        for ``mean="scaling"``; one weight per input for ``mean="linear"``."""
        return K + 4 if self.mean != "linear" else K + 2

    def n_params_for(self, prep: Prepared) -> int:
        """Runs needed: 2. The GP does not need a run per mean parameter: its kernel carries the
        mixture effect under priors, and the mean's mixture exponents are only fitted where
        the table has at least K + 2 distinct mixtures (below that they stay 0 and the mean is
        the scale trend alone, see :meth:`_fit_scaling_mean`), so every parameter that is
        fitted is identified; the scale exponents are identified within runs (lengths) and
        across sizes. One run says nothing about how the mixture matters."""
        return 2

    def min_runs_why(self, prep: Prepared, need: int) -> str:
        return ("two mixtures at the least for its kernel to compare; its mean's "
                f"{self.n_params(len(prep.domains))} parameters are fitted only as far as the runs identify them")

    # ---- fitting -------------------------------------------------------------------------
    def _design(self, prep: Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training inputs (encoded), targets and effective checkpoint counts after binning.

        Every run is kept while there are at most ``max_points`` runs: ``bins_per_run`` shrinks
        to ``max_points // runs`` points per run, down to 2 (the last checkpoint and one bin of
        the rest) and then 1 (the last checkpoint alone: the length axis is then learned only
        across runs of different lengths). Dropping whole runs instead, as before, threw away
        mixtures, which are what the model is for. Only beyond ``max_points`` runs are runs
        subsampled (fixed seed, with a warning; ``runs_dropped_`` counts them)."""
        enc = self.encoding_
        idx = np.arange(len(prep.y))
        rng = np.random.default_rng(self.seed)
        self.runs_dropped_ = 0
        if self.exact:
            X = enc.encode(prep.W, prep.m, prep.z)
            self._design_runs = prep.run_ids
            return X, prep.y.copy(), np.ones(len(prep.y))
        runs = np.unique(prep.run_ids)
        R = len(runs)
        keep = np.ones(len(idx), bool)
        if R > self.max_points:
            chosen = rng.choice(runs, size=self.max_points, replace=False)
            keep = np.isin(prep.run_ids, chosen)
            self.runs_dropped_ = R - self.max_points
            warnings.warn(f"mfms-gp: {R} runs exceed max_points={self.max_points}; {self.runs_dropped_} runs "
                          "(chosen at random, fixed seed) are left out of the GP. Raise max_points to keep them.",
                          stacklevel=3)
            R = self.max_points
        bpr = int(min(self.bins_per_run, max(1, self.max_points // max(R, 1))))
        self.points_per_run_ = bpr
        if bpr == 1:  # the last checkpoint of every run
            df = pd.DataFrame({"r": prep.run_ids[keep], "z": prep.z[keep], "i": idx[keep]})
            rows = df.sort_values(["r", "z"], kind="stable").groupby("r", sort=False)["i"].last().to_numpy()
            lz, y, cnt = np.log(prep.z[rows]), prep.y[rows], np.ones(len(rows))
        else:
            rows, lz, y, cnt = bin_checkpoints(prep.run_ids[keep], prep.z[keep], prep.y[keep], idx[keep], bpr)
        X = enc.encode(prep.W[rows], prep.m[rows], np.exp(lz))
        self._design_runs = prep.run_ids[rows]
        return X, y, np.asarray(cnt, dtype=float)

    def _fit(self, prep: Prepared, *, warm_start: LossModel | None = None) -> None:
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        K = len(prep.domains)
        X, y, counts = self._design(prep)
        self.n_train_ = len(y)
        self.counts_ = counts
        Xt = torch.as_tensor(X, dtype=DTYPE)
        if self.noise == "far":  # every design point is one observation; the noise grows below the largest scales
            scale = torch.ones(len(y), dtype=DTYPE)
        else:
            scale = torch.as_tensor(1.0 / counts, dtype=DTYPE)  # noise variance sigma^2 / n_eff
        W_obs = prep.W[prep.final_rows()]
        self.observed_mixtures_ = np.unique(W_obs.round(6), axis=0)[:256]
        y_mean = float(y.mean())
        y_std = float(y.std(ddof=1)) if len(y) > 1 else 1.0
        if not np.isfinite(y_std) or y_std < 1e-12:
            y_std = 1.0
        Yt = torch.tensor(y, dtype=DTYPE).unsqueeze(-1)

        covar = _make_covar(K)
        mean = _make_mean(K + 2, self.mean)
        lik = _make_likelihood(self.noise_floor)
        if self.noise == "far":
            lik.set_reference(Xt[:, K:].max(0).values)
        prev = warm_start if isinstance(warm_start, MFMSGP) and hasattr(warm_start, "hypers_") else None
        warm = (prev is not None and prev.hypers_["K"] == K and prev.mean == self.mean
                and getattr(prev, "noise", "count") == self.noise)
        if warm:
            covar.load_state_dict(prev.hypers_["covar"])
            mean.load_state_dict(prev.hypers_["mean"])
            lik.load_state_dict(prev.hypers_["lik"])
            maxiter = self.warm_maxiter
        else:
            maxiter = self.maxiter
        ys = (y - y_mean) / y_std
        # a loss (cross-entropy) is never negative and falls with scale: the scaling mean keeps
        # to that, so a few runs cannot extrapolate it below zero at a larger target
        floor = -y_mean / y_std if _is_loss(prep.objective) else None
        if self.mean == "linear" and not warm:
            coef, *_ = np.linalg.lstsq(X, ys, rcond=None)
            with torch.no_grad():
                mean.weights.copy_(torch.as_tensor(coef, dtype=DTYPE).unsqueeze(-1))
        elif self.mean != "linear":
            # the mixture exponents only where the runs identify them (>= K + 2 mixtures)
            self.mean_mixture_terms_ = len(np.unique(prep.W.round(6), axis=0)) >= K + 2
            if not (warm and maxiter <= 0 and self._keep_scaling_mean(mean, prev, X, y_mean, y_std)):
                self._fit_scaling_mean(mean, X, ys, prev.hypers_["mean"] if warm else None,
                                       mixture=self.mean_mixture_terms_, floor=floor)

        # hyperparameters on a subset, in standardised units
        rng = np.random.default_rng(self.seed)
        n = len(y)
        if n <= self.max_fit_points:
            sub = np.arange(n)
        else:  # whole runs (their learning curves inform the steps kernel), in random order
            runs_d = self._design_runs
            order = rng.permutation(np.unique(runs_d))
            counts = pd.Series(runs_d).value_counts()
            take = order[np.cumsum(counts.loc[order].to_numpy()) <= self.max_fit_points]
            sub = np.flatnonzero(np.isin(runs_d, take)) if len(take) else np.sort(
                rng.choice(n, self.max_fit_points, replace=False))
        Ys = (Yt[sub] - y_mean) / y_std
        self.fit_ok_ = True
        self.neg_mll_ = math.nan
        self.fit_message_ = ("hyperparameters not re-learned (maxiter 0): the warm start's are used" if maxiter <= 0
                             else "")
        if maxiter > 0:
            lik.set_train(Xt[sub], scale[sub])
            m_sub = SingleTaskGP(Xt[sub], Ys, likelihood=lik, covar_module=covar, mean_module=mean,
                                 outcome_transform=None)
            mll = ExactMarginalLogLikelihood(m_sub.likelihood, m_sub)
            self.fit_ok_, self.fit_message_ = _fit_hypers(mll, maxiter)
            # the fitted subset's negative log likelihood (per point): lets a caller compare a
            # warm-started fit with a cold one on the same data (the strategies' Surrogate)
            if self.fit_ok_:
                try:
                    self.neg_mll_ = _neg_mll(mll)
                except Exception:  # noqa: BLE001 - only a comparison score; nan never wins one
                    self.neg_mll_ = math.nan
            if not self.fit_ok_:
                warnings.warn(f"mfms-gp: {self.fit_message_}. Predictions use the starting hyperparameters "
                              "(fit_ok_ is False); refit with more data, a larger maxiter or another seed.",
                              stacklevel=3)
        if self.mean != "linear" and floor is not None:
            _project_scaling_mean(mean, floor, K)
        self.hypers_ = {"K": K, "covar": {k: v.clone() for k, v in covar.state_dict().items()},
                        "mean": {k: v.clone() for k, v in mean.state_dict().items()},
                        "lik": {k: v.clone() for k, v in lik.state_dict().items()}}

        # the exact solve on every design point, hyperparameters frozen
        for mod in (covar, mean, lik):
            for p in mod.parameters():
                p.requires_grad_(False)
        self._stgp = None
        self._lik = lik
        self.Y_train_ = Yt
        self.y_mean_, self.y_std_ = y_mean, y_std
        # the direct predictor: one Cholesky of the train covariance, reused by every prediction
        lik.set_train(Xt, scale)
        with torch.no_grad():
            Kxx = covar(Xt).to_dense()
            Kxx = Kxx + torch.diag(lik.train_noise(len(Xt)))
            L, info = torch.linalg.cholesky_ex(Kxx)
            jitter = 1e-8
            self.jitter_ = 0.0
            while int(info) != 0 and jitter <= 1e-2:
                L, info = torch.linalg.cholesky_ex(Kxx + jitter * torch.eye(len(Xt), dtype=DTYPE))
                self.jitter_ = jitter
                jitter *= 10
            if int(info) != 0:
                raise ValidationError(
                    f"mfms-gp: the training covariance ({len(Xt)} points) is not positive definite even with "
                    f"a jitter of 1e-2 of the prior variance (Cholesky failed at column {int(info)}); "
                    f"hyperparameters: {_describe_hypers(covar, lik)}.",
                    fix="check the table for duplicated runs with different losses or extreme values, raise "
                        "noise_floor (e.g. 1e-4), or refit with another seed.")
            resid = ((Yt.squeeze(-1) - y_mean) / y_std) - mean(Xt)
            self.L_ = L
            self.alpha_ = torch.cholesky_solve(resid.unsqueeze(-1), L).squeeze(-1)
            self.outputscale_ = float(covar.outputscale)
        self.X_train_ = Xt
        self.covar_, self.mean_module_ = covar, mean

    def _keep_scaling_mean(self, mean, prev: "MFMSGP", X: np.ndarray, y_mean: float, y_std: float) -> bool:
        """Where the hyperparameters are not re-learned (a warm start with maxiter 0), keep the
        previous fit's scaling mean too, re-expressed in this fit's standardisation, instead
        of re-fitting it by least squares: the mean is a hyperparameter the marginal likelihood
        shaped, and its least-squares refit alone, on a few runs, swung a 9-run study's
        prediction at a 1B target from 1.18 to 0.58 with one more run. False (refit) where the
        axes the data varies or the use of the mixture terms changed."""
        # the mask's first K entries are the mixture-terms flag: equal masks, same law shape
        old_mask = prev.hypers_["mean"]["mask"].numpy().astype(bool)
        if not np.array_equal(_mean_columns(X, self.mean_mixture_terms_), old_mask):
            return False
        # objective = y_mean + y_std (c + k e): the same law in the new units
        c_old, k_old = float(prev.hypers_["mean"]["c"]), float(prev.hypers_["mean"]["k"])
        with torch.no_grad():
            mean.c.fill_((prev.y_mean_ + prev.y_std_ * c_old - y_mean) / y_std)
            mean.k.fill_(k_old * prev.y_std_ / y_std)
        return True

    def _fit_scaling_mean(self, mean, X: np.ndarray, ys: np.ndarray, prev: dict | None, *,
                          mixture: bool = True, floor: float | None = None) -> None:
        """Least squares of ``c + k exp(X @ t)`` on the standardised design (axes the data does
        not vary get t = 0, and so do the mixture columns when ``mixture`` is False: too few
        distinct mixtures to identify them); warm-started from ``prev``. With ``floor`` (a
        loss: the standardised value of a zero loss) the law is a loss's: ``c >= floor``,
        ``k >= 0`` and non-positive size and length exponents, so it decreases with scale
        towards an irreducible loss that is not negative (:func:`_physical_bounds`)."""
        from scipy.optimize import least_squares

        K = X.shape[1] - 2
        cols = _mean_columns(X, mixture)
        F = X[:, cols]
        d = F.shape[1]
        lam = 1e-3

        def res(p):
            return np.r_[p[0] + p[1] * np.exp(np.clip(F @ p[2:], -50, 50)) - ys, lam * p[2:]]

        def jac(p):
            e = np.exp(np.clip(F @ p[2:], -50, 50))
            J = np.column_stack([np.ones(len(F)), e, p[1] * e[:, None] * F])
            return np.vstack([J, np.column_stack([np.zeros((d, 2)), lam * np.eye(d)])])

        n_mix = int(cols[:K].sum())
        lo, hi = _physical_bounds(floor, n_mix, d - n_mix)
        starts = []
        if prev is not None:
            starts.append(np.r_[float(prev["c"]), float(prev["k"]), prev["t"].numpy()[cols]])
        else:
            # a decreasing (k > 0, t < 0 along the scale axes) and, for a metric, an increasing start
            t0 = np.zeros(d)
            t0[n_mix:] = -1.0  # the scale axes follow the (active) mixture columns
            starts.append(np.r_[-1.0 if floor is None else max(-1.0, floor + 0.5), 1.0, t0])
            if floor is None:
                starts.append(np.r_[1.0, -1.0, t0])
        best = None
        for p0 in starts:
            try:
                r = least_squares(res, np.clip(p0, lo, hi), jac=jac, method="trf", bounds=(lo, hi),
                                  max_nfev=200 if prev is None else 50)
            except (ValueError, FloatingPointError):
                continue
            if best is None or r.cost < best.cost:
                best = r
        t = np.zeros(K + 2)
        if best is not None and np.isfinite(best.x).all():
            t[cols] = best.x[2:]
            c, k = best.x[0], best.x[1]
        else:
            c, k = 0.0, 0.0
        with torch.no_grad():
            mean.c.fill_(float(c))
            mean.k.fill_(float(k))
            mean.t.copy_(torch.as_tensor(t, dtype=DTYPE))
            mean.mask.copy_(torch.as_tensor(cols, dtype=DTYPE))

    # ---- torch-level access for BO -------------------------------------------------------
    @property
    def botorch_model(self):
        """A BoTorch ``Model`` of this fit on inputs ``transform(query)``: its ``posterior(X)``
        (X of shape batch x q x (K+2)) is the joint Gaussian posterior of the latent objective in
        objective units, computed from the cached Cholesky (no cache to build: the first call is
        as cheap as the next). Works with analytic and MC acquisition functions (LogEI, qLogEI,
        X_pending). For methods that condition the model (fantasies, knowledge gradient) use
        :attr:`singletask_gp`."""
        self._check_fitted()
        if getattr(self, "_direct", None) is None:
            self._direct = _DirectPosteriorModel(self)
        return self._direct

    @property
    def singletask_gp(self):
        """The same fit as a BoTorch ``SingleTaskGP`` (Standardize outcome transform, frozen
        hyperparameters), built on first use; same posterior as :attr:`botorch_model`."""
        self._check_fitted()
        if self._stgp is None:
            from botorch.models import SingleTaskGP
            from botorch.models.transforms.outcome import Standardize

            tf = Standardize(m=1)
            model = SingleTaskGP(self.X_train_, self.Y_train_, likelihood=self._lik, covar_module=self.covar_,
                                 mean_module=self.mean_module_, outcome_transform=tf)
            with torch.no_grad():  # pin Standardize's stats to ours (same formula)
                tf.means.fill_(self.y_mean_)
                tf.stdvs.fill_(self.y_std_)
                tf._stdvs_sq.fill_(self.y_std_ ** 2)
            model.eval()
            self._stgp = model
        return self._stgp

    def fidelity_model(self, model_params: float, *, steps: float | None = None, tokens: float | None = None):
        """A BoTorch ``Model`` over the mixture alone (inputs: the K weights) at one fidelity
        (model size, length): the exact posterior of this GP on that slice, computed in
        O(R^2) per point (R = distinct training mixtures) instead of O(n^2).

        Why it is exact and cheap: with the product kernel, ``k(x, x_i) = k_w(w, w_i) c_i``
        where ``c_i = s^2 k_m(u_m, u_m,i) k_z(u_z, u_z,i)`` is fixed on the slice, and the n
        training points take only R distinct mixtures (a run's points share its w). So the mean
        is ``m(x) + k_w(w, W) beta`` with ``beta_r = sum_{i in r} c_i alpha_i`` and the
        variance ``s^2 - k_w(w, W)^T M k_w(w, W)`` with ``M = P^T diag(c) K^-1 diag(c) P``
        (P: point -> mixture), built in O(n^2) per fidelity from a K^-1 cached per fit (the
        explicit inverse: covariances agree with :attr:`botorch_model` to ~1e-6 of the prior
        variance, which matters only for near-noiseless data).
        Use it for EI over w at each (size, steps) on offer (``optimize_acqf`` with the simplex
        constraint over K columns, no fixed features)."""
        self._check_fitted()
        return _FidelityModel(self, float(model_params), self.encoding_.z_from(steps=steps, tokens=tokens))

    def _slice_terms(self, model_params: float, z: float):
        """(W_runs, beta, M, u_m, u_z) for :meth:`fidelity_model`, cached per fidelity."""
        cache = self.__dict__.setdefault("_slice_cache", {})
        key = (float(model_params), float(z))
        if key in cache:
            return cache[key]
        K = len(self.domains_)
        with torch.no_grad():
            if getattr(self, "_Kinv", None) is None:
                Kinv = torch.cholesky_inverse(self.L_)
                # one step of iterative refinement: the explicit inverse of a near-noiseless
                # covariance loses digits that the slice variance (a difference) needs
                Kmat = self.L_ @ self.L_.T
                I = torch.eye(len(Kinv), dtype=DTYPE)
                self._Kinv = Kinv + Kinv @ (I - Kmat @ Kinv)
                Wtr = self.X_train_[:, :K]
                uniq, inv = torch.unique(Wtr, dim=0, return_inverse=True)
                self._W_runs, self._P = uniq, inv
            u = torch.as_tensor(self.encoding_.encode(np.full((1, K), 1.0 / K), model_params, z)[0, K:], dtype=DTYPE)
            x = torch.cat([torch.full((K,), 1.0 / K, dtype=DTYPE), u]).unsqueeze(0)
            # c_i = s^2 k_m k_z: the full kernel with the w-part switched off (w = w_i)
            Xw = self.X_train_.clone()
            Xq = Xw.clone()
            Xq[:, K:] = u
            c = self._kernel_diag_pairs(Xq, Xw)
            R = len(self._W_runs)
            P = self._P
            beta = torch.zeros(R, dtype=DTYPE).index_add_(0, P, c * self.alpha_)
            Cs = c.unsqueeze(-1) * self._Kinv * c.unsqueeze(0)
            M = torch.zeros(R, len(c), dtype=DTYPE).index_add_(0, P, Cs)
            M = torch.zeros(R, R, dtype=DTYPE).index_add_(1, P, M)
        out = (self._W_runs, beta, M, u, x)
        if len(cache) > 64:
            cache.clear()
        cache[key] = out
        return out

    def _kernel_diag_pairs(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """k(A_i, B_i) for paired rows (same product kernel as :meth:`_kernel`)."""
        K = len(self.domains_)
        base = self.covar_.base_kernel
        poly = dsum = None
        for kern, sl in zip(base.kernels, (slice(0, K), slice(K, K + 1), slice(K + 1, K + 2))):
            ls = kern.lengthscale.reshape(-1)
            d = (((A[:, sl] - B[:, sl]) / ls) ** 2).sum(-1).clamp_min(1e-30).sqrt() * math.sqrt(5.0)
            p = 1.0 + d * (1.0 + d / 3.0)
            poly = p if poly is None else poly * p
            dsum = d if dsum is None else dsum + d
        return poly * torch.exp(-dsum) * self.outputscale_

    def _kernel_w(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """The mixture factor k_w(A, B) alone (A, B: (..., K))."""
        kern = self.covar_.base_kernel.kernels[0]
        ls = kern.lengthscale.reshape(-1)
        a, b = A / ls, B / ls
        d2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2.0 * a @ b.transpose(-1, -2)
        d = d2.clamp_min(1e-30).sqrt() * math.sqrt(5.0)
        return (1.0 + d * (1.0 + d / 3.0)) * torch.exp(-d)

    def posterior_slice(self, Wq: torch.Tensor, model_params: float, z: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint posterior (mean (..., q), cov (..., q, q)) at mixtures Wq (..., q, K) on one
        fidelity, objective units, differentiable in Wq (see :meth:`fidelity_model`)."""
        W_runs, beta, M, u, _ = self._slice_terms(model_params, z)
        kw = self._kernel_w(Wq, W_runs)  # (..., q, R)
        X = torch.cat([Wq, u.expand(*Wq.shape[:-1], 2)], -1)
        mu = self.mean_module_(X) + kw @ beta
        prior = self.outputscale_ * self._kernel_w(Wq, Wq)  # k_m = k_z = 1 on the slice
        cov = prior - kw @ M @ kw.transpose(-1, -2)
        cov = cov + 1e-10 * self.outputscale_ * torch.eye(Wq.shape[-2], dtype=Wq.dtype)
        return mu * self.y_std_ + self.y_mean_, cov * self.y_std_ ** 2

    def posterior_joint(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint posterior (mean (..., q), covariance (..., q, q)) at X (..., q, K+2), objective
        units, differentiable in X."""
        k = self._kernel(X, self.X_train_)
        mu = self.mean_module_(X) + k @ self.alpha_
        L = self.L_
        V = torch.linalg.solve_triangular(L, k.transpose(-1, -2), upper=False)
        cov = self._kernel(X, X) - V.transpose(-1, -2) @ V
        q = X.shape[-2]
        cov = cov + 1e-10 * torch.eye(q, dtype=X.dtype)
        return mu * self.y_std_ + self.y_mean_, cov * self.y_std_ ** 2

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
        """Posterior mean and std of the latent objective at encoded inputs X (n, K+2), in
        objective units, differentiable in X. Same numbers as ``botorch_model.posterior(X)``
        (up to jitter), computed from the cached Cholesky without GPyTorch's lazy machinery."""
        k = self._cross_kernel(X)
        mu = self.mean_module_(X) + k @ self.alpha_
        v = torch.linalg.solve_triangular(self.L_, k.transpose(-1, -2), upper=False)
        var = (self.outputscale_ - (v * v).sum(-2)).clamp_min(1e-12)
        return mu * self.y_std_ + self.y_mean_, var.sqrt() * self.y_std_

    def _structure(self):
        """The training design's structure, cached per fit: its n points take R distinct
        mixtures (a run's points share its w) and P distinct (size, length) pairs, so
        ``k(x, x_i) = s^2 k_w(w, W[iw_i]) k_mz(x, MZ[ip_i])``; returns (W, iw, MZ, ip, A) with
        ``A[r, p]`` the sum of ``alpha_i`` over the points of mixture r at pair p (None where
        R x P is too large to be worth it)."""
        st = self.__dict__.get("_structure_cache")
        if st is not None and st[0] is self.X_train_:
            return st[1]
        K = len(self.domains_)
        Wu, iw = torch.unique(self.X_train_[:, :K], dim=0, return_inverse=True)
        MZ, ip = torch.unique(self.X_train_[:, K:], dim=0, return_inverse=True)
        n, R, P = len(iw), len(Wu), len(MZ)
        A = None
        if R * P <= min(64 * n, 5_000_000):
            A = torch.zeros(R, P, dtype=DTYPE).index_put_((iw, ip), self.alpha_, accumulate=True)
        out = (Wu, iw, MZ, ip, A)
        self._structure_cache = (self.X_train_, out)
        return out

    def _factors(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_w against the R distinct mixtures, k_m k_z against the P distinct pairs) at X."""
        K = len(self.domains_)
        Wu, _, MZ, _, _ = self._structure()
        kw_, km_, kz_ = (k.lengthscale.reshape(-1) for k in self.covar_.base_kernel.kernels)
        kw = self._matern(X[..., :K], Wu, kw_)
        kmz = self._matern(X[..., K:K + 1], MZ[:, :1], km_) * self._matern(X[..., K + 1:K + 2], MZ[:, 1:], kz_)
        return kw, kmz

    def _cross_kernel(self, X: torch.Tensor) -> torch.Tensor:
        """k(X, X_train) through :meth:`_structure`: each Matern factor against the distinct
        training values only, then gathered (the same numbers as :meth:`_kernel`; at 100k query
        rows the direct kernel was 2/3 of the prediction time)."""
        _, iw, _, ip, _ = self._structure()
        kw, kmz = self._factors(X)
        return kw.index_select(-1, iw) * kmz.index_select(-1, ip) * self.outputscale_

    def _latent_mean(self, X: torch.Tensor) -> torch.Tensor:
        """Posterior mean (standardised units) without forming k(X, X_train) where the design's
        structure allows: ``sum_{r,p} k_w[r] k_mz[p] A[r, p]``, O(R P) per row instead of O(n)."""
        A = self._structure()[4]
        if A is None:
            return self.mean_module_(X) + self._cross_kernel(X) @ self.alpha_
        kw, kmz = self._factors(X)
        return self.mean_module_(X) + ((kw @ A) * kmz).sum(-1) * self.outputscale_

    @staticmethod
    def _distance(A: torch.Tensor, B: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
        """sqrt(5) x the scaled distance between rows of A (..., q, d) and B (r, d): what a
        Matern-5/2 factor with lengthscales ls reads."""
        a, b = A / ls, B / ls
        if a.shape[-1] == 1:
            d = (a - b.transpose(-1, -2)).abs()
        else:
            d2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2.0 * a @ b.transpose(-1, -2)
            d = d2.clamp_min(1e-30).sqrt()
        return d * math.sqrt(5.0)

    @staticmethod
    def _matern(A: torch.Tensor, B: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
        """Matern-5/2 correlation between rows of A (..., q, d) and B (r, d), lengthscales ls."""
        d = MFMSGP._distance(A, B, ls)
        return (1.0 + d * (1.0 + d / 3.0)) * torch.exp(-d)

    def _kernel(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """k(A, B) computed directly: the same product of Matern-5/2 kernels as ``covar_``
        (several times faster than the lazy-tensor path for prediction)."""
        K = len(self.domains_)
        base = self.covar_.base_kernel
        poly = dsum = None
        for kern, sl in zip(base.kernels, (slice(0, K), slice(K, K + 1), slice(K + 1, K + 2))):
            d = self._distance(A[..., sl], B[..., sl], kern.lengthscale.reshape(-1))
            p = 1.0 + d * (1.0 + d / 3.0)
            poly = p if poly is None else poly * p
            dsum = d if dsum is None else dsum + d
        # prod_i (1 + d_i + d_i^2/3) exp(-d_i) with one exp
        return poly * torch.exp(-dsum) * self.outputscale_

    def _predict_mean_arrays(self, W, m, z):
        """Posterior mean only: O(n) per row (no triangular solve), for scoring many rows."""
        X = torch.as_tensor(self.encoding_.encode(W, m, z), dtype=DTYPE)
        out = []
        with torch.no_grad():
            for s in range(0, len(X), 2048):
                out.append((self._latent_mean(X[s:s + 2048]) * self.y_std_ + self.y_mean_).numpy())
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
            mu = self.predict_tensor(x)[0].sum() * sign
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


def _DirectPosteriorModel(gp: MFMSGP):
    """A minimal BoTorch ``Model`` around a fitted MFMSGP (see ``MFMSGP.botorch_model``)."""
    from botorch.models.model import Model
    from botorch.posteriors.gpytorch import GPyTorchPosterior
    from gpytorch.distributions import MultivariateNormal

    class DirectPosteriorModel(Model):
        _num_outputs = 1

        def __init__(self, gp):
            super().__init__()
            self._gp = [gp]  # a list: not registered as a submodule

        @property
        def num_outputs(self) -> int:
            return 1

        @property
        def batch_shape(self) -> torch.Size:
            return torch.Size([])

        def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kw):
            gp = self._gp[0]
            mean, cov = gp.posterior_joint(X)
            if observation_noise is True:
                noise = float(gp._lik.noise.reshape(-1)[0]) * gp.y_std_ ** 2
                cov = cov + noise * torch.eye(X.shape[-2], dtype=X.dtype)
            post = GPyTorchPosterior(MultivariateNormal(mean, cov))
            return posterior_transform(post) if posterior_transform is not None else post

        def forward(self, X):  # pragma: no cover - Model requires it; posterior is the API
            mean, cov = self._gp[0].posterior_joint(X)
            return MultivariateNormal(mean, cov)

    return DirectPosteriorModel(gp)


def _FidelityModel(gp: MFMSGP, model_params: float, z: float):
    """BoTorch ``Model`` over w (K inputs) at one fidelity; see ``MFMSGP.fidelity_model``."""
    from botorch.models.model import Model
    from botorch.posteriors.gpytorch import GPyTorchPosterior
    from gpytorch.distributions import MultivariateNormal

    class FidelityModel(Model):
        def __init__(self):
            super().__init__()
            self._gp = [gp]
            self.model_params, self.z = model_params, z
            gp._slice_terms(model_params, z)  # build the O(n^2) terms now, not inside the optimiser

        @property
        def num_outputs(self) -> int:
            return 1

        @property
        def batch_shape(self) -> torch.Size:
            return torch.Size([])

        def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kw):
            mean, cov = self._gp[0].posterior_slice(X, self.model_params, self.z)
            post = GPyTorchPosterior(MultivariateNormal(mean, cov))
            return posterior_transform(post) if posterior_transform is not None else post

        def forward(self, X):  # pragma: no cover
            mean, cov = self._gp[0].posterior_slice(X, self.model_params, self.z)
            return MultivariateNormal(mean, cov)

    return FidelityModel()


class MFMSGPExact(MFMSGP):
    """MFMS-GP on every checkpoint, no binning, hyperparameters on all points (small data)."""

    name = "mfms-gp-exact"

    def __init__(self, *, maxiter: int = 100, warm_maxiter: int = 15, noise_floor: float = 1e-6,
                 num_threads: int | None = 1, seed: int = 0):
        super().__init__(exact=True, max_fit_points=10 ** 9, maxiter=maxiter, warm_maxiter=warm_maxiter,
                         noise_floor=noise_floor, num_threads=num_threads,
                         seed=seed)
