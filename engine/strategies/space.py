"""The search space of mixtures: sampling and projecting onto the bounded simplex."""

from __future__ import annotations

import numpy as np

from engine.mixture import project_to_simplex


def project(V: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Euclidean projection of the rows of V onto {lo <= w <= hi, sum w = 1}."""
    return project_to_simplex(V, bounds)


def in_bounds(W: np.ndarray, bounds: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    W = np.atleast_2d(W)
    return ((W >= bounds[:, 0] - tol) & (W <= bounds[:, 1] + tol)).all(axis=1) & (np.abs(W.sum(axis=1) - 1) < 1e-6)


def sample(n: int, bounds: np.ndarray, rng: np.random.Generator, alpha: float = 1.0) -> np.ndarray:
    """Dirichlet(alpha) mixtures, projected onto the bounds where they bind."""
    K = len(bounds)
    W = rng.dirichlet(np.full(K, alpha), size=n)
    bad = ~in_bounds(W, bounds)
    if bad.any():
        W[bad] = project(W[bad], bounds)
    return W


def away_from(W: np.ndarray, avoid: np.ndarray, bounds: np.ndarray, rng: np.random.Generator, *,
              radius: float = 0.2, alpha: float = 1.0, tries: int = 64) -> np.ndarray:
    """``W`` with every row that lies within L1 ``radius`` of a row of ``avoid`` (mixtures
    pending or rejected) redrawn from Dirichlet(alpha), up to ``tries`` times; a row that never
    gets clear keeps the draw farthest from ``avoid``. Random designs use it so that a rejected
    mixture is not proposed again."""
    W = np.array(W, dtype=float, copy=True)
    A = np.atleast_2d(np.asarray(avoid, dtype=float))
    if not len(W) or not A.size:
        return W

    def gap(V: np.ndarray) -> np.ndarray:
        return np.abs(V[:, None, :] - A[None, :, :]).sum(axis=2).min(axis=1)

    best, best_gap = W.copy(), gap(W)
    for _ in range(tries):
        close = best_gap < radius
        if not close.any():
            break
        D = sample(int(close.sum()), bounds, rng, alpha)
        g = gap(D)
        better = g > best_gap[close]
        idx = np.flatnonzero(close)[better]
        best[idx], best_gap[idx] = D[better], g[better]
    return best


def candidates(n: int, bounds: np.ndarray, rng: np.random.Generator, *, around: np.ndarray | None = None,
               local_scale: float = 0.05) -> np.ndarray:
    """A screening set: uniform-ish, sparse and concentrated Dirichlet draws, the uniform
    mixture, and Gaussian perturbations of the mixtures in ``around``."""
    K = len(bounds)
    parts = [project(np.full((1, K), 1.0 / K), bounds)]
    parts.append(sample(max(1, n // 2), bounds, rng, 1.0))
    parts.append(sample(max(1, n // 4), bounds, rng, 0.3))
    parts.append(sample(max(1, n // 4), bounds, rng, 3.0))
    if around is not None and len(around):
        A = np.atleast_2d(around)
        parts.append(A)
        parts.append(perturb(A, max(1, n // (2 * len(A))), local_scale, bounds, rng))
    return np.vstack(parts)


def perturb(A: np.ndarray, reps: int, scale: float, bounds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``reps`` Gaussian perturbations (std ``scale``) of every row of A, projected back
    onto the bounded simplex: the local moves of the screening searches."""
    P = np.repeat(np.atleast_2d(A), reps, axis=0)
    return project(P + rng.normal(0, scale, size=P.shape), bounds)


def unique_rows(W: np.ndarray, decimals: int = 6) -> np.ndarray:
    if len(W) == 0:
        return W
    _, idx = np.unique(np.round(W, decimals), axis=0, return_index=True)
    return W[np.sort(idx)]
