"""The synthetic landscape that ships with mixplan: a smooth loss over (mixture, size, steps)
whose optimal mixture moves with scale, and whose truth is known.

Why it exists: a newcomer (and the bundled ``demo-bo`` studies) can watch the optimiser work on a
fresh clone, with nothing to download, and every trajectory can be scored by its true regret.
It is a toy, not a model of any real corpus; its form is the one the literature fits to real
runs, so it behaves like a real study would.

For K domains (mixture weights ``w``, the training domains are also the evaluation domains),
model size ``N`` (parameters) and length ``S`` (steps), the loss on domain ``j`` is

    L_j(w, N, S) = E_j + A_j (N / 1e8)^-alpha + B_j (S / 1e4)^-beta + C_j exp(-sum_i T_ji(u) w_i)

- the first three terms: a Chinchilla-style scaling law (irreducible loss, size, length);
- the last: a Data-Mixing-Law term (Ye et al. 2024), a loss that falls exponentially with the
  weight of the domains that help domain ``j``. ``T_ji(u) = D_j [i == j] + (1 - u) a_i + u b_i``:
  each domain helps itself (``D_j``), and every domain ``i`` helps all others by ``a_i`` in small
  runs and by ``b_i`` in large ones (``b`` is ``a`` reversed: what helps small models most helps
  large ones least, as AutoScale observes: the best mixture at small scale is not the best at
  large scale);
- ``u = sigmoid(ln(N * S / pivot) / width)`` says how "large" a run is, by its compute
  (parameters x steps): 0 for runs far below ``pivot``, 1 far above, 1/2 at ``pivot``.

The objective ``mean_loss`` is the mean of the L_j; a sum of exponentials of linear functions of
``w``, so it is convex in ``w`` at every (N, S): one optimum per scale, found exactly by
:meth:`Landscape.optimum` (the truth behind regret). The constants (``E``, ``A``, ``B``, ``C``,
``D``, ``a``) are drawn once from ``seed`` in fixed ranges (see :meth:`Landscape.make`), so a
landscape is fully given by (K, seed, pivot, width).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import ValidationError

#: compute (parameters x steps) at which the optimum is half-way between its small and large positions
DEFAULT_PIVOT = 1e12
#: how fast (in e-folds of compute) the optimum moves from one to the other
DEFAULT_WIDTH = 2.0


@dataclass(frozen=True)
class Landscape:
    """A drawn landscape (see the module docstring for the formula). Arrays have length K
    (``D`` and ``a``, ``b`` too)."""

    E: np.ndarray
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    a: np.ndarray
    b: np.ndarray
    alpha: float = 0.3
    beta: float = 0.3
    pivot: float = DEFAULT_PIVOT
    width: float = DEFAULT_WIDTH
    seed: int = 0

    @classmethod
    def make(cls, k: int, seed: int = 0, *, pivot: float = DEFAULT_PIVOT, width: float = DEFAULT_WIDTH) -> Landscape:
        """Draw the constants for ``k`` domains from ``seed``: E in [1.6, 2.4], A in [0.5, 0.7],
        B in [0.4, 0.6], C in [0.8, 1.2], D in [1.5, 2.5], a in [0.1, 1.0] (b = a reversed)."""
        if int(k) < 2:
            raise ValidationError(f"a landscape needs at least two domains, got {k}.")
        if not (np.isfinite(pivot) and pivot > 0 and np.isfinite(width) and width > 0):
            raise ValidationError(f"pivot and width must be finite and > 0, got {pivot!r} and {width!r}.")
        rng = np.random.default_rng([int(seed), int(k)])
        a = rng.uniform(0.1, 1.0, k)
        return cls(E=rng.uniform(1.6, 2.4, k), A=rng.uniform(0.5, 0.7, k), B=rng.uniform(0.4, 0.6, k),
                   C=rng.uniform(0.8, 1.2, k), D=rng.uniform(1.5, 2.5, k), a=a, b=a[::-1].copy(),
                   pivot=float(pivot), width=float(width), seed=int(seed))

    @property
    def k(self) -> int:
        return len(self.E)

    def largeness(self, model_params, steps) -> np.ndarray:
        """``u`` in [0, 1]: 0 for runs far below the pivot compute, 1 far above."""
        c = np.asarray(model_params, dtype=float) * np.asarray(steps, dtype=float)
        return 1.0 / (1.0 + np.exp(-np.log(c / self.pivot) / self.width))

    def losses(self, W, model_params, steps) -> np.ndarray:
        """(n, K) per-domain losses for mixtures W (n, K) at sizes and steps (scalars or length n)."""
        W = np.atleast_2d(np.asarray(W, dtype=float))
        if W.shape[1] != self.k:
            raise ValidationError(f"the landscape has {self.k} domains; got mixtures of {W.shape[1]}.")
        n = len(W)
        N = np.broadcast_to(np.asarray(model_params, dtype=float), (n,))
        S = np.broadcast_to(np.asarray(steps, dtype=float), (n,))
        if (N <= 0).any() or (S <= 0).any():
            raise ValidationError("model_params and steps must be > 0.")
        u = self.largeness(N, S)[:, None]  # (n, 1)
        helps = (1.0 - u) * (W @ self.a)[:, None] + u * (W @ self.b)[:, None]  # (n, 1): sum_i a_i w_i, ...
        mix = self.C[None, :] * np.exp(-(self.D[None, :] * W + helps))
        scale = self.A[None, :] * (N[:, None] / 1e8) ** -self.alpha + self.B[None, :] * (S[:, None] / 1e4) ** -self.beta
        return self.E[None, :] + scale + mix

    def objective(self, W, model_params, steps, objective: str = "mean_loss", domains: Sequence[str] | None = None
                  ) -> np.ndarray:
        """``mean_loss`` or ``loss_<domain>`` (``domains`` names the columns) for mixtures W."""
        L = self.losses(W, model_params, steps)
        if objective == "mean_loss":
            return L.mean(axis=1)
        names = list(domains) if domains is not None else [f"d{i}" for i in range(self.k)]
        if objective.startswith("loss_") and objective[5:] in names:
            return L[:, names.index(objective[5:])]
        raise ValidationError(f"the synthetic landscape has no objective '{objective}'.",
                              fix=f"use mean_loss or one of {', '.join('loss_' + d for d in names)}.")

    def optimum(self, model_params: float, steps: float, objective: str = "mean_loss",
                domains: Sequence[str] | None = None, bounds: Sequence[tuple[float, float]] | None = None
                ) -> tuple[np.ndarray, float]:
        """The true best mixture at (model_params, steps) within ``bounds`` (default: the simplex)
        and its value. Convex, so SLSQP from the best of a few starts finds it to ~1e-10."""
        from scipy.optimize import minimize

        k = self.k
        lo = np.array([b[0] for b in bounds]) if bounds else np.zeros(k)
        hi = np.array([b[1] for b in bounds]) if bounds else np.ones(k)

        def f(w):
            return float(self.objective(np.clip(w, lo, hi)[None], model_params, steps, objective, domains)[0])

        starts = [np.full(k, 1.0 / k)] + [np.eye(k)[i] * 0.5 + 0.5 / k for i in range(k)]
        cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}]
        best_w, best_v = None, np.inf
        for w0 in starts:
            w0 = np.clip(w0, lo, hi)
            res = minimize(f, w0, method="SLSQP", bounds=list(zip(lo, hi)), constraints=cons,
                           options={"maxiter": 500, "ftol": 1e-14})
            w = np.clip(res.x, lo, hi)
            w = w / w.sum()
            v = f(w)
            if v < best_v:
                best_w, best_v = w, v
        return best_w, float(best_v)
