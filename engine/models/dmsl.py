"""DMSL: the data-mixing scaling law of Shukor et al. 2025 ("Scaling Laws for Optimal Data Mixtures").

Per loss domain, for a model of ``N`` parameters trained for a length ``D`` (steps, or tokens
where the runs carry no steps) on the mixture ``h``::

    additive:  L(h, N, D) = E + 1 / sum_j C_j h_j^gamma_j + A / N^alpha + B / D^beta
    joint:     L(h, N, D) = E + 1 / sum_j C_j h_j^gamma_j + A(h) / N^alpha + B(h) / D^beta,
               A(h) = A exp(sum_j a_j h_j),  B(h) = B exp(sum_j b_j h_j)

Why this law: the mixture term is a weighted power mean of the domain shares (one share's
effect saturates, shares substitute for each other), and the scale terms are Chinchilla's, so
the law extrapolates in model size and length the way losses do (towards an irreducible
``E``) while it ranks mixtures by a term whose shape the paper validated from 186M to 7B
parameters. In the joint form the scale terms' coefficients depend on the mixture (a mixture
can help small models and hurt large ones: the optimum moves with scale); ``a`` and ``b``
carry a small ridge (with sum_j h_j = 1 a common shift of them is the same as changing A, B).

Fitting (``fit``): nonlinear least squares on the *relative* residual ``(L - y) / y`` (so the
fit minimises relative error, the level measure that matters across sizes), analytic
Jacobian, several random starts (``n_starts``), SciPy's trust-region solver with bounds that
keep it a loss law: ``E >= 0`` (for a loss), ``C_j, A, B >= 0``, exponents in
``[1e-3, 3]``. ``N`` and ``D`` are divided by the training data's geometric means so the
coefficients stay O(1). An axis the table does not vary (one model size, one length) drops
its term (it would only trade off against ``E``). ``mean_loss``: one law per loss column,
their mean is the prediction (as the paper fits a law per validation domain). A metric
(higher is better) is fitted as ``-metric`` with ``E`` free.

Std (``predict``): the delta method (Laplace): the parameters' covariance
``s^2 (J^T J)^-1`` from the fit's Jacobian, propagated to each prediction, plus the fit's
residual variance (a new run scatters around the law like the training runs did). This
treats checkpoints as independent, so it is optimistic; :mod:`engine.models.calibration`
widens it by what held-out larger sizes show.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

from engine.errors import ValidationError
from engine.models.base import LossModel, Prepared
from engine.runtable.schema import METRIC_PREFIX

#: exponent bounds (gamma, alpha, beta): positive (a share, a size, a length helps) and not
#: steeper than any published loss law
EXP_LO, EXP_HI = 1e-3, 3.0
#: the centre of the weak prior on the size and length exponents (Chinchilla's alpha and beta
#: are ~0.34 and ~0.28; published mixture laws fit 0.2-0.5)
EXP_PRIOR = 0.3


class _Law:
    """One fitted DMSL law on normalised inputs; parameters in a flat vector (see ``_layout``)."""

    def __init__(self, K: int, form: str, use_n: bool, use_d: bool, ridge: float, prior: float = 0.0):
        self.K, self.form, self.use_n, self.use_d, self.ridge, self.prior = K, form, use_n, use_d, ridge, prior
        self.p: np.ndarray | None = None
        self.cov: np.ndarray | None = None
        self.sigma_rel = 0.0
        self.noise = 0.0
        self.sign = 1.0

    # layout: [E, logC (K), gamma (K), (A, alpha, [a (K)])?, (B, beta, [b (K)])?]
    def _layout(self) -> dict[str, slice]:
        K = self.K
        out = {"E": slice(0, 1), "logC": slice(1, 1 + K), "gamma": slice(1 + K, 1 + 2 * K)}
        i = 1 + 2 * K
        for ax, use in (("n", self.use_n), ("d", self.use_d)):
            if not use:
                continue
            out[f"coef_{ax}"] = slice(i, i + 1)
            out[f"exp_{ax}"] = slice(i + 1, i + 2)
            i += 2
            if self.form == "joint":
                out[f"mix_{ax}"] = slice(i, i + K)
                i += K
        out["_n"] = slice(0, i)
        return out

    @property
    def n_params(self) -> int:
        return self._layout()["_n"].stop

    def bounds(self, floor: float | None) -> tuple[np.ndarray, np.ndarray]:
        L = self._layout()
        lo, hi = np.full(self.n_params, -np.inf), np.full(self.n_params, np.inf)
        if floor is not None:
            lo[L["E"]] = floor
        lo[L["logC"]], hi[L["logC"]] = -30.0, 30.0
        lo[L["gamma"]], hi[L["gamma"]] = EXP_LO, EXP_HI
        for ax in ("n", "d"):
            if f"coef_{ax}" in L:
                lo[L[f"coef_{ax}"]] = 0.0
                lo[L[f"exp_{ax}"]], hi[L[f"exp_{ax}"]] = EXP_LO, EXP_HI
                if f"mix_{ax}" in L:
                    lo[L[f"mix_{ax}"]], hi[L[f"mix_{ax}"]] = -20.0, 20.0
        return lo, hi

    # ---- evaluation ----------------------------------------------------------------------
    def value_and_jac(self, p: np.ndarray, H: np.ndarray, ln: np.ndarray, ld: np.ndarray,
                      jac: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """L at rows (H (n, K), ln = log N/N0, ld = log D/D0) and dL/dp (n, n_params)."""
        L = self._layout()
        pos = H > 0
        logH = np.log(np.where(pos, H, 1.0))
        gam = p[L["gamma"]]
        C = np.exp(np.clip(p[L["logC"]], -30, 30))
        Hg = np.where(pos, np.exp(np.clip(logH * gam, -700, 50)), 0.0)  # h_j^gamma_j (0 at h_j = 0)
        S = np.maximum(Hg @ C, 1e-300)
        f = p[L["E"]][0] + 1.0 / S
        J = np.zeros((len(H), self.n_params)) if jac else None
        if jac:
            J[:, L["E"]] = 1.0
            dS = -1.0 / S ** 2  # d(1/S)/dS
            J[:, L["logC"]] = dS[:, None] * Hg * C  # dS/dlogC_j = C_j h_j^g
            J[:, L["gamma"]] = dS[:, None] * C * Hg * logH  # dS/dgamma_j = C_j h^g log h (0 at h = 0)
        for ax, lx in (("n", ln), ("d", ld)):
            if f"coef_{ax}" not in L:
                continue
            c = p[L[f"coef_{ax}"]][0]
            e = p[L[f"exp_{ax}"]][0]
            mixf = np.exp(np.clip(H @ p[L[f"mix_{ax}"]], -50, 50)) if f"mix_{ax}" in L else 1.0
            powr = np.exp(np.clip(-e * lx, -700, 50))  # (X/X0)^-e
            term = c * mixf * powr
            f = f + term
            if jac:
                J[:, L[f"coef_{ax}"]] = (mixf * powr)[:, None] if np.ndim(mixf) else powr[:, None]
                J[:, L[f"exp_{ax}"]] = (-lx * term)[:, None]
                if f"mix_{ax}" in L:
                    J[:, L[f"mix_{ax}"]] = term[:, None] * H
        return f, J

    def torch_value(self, H, ln, ld):
        """The law at tensors H (..., K), ln, ld (...): what :meth:`value_and_jac` computes, in
        torch and differentiable in the inputs (the GP's prior mean, engine.models.gp.law_mean)."""
        import torch

        L = self._layout()
        p = torch.as_tensor(self.p, dtype=H.dtype)
        gam, C = p[L["gamma"]], torch.exp(p[L["logC"]].clamp(-30, 30))
        pos = H > 0
        Hg = torch.where(pos, torch.exp((torch.log(torch.where(pos, H, torch.ones_like(H))) * gam).clamp(-700, 50)),
                         torch.zeros_like(H))
        f = p[L["E"]][0] + 1.0 / (Hg @ C).clamp_min(1e-300)
        for ax, lx in (("n", ln), ("d", ld)):
            if f"coef_{ax}" not in L:
                continue
            term = p[L[f"coef_{ax}"]][0] * torch.exp((-p[L[f"exp_{ax}"]][0] * lx).clamp(-700, 50))
            if f"mix_{ax}" in L:
                term = term * torch.exp((H @ p[L[f"mix_{ax}"]]).clamp(-50, 50))
            f = f + term
        return self.sign * f

    def ridge_rows(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penalty residuals and their Jacobian: a ridge on the joint form's mixture
        coefficients, and a weak prior pulling the size and length exponents towards
        ``EXP_PRIOR`` (where the data identifies them it is negligible; with two model sizes,
        which cannot separate E, A and alpha, it keeps the extrapolation sane)."""
        L = self._layout()
        ar = np.arange(self.n_params)
        idx = np.concatenate([ar[L[k]] for k in ("mix_n", "mix_d") if k in L] or [np.zeros(0, int)])
        eidx = np.concatenate([ar[L[k]] for k in ("exp_n", "exp_d") if k in L] or [np.zeros(0, int)])
        lam, mu = math.sqrt(self.ridge), math.sqrt(self.prior)
        R = np.zeros((len(idx) + len(eidx), self.n_params))
        R[np.arange(len(idx)), idx] = lam
        R[len(idx) + np.arange(len(eidx)), eidx] = mu
        return np.concatenate([lam * p[idx], mu * (p[eidx] - EXP_PRIOR)]), R

    def start(self, rng: np.random.Generator, y: np.ndarray, floor: float | None, first: bool) -> np.ndarray:
        L = self._layout()
        K = self.K
        p = np.zeros(self.n_params)
        ymin, spread = float(y.min()), float(np.ptp(y)) or max(abs(float(y.min())), 1.0) * 0.1
        n_terms = 1 + int(self.use_n) + int(self.use_d)
        E0 = ymin - (0.5 if first else rng.uniform(0.2, 1.0)) * spread
        if floor is not None:
            E0 = max(E0, floor + 0.5 * (ymin - floor))
        p[L["E"]] = E0
        share = max(ymin - E0, 1e-3 * max(abs(ymin), 1.0)) / n_terms
        gam = np.full(K, 0.5) if first else rng.uniform(0.1, 1.5, K)
        p[L["gamma"]] = gam
        # 1/S ~ share at the uniform mixture: S = sum C_j K^-gamma_j
        base = 1.0 / (share * np.sum(K ** -gam))
        p[L["logC"]] = math.log(base) + (0 if first else rng.normal(0, 0.5, K))
        for ax in ("n", "d"):
            if f"coef_{ax}" in L:
                p[L[f"coef_{ax}"]] = share
                p[L[f"exp_{ax}"]] = 0.3 if first else rng.uniform(0.1, 0.8)
        return p


class DMSL(LossModel):
    """Shukor et al.'s data-mixing scaling law (module docstring). ``form``: ``"additive"``
    or ``"joint"``; ``n_starts`` random starts of the least-squares fit (the best kept);
    ``min_fraction``: checkpoints earlier than this fraction of their run's length are left out
    of the fit (warm-up checkpoints follow the learning-rate schedule, not the law)."""

    name = "dmsl"

    def __init__(self, *, form: str = "additive", n_starts: int = 4, min_fraction: float = 0.0,
                 per_domain: bool = True, final_share: float | None = None, ridge: float = 1e-4,
                 prior: float = 1e-2, max_nfev: int = 400, seed: int = 0):
        if form not in ("additive", "joint"):
            raise ValidationError(f"dmsl: unknown form '{form}'.", fix="use form='additive' or form='joint'.")
        if not 0.0 <= min_fraction < 1.0:
            raise ValidationError(f"dmsl: min_fraction must be in [0, 1), got {min_fraction}.")
        self.form = form
        self.n_starts = n_starts
        self.min_fraction = min_fraction
        self.per_domain = per_domain
        self.final_share = final_share
        self.ridge = ridge
        self.prior = prior
        self.max_nfev = max_nfev
        self.seed = seed

    # ---- sizes ---------------------------------------------------------------------------
    def _axes(self, prep: Prepared) -> tuple[bool, bool]:
        return bool(np.ptp(np.log(prep.m)) > 0), bool(np.ptp(np.log(prep.z)) > 0)

    def n_params(self, K: int) -> int:
        return 2 * K + 1

    def n_params_for(self, prep: Prepared) -> int:
        """Mixture term ``2K + 1`` (E, C, gamma) plus 2 per varied scale axis (the joint form's
        mixture coefficients are ridge-regularised, so they are not counted)."""
        use_n, use_d = self._axes(prep)
        return self.n_params(len(prep.domains)) + 2 * int(use_n) + 2 * int(use_d)

    def min_runs_why(self, prep: Prepared, need: int) -> str:
        return (f"its law has {need} parameters: E, a coefficient and an exponent per domain, and a coefficient "
                "and an exponent per scale axis the runs vary")

    # ---- fitting -------------------------------------------------------------------------
    def _inputs(self, m: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.log(np.asarray(m, float)) - self.log_n0_, np.log(np.asarray(z, float)) - self.log_d0_

    def _fit(self, prep: Prepared, *, warm_start=None) -> None:
        K = len(prep.domains)
        self.maximize_ = prep.objective.startswith(METRIC_PREFIX)
        keep = np.ones(len(prep.y), bool)
        if self.min_fraction > 0:
            zmax = pd_group_max(prep.run_ids, prep.z)
            keep = prep.z >= self.min_fraction * zmax
        self.log_n0_ = float(np.mean(np.log(prep.m[keep])))
        self.log_d0_ = float(np.mean(np.log(prep.z[keep])))
        use_n, use_d = self._axes(prep)
        ln, ld = self._inputs(prep.m[keep], prep.z[keep])
        H = prep.W[keep]
        self.row_weight_ = np.ones(int(keep.sum()))
        if self.final_share is not None:
            zmax = pd_group_max(prep.run_ids, prep.z)[keep]
            fin = prep.z[keep] >= zmax
            if fin.any() and (~fin).any():
                # the final checkpoints carry final_share of the total weight: they are what the
                # model is asked for (a mid-run checkpoint of a decaying schedule is not a shorter run)
                n = len(fin)
                self.row_weight_ = np.where(fin, self.final_share * n / fin.sum(),
                                            (1 - self.final_share) * n / (~fin).sum())
        per_domain = self.per_domain and prep.objective == "mean_loss" and prep.parts
        targets = prep.parts if per_domain else {prep.objective: prep.y}
        self.laws_: dict[str, _Law] = {}
        for col, y in targets.items():
            y = np.asarray(y, float)[keep]
            law = _Law(K, self.form, use_n, use_d, self.ridge, self.prior)
            law.sign = -1.0 if self.maximize_ else 1.0
            self._fit_law(law, H, ln, ld, law.sign * y, col)
            self.laws_[col] = law
        self.n_fit_rows_ = int(keep.sum())

    def _fit_law(self, law: _Law, H, ln, ld, y: np.ndarray, what: str) -> None:
        floor = None if self.maximize_ else 0.0
        lo, hi = law.bounds(floor)
        # relative residuals for a loss (level error in %), absolute ones scaled by the spread
        # for a metric (a negated accuracy has no meaningful relative scale)
        scale = np.abs(y) if not self.maximize_ and (y > 0).all() else np.full(len(y), float(np.std(y)) or 1.0)
        scale = scale / np.sqrt(self.row_weight_)
        rng = np.random.default_rng(self.seed)

        def res(p):
            f, _ = law.value_and_jac(p, H, ln, ld, jac=False)
            r_ridge, _ = law.ridge_rows(p)
            return np.concatenate([(f - y) / scale, r_ridge])

        def jac(p):
            _, J = law.value_and_jac(p, H, ln, ld)
            _, R = law.ridge_rows(p)
            return np.vstack([J / scale[:, None], R])

        best, errors = None, []
        for s in range(max(1, self.n_starts)):
            p0 = np.clip(law.start(rng, y, floor, s == 0), lo + 1e-9, hi - 1e-9)
            try:
                r = least_squares(res, p0, jac=jac, bounds=(lo, hi), method="trf", x_scale="jac",
                                  max_nfev=self.max_nfev)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if np.isfinite(r.x).all() and np.isfinite(r.cost) and (best is None or r.cost < best.cost):
                best = r
        if best is None:
            raise ValidationError(
                f"dmsl: the law for {what} could not be fitted: all {self.n_starts} starts failed "
                f"({errors[0] if errors else 'non-finite parameters'}).",
                fix="check the table for extreme values, or use another model (e.g. 'mixing-law').")
        law.p = best.x
        f, J = law.value_and_jac(best.x, H, ln, ld)
        r = (f - y) / scale
        r_plain = r * np.sqrt(self.row_weight_)
        dof = max(1, len(y) - law.n_params)
        s2 = float((r_plain ** 2).sum() / dof)
        Jr = J / scale[:, None]
        # parameters at a bound are held there (their column would make J^T J singular)
        free = (best.x > lo + 1e-7) & (best.x < hi - 1e-7) | ~np.isfinite(lo) & ~np.isfinite(hi)
        cov = np.zeros((law.n_params, law.n_params))
        if free.any():
            Jf = Jr[:, free]
            cov[np.ix_(free, free)] = s2 * np.linalg.pinv(Jf.T @ Jf, rcond=1e-10)
        law.cov = cov
        law.sigma_rel = math.sqrt(s2)
        # the residual's spread in the objective's units: relative residuals times the typical
        # level (not times each prediction: a new run scatters as much at a larger size)
        law.noise = math.sqrt(float(np.mean((f - y) ** 2)) * len(y) / dof)
        law.cost_ = float(best.cost)

    # ---- prediction ----------------------------------------------------------------------
    def _law_predict(self, law: _Law, W, ln, ld, std: bool):
        f, J = law.value_and_jac(law.p, W, ln, ld, jac=std)
        mean = law.sign * f
        if not std:
            return mean, None
        var_par = np.einsum("ij,jk,ik->i", J, law.cov, J)
        return mean, np.sqrt(np.maximum(var_par, 0.0) + law.noise ** 2)

    def _predict_arrays(self, W, m, z):
        ln, ld = self._inputs(m, z)
        means, stds = zip(*(self._law_predict(law, W, ln, ld, True) for law in self.laws_.values()))
        # per-domain errors of one run are strongly correlated (one model, one mixture): the
        # mean's std is taken as the mean of the stds (perfect correlation, the cautious end)
        return np.mean(means, axis=0), np.mean(stds, axis=0)

    def _predict_mean_arrays(self, W, m, z):
        ln, ld = self._inputs(m, z)
        return np.mean([self._law_predict(law, W, ln, ld, False)[0] for law in self.laws_.values()], axis=0)

    def params(self) -> dict[str, dict[str, float | list[float]]]:
        """The fitted laws' parameters per target column, in the paper's names (for reports)."""
        out = {}
        for col, law in self.laws_.items():
            L = law._layout()
            d = {"E": float(law.sign * law.p[L["E"]][0]),
                 "C": np.exp(law.p[L["logC"]]).tolist(), "gamma": law.p[L["gamma"]].tolist()}
            for ax, (cn, en) in (("n", ("A", "alpha")), ("d", ("B", "beta"))):
                if f"coef_{ax}" in L:
                    d[cn] = float(law.p[L[f"coef_{ax}"]][0])
                    d[en] = float(law.p[L[f"exp_{ax}"]][0])
                    if f"mix_{ax}" in L:
                        d[cn.lower() + "_mix"] = law.p[L[f"mix_{ax}"]].tolist()
            out[col] = d
        return out


class DMSLJoint(DMSL):
    """The joint form of :class:`DMSL` (scale coefficients depend on the mixture)."""

    name = "dmsl-joint"

    def __init__(self, **kw):
        kw.setdefault("form", "joint")
        super().__init__(**kw)


def pd_group_max(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row's group maximum of ``values`` (groups by ``keys``)."""
    import pandas as pd

    return pd.Series(values).groupby(pd.Series(keys)).transform("max").to_numpy()
