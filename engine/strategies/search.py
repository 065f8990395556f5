"""Where the GP strategies look: screening mixtures at every fidelity, refining the best, and
batches by the kriging believer. The values come from :mod:`engine.strategies.acquisition`.

Two searches:

- :func:`select_augmented` (mfms-bo's default, mf-bo): :class:`AugmentedEI` minus the log cost
  ratio, over a screen of ``n_screen`` mixtures (Dirichlet draws and perturbations of
  ``around``) at every fidelity, then ``rounds - 1`` rounds of local perturbations of the best
  mixtures, each 3x tighter (std 0.03, 0.01, 0.003: differences between good mixtures at the
  target are a few thousandths of a loss).
- :func:`select_batch` (bo, mfms-bo's ``acquisition="fidelity"``): :class:`FidelityLogEI` minus
  log cost, each fidelity against its own incumbent (:func:`fidelity_incumbents`: comparing
  every fidelity against the single best value, which sits at the largest scale, would give
  cheap fidelities no improvement and make EI/cost always choose the most expensive run). A
  coarse screen keeps the ``n_fid`` best fidelities, a finer one picks, and BoTorch's
  ``optimize_acqf`` refines the mixture at the best ``n_refine`` fidelities (the simplex as an
  equality constraint, the bounds as box bounds, size and steps as fixed features).

Batches (q > 1) and pending trials: the GP is conditioned on each chosen or pending point at
its posterior mean (:meth:`GPModel.believe`), which shrinks the uncertainty there, so the next
pick differs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from engine.strategies import space
from engine.strategies.acquisition import AugmentedEI, FidelityLogEI
from engine.strategies.base import Fidelity


@dataclass(frozen=True)
class Pick:
    """One chosen point: the mixture, the fidelity, the acquisition's log value there (log EI,
    plus log corr where it counts), the score (that minus the log cost term) and the incumbent
    it was measured against."""

    w: np.ndarray
    fidelity: Fidelity
    log_ei: float
    score: float
    best_f: float


def _grid(sur, C: np.ndarray, fids: list[Fidelity]) -> torch.Tensor:
    """Encoded points (len(C), len(fids), K + 2): every mixture at every fidelity."""
    return torch.stack([sur.encode(C, f.model_params, f.steps) for f in fids], dim=1)


def posterior_means(model, X: torch.Tensor) -> np.ndarray:
    """Posterior means only (variances skipped) at the rows of X (n, K + 2), objective units."""
    import gpytorch

    with torch.no_grad(), gpytorch.settings.skip_posterior_variances(True):
        out = [model.posterior(X[s:s + 8192].unsqueeze(-2)).mean.reshape(-1) for s in range(0, len(X), 8192)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def fidelity_incumbents(model, sur, W_obs: np.ndarray, fids: list[Fidelity], maximize: bool,
                        max_mixtures: int = 48) -> np.ndarray:
    """best_f per fidelity: the best posterior mean over the observed mixtures set to it.
    With many observed mixtures, the ``max_mixtures`` best by predicted mean summed over a few
    fidelities (a cheap pre-screen) are used."""
    if len(W_obs) > max_mixtures:
        probe = [fids[0], fids[len(fids) // 2], fids[-1]]
        score = sum(posterior_means(model, sur.encode(W_obs, f.model_params, f.steps)) for f in probe)
        W_obs = W_obs[np.argsort(-score if maximize else score)[:max_mixtures]]
    mu = posterior_means(model, _grid(sur, W_obs, fids).reshape(-1, W_obs.shape[1] + 2)).reshape(len(W_obs), len(fids))
    return mu.max(axis=0) if maximize else mu.min(axis=0)


def _with_believed(model, sur, X: torch.Tensor, fids: list[Fidelity], best_f: np.ndarray, maximize: bool) -> np.ndarray:
    """Incumbents once the (believed) points X count as observed: their mixtures join the
    observed ones at every fidelity (kriging believer: the new best is the believed mean)."""
    K = X.shape[-1] - 2
    W = X[:, :K].detach().numpy()
    mu = posterior_means(model, _grid(sur, W, fids).reshape(-1, K + 2)).reshape(len(W), len(fids))
    mu = mu.max(axis=0) if maximize else mu.min(axis=0)
    return np.maximum(best_f, mu) if maximize else np.minimum(best_f, mu)


def _log_costs(fids: list[Fidelity]) -> np.ndarray:
    return np.array([math.log(max(f.cost, 1e-300)) for f in fids])


# ---------------------------------------------------------------------------------------------
# Augmented EI
# ---------------------------------------------------------------------------------------------
def augmented_scores(model, sur, C: np.ndarray, fids: list[Fidelity], target: Fidelity, best_f: float,
                     maximize: bool, corr_power: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of running mixture C[i] at fidelity fids[j], shape (len(C), len(fids))::

        log EI_target(w) + p log corr(f(w, fid), f(w, target)) - log(cost(fid) / cost(target))

    Returns (scores, log EI at the target per mixture, log corr per mixture and fidelity)."""
    acq = AugmentedEI(model, best_f, sur.target_columns(target), maximize=maximize, corr_power=corr_power)
    with torch.no_grad():
        lei_t, lcorr = acq.terms(_grid(sur, C, fids))
    lei_t, lcorr = lei_t.numpy(), lcorr.numpy()
    ratio = _log_costs(fids) - math.log(max(target.cost, 1e-300))
    return lei_t[:, None] + corr_power * lcorr - ratio[None, :], lei_t, lcorr


def select_augmented(sur, fids: list[Fidelity], target: Fidelity, best_f: float, q: int, bounds: np.ndarray,
                     rng: np.random.Generator, *, maximize: bool, pending_X=None, around: np.ndarray | None = None,
                     n_screen: int = 256, n_local: int = 64, rounds: int = 4,
                     corr_power: float = 1.0) -> list[Pick]:
    """Choose q (mixture, fidelity) points by :func:`augmented_scores` (module docstring).
    ``Pick.log_ei`` is log EI at the target plus log corr."""
    model = sur.model.believe(pending_X)
    picks: list[Pick] = []
    for _ in range(q):
        C = space.candidates(n_screen, bounds, rng, around=around)
        best: Pick | None = None
        for _round in range(max(1, rounds)):
            sc, lei_t, lcorr = augmented_scores(model, sur, C, fids, target, best_f, maximize, corr_power)
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
            model = model.believe(sur.encode(best.w, best.fidelity.model_params, best.fidelity.steps))
    return picks


# ---------------------------------------------------------------------------------------------
# Per-fidelity EI per unit cost
# ---------------------------------------------------------------------------------------------
def _screen(model, sur, C: np.ndarray, fids: list[Fidelity], best_f: np.ndarray, maximize: bool,
            target_cols: tuple[float, float] | None = None) -> np.ndarray:
    """(len(C), len(fids)) scores log EI_f (+ log corr with the target) - log cost_f."""
    acq = FidelityLogEI(model, best_f, maximize=maximize, target=target_cols)
    with torch.no_grad():
        lei = torch.cat([acq.terms(_grid(sur, C[s:s + 1024], fids)) for s in range(0, len(C), 1024)]).numpy()
    return lei - _log_costs(fids)[None, :]


def _refine(model, sur, w0s: np.ndarray, f: Fidelity, best_f: float, bounds: np.ndarray, maximize: bool,
            maxiter: int, target_cols: tuple[float, float] | None = None) -> tuple[np.ndarray, float]:
    """optimize_acqf of :class:`FidelityLogEI` over w at fidelity f from the starts w0s;
    returns (w, its log EI (+ log corr))."""
    from botorch.optim import optimize_acqf

    K = len(bounds)
    fixed = sur.fixed_columns(f.model_params, f.steps)
    acq = FidelityLogEI(model, best_f, maximize=maximize, target=target_cols)
    lo = torch.tensor(list(bounds[:, 0]) + [fixed[K], fixed[K + 1]], dtype=torch.float64)
    hi = torch.tensor(list(bounds[:, 1]) + [fixed[K], fixed[K + 1]], dtype=torch.float64)
    X0 = sur.encode(w0s, f.model_params, f.steps).unsqueeze(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cand, _ = optimize_acqf(
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
    """Choose q (mixture, fidelity) points by log EI_f - log cost_f (module docstring).

    A coarse set of ``n_coarse`` mixtures is scored at every fidelity once; the ``n_fid``
    fidelities with the best score go on, where ``n_screen`` mixtures are scored and the best
    ``n_refine`` fidelities are refined by ``optimize_acqf``. After each pick the GP believes it
    (its posterior mean), and the picked mixture joins the observed ones that define every
    fidelity's incumbent, before the next pick."""
    model = sur.model.believe(pending_X)
    best_f = np.array(best_f, dtype=float)
    if pending_X is not None and len(pending_X):
        best_f = _with_believed(model, sur, pending_X, fids, best_f, maximize)
    logc = _log_costs(fids)
    C0 = space.candidates(n_coarse, bounds, rng, around=around)
    S0 = _screen(model, sur, C0, fids, best_f, maximize, target_cols)
    keep = np.argsort(-np.where(np.isfinite(S0), S0, -np.inf).max(axis=0))[: max(1, n_fid)]
    sub = [fids[j] for j in keep]
    picks: list[Pick] = []
    C = np.vstack([space.candidates(n_screen, bounds, rng, around=around), C0])
    for _ in range(q):
        S = _screen(model, sur, C, sub, best_f[keep], maximize, target_cols)
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
                w2, lei2 = _refine(model, sur, starts, f, best_f[j], bounds, maximize, maxiter, target_cols)
                if np.isfinite(lei2) and lei2 >= lei:
                    w, lei = w2, lei2
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
            model = model.believe(xb)
            best_f = _with_believed(model, sur, xb, fids, best_f, maximize)
    return picks
