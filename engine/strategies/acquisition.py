"""Cost-aware expected improvement over (mixture, fidelity), shared by the BO strategies.

For each fidelity f = (model size, steps) on offer, the improvement of a mixture w is measured
against **that fidelity's own incumbent** ``best_f[f]``: the best posterior mean at f over the
mixtures already observed (anywhere). Comparing every fidelity against the single best value
(which sits at the largest scale) would give cheap fidelities no improvement at all and make
EI/cost always choose the most expensive run. The score of (w, f) is then

    log EI_f(w) - log cost(f)          (BoTorch's numerically stable LogEI)

Search: a screening set of mixtures (Dirichlet draws + perturbations of good mixtures) is
scored at every fidelity in one batched posterior (LOVE variances); the best few fidelities
are refined over w with BoTorch's ``optimize_acqf`` (``LogExpectedImprovement``, the simplex as
an equality constraint, the per-domain bounds as box bounds, the size/steps inputs as fixed
features), started from the screening's best mixtures. Batches (q > 1) and pending trials use
the kriging believer: the GP is conditioned on each chosen or pending point at its posterior
mean, which shrinks the uncertainty (and so the EI) there, so the next pick differs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from engine.strategies import space
from engine.strategies.base import Fidelity


@dataclass(frozen=True)
class Pick:
    """One chosen point: the mixture, the fidelity, log EI there, the score
    (log EI - log cost) and the incumbent it was measured against."""

    w: np.ndarray
    fidelity: Fidelity
    log_ei: float
    score: float
    best_f: float


def log_ei(mu, sd, best_f, maximize: bool):
    """BoTorch's stable log expected improvement, vectorised (torch tensors)."""
    import torch
    from botorch.acquisition.analytic import _log_ei_helper

    sd = sd.clamp_min(1e-12)
    u = (mu - best_f) / sd if maximize else (best_f - mu) / sd
    return _log_ei_helper(u) + torch.log(sd)


def fidelity_incumbents(sur, W_obs: np.ndarray, fids: list[Fidelity], maximize: bool,
                        max_mixtures: int = 48) -> np.ndarray:
    """best_f per fidelity: the best posterior mean over the observed mixtures set to it.
    With many observed mixtures, the ``max_mixtures`` best by predicted mean averaged over
    the fidelities' sizes/steps (a cheap pre-screen on a few fidelities) are used."""
    import torch

    if len(W_obs) > max_mixtures:
        probe = [fids[0], fids[len(fids) // 2], fids[-1]]
        score = sum(means(sur.gp, sur.encode(W_obs, f.model_params, f.steps)) for f in probe)
        order = np.argsort(-score if maximize else score)
        W_obs = W_obs[order[:max_mixtures]]
    n = len(W_obs)
    X = torch.cat([sur.encode(W_obs, f.model_params, f.steps) for f in fids])
    mu = means(sur.gp, X).reshape(len(fids), n)
    return mu.max(axis=1) if maximize else mu.min(axis=1)


def believe(gp, X):
    """The GP conditioned on X at its own posterior mean (kriging believer), as a GPView."""
    return view(gp).believe(X)


def _matern(kernel, X1, X2):
    """A Matern kernel matrix computed directly (gpytorch's generic path is ~20x slower here)."""
    import torch

    dims = kernel.active_dims
    a = X1 if dims is None else X1[..., dims]
    b = X2 if dims is None else X2[..., dims]
    ls = kernel.lengthscale.reshape(-1)
    r = torch.cdist(a / ls, b / ls)
    nu = kernel.nu
    if nu == 2.5:
        if r.requires_grad:
            s5 = math.sqrt(5.0) * r
            return (1.0 + s5 + s5 * s5 / 3.0) * torch.exp(-s5)
        s5 = r.mul_(math.sqrt(5.0))
        out = torch.exp(-s5)
        return out.mul_(s5.mul(s5).div_(3.0).add_(s5).add_(1.0))
    if nu == 1.5:
        s3 = math.sqrt(3.0) * r
        return (1.0 + s3) * torch.exp(-s3)
    return torch.exp(-r)


def kernel_matrix(covar, X1, X2):
    """covar(X1, X2) as a dense tensor: a fast path for ScaleKernel(product of Materns), the
    structure ``mfms-gp`` uses, else gpytorch's own evaluation."""
    from gpytorch.kernels import MaternKernel, ProductKernel, ScaleKernel

    if isinstance(covar, ScaleKernel):
        base = covar.base_kernel
        parts = base.kernels if isinstance(base, ProductKernel) else [base]
        if all(isinstance(k, MaternKernel) and k.lengthscale.dim() <= 2 and k.lengthscale.shape[0] == 1
               for k in parts):
            out = None
            for k in parts:
                m = _matern(k, X1, X2)
                out = m if out is None else out * m
            return covar.outputscale.reshape(-1)[0] * out
    return covar(X1, X2).to_dense()


def kernel_pairs(covar, X1, X2):
    """k(X1[i], X2[i]) for every row i (paired, not the full matrix)."""
    import torch
    from gpytorch.kernels import MaternKernel, ProductKernel, ScaleKernel

    if isinstance(covar, ScaleKernel):
        base = covar.base_kernel
        parts = base.kernels if isinstance(base, ProductKernel) else [base]
        if all(isinstance(k, MaternKernel) for k in parts):
            out = torch.ones(len(X1), dtype=X1.dtype)
            for k in parts:
                dims = k.active_dims
                a = X1 if dims is None else X1[..., dims]
                b = X2 if dims is None else X2[..., dims]
                r = ((a - b) / k.lengthscale.reshape(-1)).pow(2).sum(-1).sqrt()
                if k.nu == 2.5:
                    s5 = math.sqrt(5.0) * r
                    out = out * (1.0 + s5 + s5 * s5 / 3.0) * torch.exp(-s5)
                elif k.nu == 1.5:
                    s3 = math.sqrt(3.0) * r
                    out = out * (1.0 + s3) * torch.exp(-s3)
                else:
                    out = out * torch.exp(-r)
            return covar.outputscale.reshape(-1)[0] * out
    return covar(X1, X2, diag=True).to_dense()


class GPView:
    """The parts of a fitted SingleTaskGP that prediction needs (kernel, mean, noise, outcome
    standardisation, training data), with the Cholesky factor cached. :meth:`believe` returns
    the view conditioned on new inputs at its own posterior mean (kriging believer) without
    building gpytorch fantasy models. Works for a homoscedastic Gaussian likelihood (or
    mfms-gp's count-scaled one, whose ``train_noise`` gives the per-point noise), a stationary
    kernel and an optional Standardize outcome transform (what ``mfms-gp`` fits)."""

    def __init__(self, gp, X=None, y=None) -> None:
        import torch

        self.gp = gp
        self.covar = gp.covar_module
        self.mean = gp.mean_module
        self.X = gp.train_inputs[0] if X is None else X
        self.y = gp.train_targets if y is None else y  # standardised targets
        tf = getattr(gp, "outcome_transform", None)
        self.y_mean = float(tf.means.reshape(-1)[0]) if tf is not None else 0.0
        self.y_std = float(tf.stdvs.reshape(-1)[0]) if tf is not None else 1.0
        with torch.no_grad():
            n = self.X.shape[-2]
            K = kernel_matrix(self.covar, self.X, self.X)
            lik = gp.likelihood
            if hasattr(lik, "train_noise"):  # mfms-gp: sigma^2 / n_eff on training points, sigma^2 on new ones
                K = K + torch.diag_embed(lik.train_noise(n))
            else:
                K = K + torch.diag_embed(lik.noise.reshape(-1)[:1].expand(n))
            for jitter in (0.0, 1e-8, 1e-6, 1e-4):
                L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(n, dtype=K.dtype))
                if int(info) == 0:
                    break
            self.L = L
            self.alpha = torch.cholesky_solve((self.y - self.mean(self.X)).unsqueeze(-1), L)
            self.prior = kernel_matrix(self.covar, self.X[:1], self.X[:1]).reshape(-1)[0]

    def believe(self, Xnew) -> "GPView":
        """This view conditioned on Xnew at its posterior mean."""
        import torch

        if Xnew is None or len(Xnew) == 0:
            return self
        with torch.no_grad():
            mu, _ = marginals(self, Xnew)
            ys = (mu - self.y_mean) / self.y_std
        return GPView(self.gp, torch.cat([self.X, Xnew]), torch.cat([self.y, ys]))


def view(gp) -> GPView:
    """A cached :class:`GPView` of a fitted GP (or the view itself)."""
    if isinstance(gp, GPView):
        return gp
    v = getattr(gp, "_mixplan_view", None)
    if v is None or v.X is not gp.train_inputs[0]:
        v = GPView(gp)
        gp._mixplan_view = v
    return v


def marginals(gp, X):
    """Posterior mean and std (objective units) of the latent function at each row of X (n, d),
    computed directly from a cached Cholesky of the training covariance: O(m n) for the
    mean and O(m n^2) for the variances, with none of the joint (m x m) covariance that
    ``gp.posterior(X)`` builds and no gpytorch overhead. Differentiable in X. ``gp`` is a
    fitted SingleTaskGP or a :class:`GPView`; the values equal ``gp.posterior(x).mean`` /
    ``.variance.sqrt()`` row by row (tested to 1e-10)."""
    import torch

    v = view(gp)
    Ks = kernel_matrix(v.covar, X, v.X)
    mu = v.mean(X) + (Ks @ v.alpha).squeeze(-1)
    V = torch.linalg.solve_triangular(v.L, Ks.transpose(-1, -2), upper=False)
    var = (v.prior - (V * V).sum(-2)).clamp_min(1e-18)
    return mu * v.y_std + v.y_mean, var.sqrt() * v.y_std


def target_corr(gp, X, Xt):
    """Posterior correlation between f(X[i]) and f(Xt[i]), row by row (differentiable in X)."""
    import torch

    v = view(gp)
    Kf = kernel_matrix(v.covar, X, v.X)
    Kt = kernel_matrix(v.covar, Xt, v.X)
    Vf = torch.linalg.solve_triangular(v.L, Kf.transpose(-1, -2), upper=False)
    Vt = torch.linalg.solve_triangular(v.L, Kt.transpose(-1, -2), upper=False)
    var_f = (v.prior - (Vf * Vf).sum(-2)).clamp_min(1e-18)
    var_t = (v.prior - (Vt * Vt).sum(-2)).clamp_min(1e-18)
    cov = kernel_pairs(v.covar, X, Xt) - (Vf * Vt).sum(-2)
    return (cov / (var_f * var_t).sqrt()).clamp(1e-3, 1.0)


def _at_target(X, target_cols):
    """X with its size/steps columns replaced by the target's."""
    Xt = X.clone()
    K = X.shape[-1] - 2
    Xt[..., K] = target_cols[0]
    Xt[..., K + 1] = target_cols[1]
    return Xt


def means(gp, X) -> np.ndarray:
    """Posterior means only (no variances: O(m n))."""
    import torch

    v = view(gp)
    with torch.no_grad():
        out = []
        for s in range(0, len(X), 4096):
            Ks = kernel_matrix(v.covar, X[s:s + 4096], v.X)
            mu = v.mean(X[s:s + 4096]) + (Ks @ v.alpha).squeeze(-1)
            out.append(mu * v.y_std + v.y_mean)
        return torch.cat(out).numpy() if out else np.zeros(0)


def _no_grad_marginals(gp, X):
    import torch

    with torch.no_grad():
        return marginals(gp, X)


def make_log_ei(gp, best_f: float, maximize: bool, target_cols: tuple[float, float] | None = None):
    """A BoTorch acquisition function computing LogEI through :func:`marginals` (fast,
    exact for the GP; q = 1)."""
    import torch
    from botorch.acquisition import AcquisitionFunction

    gpv = view(gp)

    class _LogEI(AcquisitionFunction):
        def __init__(self) -> None:
            super().__init__(model=view(gp).gp)
            self.best_f = float(best_f)
            self.maximize = maximize

        def forward(self, X):
            x = X.squeeze(-2)
            mu, sd = marginals(gpv, x)
            out = log_ei(mu, sd, self.best_f, self.maximize)
            if target_cols is not None:
                out = out + torch.log(target_corr(gpv, x, _at_target(x, target_cols)))
            return out

    return _LogEI()


def _screen(gp, sur, C: np.ndarray, fids: list[Fidelity], best_f: np.ndarray, maximize: bool,
            target_cols: tuple[float, float] | None = None) -> np.ndarray:
    """(len(C), len(fids)) scores log EI - log cost (+ log corr with the target when asked)."""
    import torch

    X = torch.cat([sur.encode(C, f.model_params, f.steps) for f in fids])
    mus, sds, cors = [], [], []
    for s in range(0, len(X), 4096):
        mu, sd = _no_grad_marginals(gp, X[s:s + 4096])
        mus.append(mu)
        sds.append(sd)
        if target_cols is not None:
            with torch.no_grad():
                cors.append(target_corr(gp, X[s:s + 4096], _at_target(X[s:s + 4096], target_cols)))
    mu = torch.cat(mus).reshape(len(fids), len(C))
    sd = torch.cat(sds).reshape(len(fids), len(C))
    bf = torch.as_tensor(best_f, dtype=mu.dtype).unsqueeze(-1)
    lei = log_ei(mu, sd, bf, maximize)
    if target_cols is not None:
        lei = lei + torch.log(torch.cat(cors).reshape(len(fids), len(C)))
    logc = torch.as_tensor([math.log(max(f.cost, 1e-300)) for f in fids], dtype=mu.dtype).unsqueeze(-1)
    return (lei - logc).T.numpy()


def _refine(gp, sur, w0s: np.ndarray, f: Fidelity, best_f: float, bounds: np.ndarray, maximize: bool,
            maxiter: int, target_cols: tuple[float, float] | None = None) -> tuple[np.ndarray, float]:
    """optimize_acqf of LogEI over w at fidelity f from the starts w0s; returns (w, log EI)."""
    import torch
    from botorch.optim import optimize_acqf

    K = len(bounds)
    fixed = sur.fixed_columns(f.model_params, f.steps)
    acq = make_log_ei(gp, best_f, maximize, target_cols)
    lo = torch.tensor(list(bounds[:, 0]) + [fixed[K], fixed[K + 1]], dtype=torch.float64)
    hi = torch.tensor(list(bounds[:, 1]) + [fixed[K], fixed[K + 1]], dtype=torch.float64)
    X0 = sur.encode(w0s, f.model_params, f.steps).unsqueeze(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cand, val = optimize_acqf(
            acq, bounds=torch.stack([lo, hi]), q=1, num_restarts=len(w0s), batch_initial_conditions=X0,
            fixed_features=fixed,
            equality_constraints=[(torch.arange(K), torch.ones(K, dtype=torch.float64), 1.0)],
            options={"maxiter": maxiter, "batch_limit": len(w0s)},
        )
    w = space.project(cand[0, :K].detach().numpy()[None], bounds)[0]
    with torch.no_grad():
        v = float(acq(sur.encode(w, f.model_params, f.steps).unsqueeze(1)))
    return w, v


def select_batch(sur, fids: list[Fidelity], best_f: np.ndarray, q: int, bounds: np.ndarray,
                 rng: np.random.Generator, *, maximize: bool, pending_X=None, around: np.ndarray | None = None,
                 n_screen: int = 384, n_coarse: int = 96, n_fid: int = 4, n_refine: int = 1, n_starts: int = 2,
                 maxiter: int = 30, target_cols: tuple[float, float] | None = None) -> list[Pick]:
    """Choose q (mixture, fidelity) points by log EI_f - log cost_f (see the module docstring).

    Cost-weighted screening: a coarse set of ``n_coarse`` mixtures is scored at every
    fidelity once; the ``n_fid`` fidelities with the best score go on, where ``n_screen``
    mixtures are scored and the best ``n_refine`` fidelities are refined by ``optimize_acqf``.
    After each pick the GP believes it (its posterior mean), and the picked mixture joins the
    observed ones that define every fidelity's incumbent, before the next pick."""
    gp = believe(sur.gp, pending_X)
    best_f = np.array(best_f, dtype=float)
    if pending_X is not None and len(pending_X):
        best_f = _with_believed(gp, sur, pending_X, fids, best_f, maximize)
    logc = np.array([math.log(max(f.cost, 1e-300)) for f in fids])
    C0 = space.candidates(n_coarse, bounds, rng, around=around)
    S0 = _screen(gp, sur, C0, fids, best_f, maximize, target_cols)
    keep = np.argsort(-np.where(np.isfinite(S0), S0, -np.inf).max(axis=0))[: max(1, n_fid)]
    sub = [fids[j] for j in keep]
    picks: list[Pick] = []
    C = np.vstack([space.candidates(n_screen, bounds, rng, around=around), C0])
    for _ in range(q):
        bf = best_f[keep]
        S = _screen(gp, sur, C, sub, bf, maximize, target_cols)
        S = np.where(np.isfinite(S), S, -np.inf)
        # later picks of the batch rescore only the most promising candidates of this screen
        top = np.unique(np.argsort(-S, axis=0)[:48].ravel())
        per_f = S.max(axis=0)
        best: Pick | None = None
        for jj in np.argsort(-per_f)[: max(1, n_refine)]:
            j = int(keep[jj])
            f = fids[j]
            if not np.isfinite(per_f[jj]):
                continue
            col = S[:, jj]
            starts = C[np.argsort(-col)[: max(1, n_starts)]]
            w, lei = starts[0], float(col.max() + logc[j])
            if maxiter > 0:
                try:
                    w2, lei2 = _refine(gp, sur, starts, f, best_f[j], bounds, maximize, maxiter, target_cols)
                    if np.isfinite(lei2) and lei2 >= lei:
                        w, lei = w2, lei2
                except Exception:  # noqa: BLE001 - keep the screened point
                    pass
            cand = Pick(w, f, lei, lei - logc[j], float(best_f[j]))
            if best is None or cand.score > best.score:
                best = cand
        if best is None:  # no uncertainty anywhere: explore at random at the cheapest fidelity
            j = int(np.argmin(logc))
            best = Pick(space.sample(1, bounds, rng)[0], fids[j], float("-inf"), float("-inf"), float(best_f[j]))
        picks.append(best)
        C = np.vstack([C[top], space.candidates(32, bounds, rng, around=best.w[None])])
        if len(picks) < q:
            xb = sur.encode(best.w, best.fidelity.model_params, best.fidelity.steps)
            gp = believe(gp, xb)
            best_f = _with_believed(gp, sur, xb, fids, best_f, maximize)
    return picks


def _with_believed(gp, sur, X, fids: list[Fidelity], best_f: np.ndarray, maximize: bool) -> np.ndarray:
    """Incumbents once the (believed) points X count as observed: their mixtures join the
    observed ones at every fidelity (kriging believer: the new best is the believed mean)."""
    import torch

    K = X.shape[-1] - 2
    W = X[:, :K].detach().numpy()
    Xw = torch.cat([sur.encode(W, f.model_params, f.steps) for f in fids])
    mu = means(gp, Xw).reshape(len(fids), len(W))
    mu = mu.max(axis=1) if maximize else mu.min(axis=1)
    return np.maximum(best_f, mu) if maximize else np.minimum(best_f, mu)


# ---------------------------------------------------------------------------------------------
# Augmented EI (Huang et al. 2006): improvement at the target, discounted per fidelity
# ---------------------------------------------------------------------------------------------
def augmented_scores(gp, sur, C: np.ndarray, fids: list[Fidelity], target: Fidelity, best_f: float,
                     maximize: bool, corr_power: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of running mixture C[i] at fidelity fids[j], shape (len(C), len(fids))::

        log EI_target(w) + log corr(f(w, fid), f(w, target)) - log(cost(fid) / cost(target))

    The improvement is measured where it matters, at the target against the target incumbent
    ``best_f``; a cheaper fidelity is worth what its observation tells about the target (the
    posterior correlation, which falls as that fidelity is observed near w) per unit of cost.
    Returns (scores, log EI at the target per mixture, log corr per mixture and fidelity)."""
    import torch

    v = view(gp)
    with torch.no_grad():
        Xt = sur.encode(C, target.model_params, target.steps)
        Kt = kernel_matrix(v.covar, Xt, v.X)
        Vt = torch.linalg.solve_triangular(v.L, Kt.T, upper=False)
        mu_t = (v.mean(Xt) + (Kt @ v.alpha).squeeze(-1)) * v.y_std + v.y_mean
        var_t = (v.prior - (Vt * Vt).sum(0)).clamp_min(1e-18)
        lei_t = log_ei(mu_t, var_t.sqrt() * v.y_std, best_f, maximize).numpy()
        cols, lcorrs = [], []
        for f in fids:
            if (f.model_params, f.steps) == (target.model_params, target.steps):
                lc = np.zeros(len(C))
            else:
                Xf = sur.encode(C, f.model_params, f.steps)
                Kf = kernel_matrix(v.covar, Xf, v.X)
                Vf = torch.linalg.solve_triangular(v.L, Kf.T, upper=False)
                var_f = (v.prior - (Vf * Vf).sum(0)).clamp_min(1e-18)
                cov = kernel_pairs(v.covar, Xf, Xt) - (Vf * Vt).sum(0)
                lc = torch.log((cov / (var_f.sqrt() * var_t.sqrt())).clamp(1e-6, 1.0)).numpy()
            lcorrs.append(lc)
            cols.append(lei_t + corr_power * lc - math.log(max(f.cost, 1e-300) / max(target.cost, 1e-300)))
    return np.column_stack(cols), lei_t, np.column_stack(lcorrs)


def select_augmented(sur, fids: list[Fidelity], target: Fidelity, best_f: float, q: int, bounds: np.ndarray,
                     rng: np.random.Generator, *, maximize: bool, pending_X=None, around: np.ndarray | None = None,
                     n_screen: int = 256, n_local: int = 64, rounds: int = 4,
                     corr_power: float = 1.0) -> list[Pick]:
    """Choose q (mixture, fidelity) points by :func:`augmented_scores`: a screen of
    ``n_screen`` mixtures (Dirichlet draws and perturbations of ``around``), then ``rounds - 1``
    rounds of local perturbations of the best mixtures, each 3x tighter (std 0.03, 0.01,
    0.003: differences between good mixtures at the target are a few thousandths of a loss).
    Batches and pending trials by the kriging believer (the GP believes each pick at its
    posterior mean, so its correlation with the target, and so its score, drops there). ``Pick.log_ei`` is log EI at the target plus
    log corr."""
    gp = believe(sur.gp, pending_X)
    picks: list[Pick] = []
    for _ in range(q):
        C = space.candidates(n_screen, bounds, rng, around=around)
        best: Pick | None = None
        for _round in range(max(1, rounds)):
            sc, lei_t, lcorr = augmented_scores(gp, sur, C, fids, target, best_f, maximize, corr_power)
            sc = np.where(np.isfinite(sc), sc, -np.inf)
            i, j = np.unravel_index(np.argmax(sc), sc.shape)
            if best is None or sc[i, j] > best.score:
                best = Pick(C[i], fids[j], float(lei_t[i] + lcorr[i, j]), float(sc[i, j]), float(best_f))
            top = C[np.argsort(-sc.max(axis=1))[:8]]
            C = space.candidates(n_local, bounds, rng, around=top, local_scale=0.03 / 3 ** _round)
        if best is None or not np.isfinite(best.score):  # no uncertainty left: explore cheaply
            j = int(np.argmin([f.cost for f in fids]))
            best = Pick(space.sample(1, bounds, rng)[0], fids[j], float("-inf"), float("-inf"), float(best_f))
        picks.append(best)
        if len(picks) < q:
            gp = believe(gp, sur.encode(best.w, best.fidelity.model_params, best.fidelity.steps))
    return picks
