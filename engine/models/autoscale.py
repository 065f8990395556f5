"""AutoScale (Kang et al. 2025): scale-aware data mixing, both stages.

Stage 1, DDO (direct data optimisation) at a token budget N, for one model size. Per-domain
token counts ``N_i = w_i * tokens`` are measured in units ``u = N / K`` (the uniform per-domain
amount at that budget), and the loss is modelled as::

    L(N_1..N_K) = sum_i (N_i / u + N0_i) ** (-gamma_i) + c          (c = sum_i l_i)

(the form that reproduces the paper's constants, see :func:`ddo_optimum`). The laws are fitted
from a base run and one-domain perturbations (each domain's tokens x0.2 and x3, the rest
unchanged): each domain's two perturbations against the base pin (N0_i, gamma_i) exactly; then
a joint least-squares refit over every run of that budget (any runs with known per-domain
token counts add equations). Runs are grouped into budgets automatically: a *base* is a run
from which other runs differ in exactly one domain's token count, for at least two domains;
its group is itself plus those runs, and its budget is its total tokens. Tables without such
structure fall back to clusters of runs of similar total tokens (or the ``budgets`` given),
each fitted by joint least squares when it has at least 2K + 1 runs. A design where a domain
has only one of its perturbations is fitted by joint least squares too (with a warning: along
that domain the law is one equation short); one where a domain has none is an error. Only each
run's final checkpoint is used (the budget is the tokens a run was trained for).

The allocation: ``min sum_i (x_i + N0_i)^-gamma_i  s.t.  sum_i x_i = total, x_i >= lower``,
solved exactly by KKT: ``x_i(lam) = max(lower, (gamma_i / lam)^(1/(gamma_i+1)) - N0_i)`` with
bisection on ``lam`` (``lower_bound`` defaults to 0.2 units, the smallest perturbation: the
laws are not fitted below it).

Stage 2: with DDO optima ``N(1) < N(2)`` (tokens) at the two largest fitted budgets,
``N_i(s) = N_i(1) * (N_i(2) / N_i(1)) ** s``; solving ``sum_i N_i(s) = N_target`` for s gives
the mixture at the target (s = 2 is the paper's ``N(3) = N(2) N(1)^-1 N(2)``). With one budget
the DDO optimum of that law at the target budget is used instead.

``predict`` evaluates, at the nearest fitted model size, the law whose own design holds the
query's token vector, else the law of the budget nearest the query's total tokens (log
distance). ``optimum`` returns the extrapolated mixture; its ``pred_mean`` is that law at the
mixture. A ``metric_*`` objective (higher is better) is fitted negated, so the law still falls
with tokens; predictions are in the metric's own units and ``optimum`` maximises it (asking the
opposite direction of either kind of objective is an error). Uncertainty: ``n_bootstrap``
refits, over runs resampled with replacement where a budget has more runs than parameters, else with Gaussian noise of
``noise_std`` added to the losses (the DDO design alone is exactly determined and says nothing
about its own noise). ``pred_std`` and ``weights_std_`` are the bootstrap spreads, measured
robustly (1.4826 x the median absolute deviation, :func:`robust_spread`): the DDO law's offsets
``N0_i`` are barely identified by a design whose runs all hold tokens of every domain, so at a
mixture that starves a domain a few bootstrap refits diverge and a plain standard deviation
came out larger than the loss itself (2.63 +- 1.7); the robust spread reports the bulk of the
refits (a std of 0 only where every refit agrees, e.g. n_bootstrap=0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from engine.errors import ValidationError
from engine.models.base import LossModel, Prepared, project_simplex
from engine.runtable.schema import METRIC_PREFIX


# ---------------------------------------------------------------------------------------------
# The law and the allocation
# ---------------------------------------------------------------------------------------------
def ddo_loss(x: np.ndarray, N0: np.ndarray, gamma: np.ndarray, c: float = 0.0) -> np.ndarray:
    """``sum_i (x_i + N0_i)^-gamma_i + c`` for allocations x (..., K) in units."""
    return np.sum(np.power(np.asarray(x, float) + N0, -gamma), axis=-1) + c


def ddo_optimum(N0, gamma, total: float, lower: float | np.ndarray = 0.0,
                upper: float | np.ndarray | None = None) -> np.ndarray:
    """Exact minimiser of ``sum_i (x_i + N0_i)^-gamma_i`` over ``sum x = total``,
    ``lower <= x <= upper``, by KKT and bisection on the multiplier.

    Each term is convex and decreasing, so at the optimum ``gamma_i (x_i + N0_i)^-(gamma_i+1)``
    equals one multiplier ``lam`` for every domain off its bounds.
    """
    N0, gamma = np.asarray(N0, float), np.asarray(gamma, float)
    K = len(N0)
    lo = np.broadcast_to(np.asarray(lower, float), (K,))
    hi = np.full(K, np.inf) if upper is None else np.broadcast_to(np.asarray(upper, float), (K,))
    if lo.sum() > total * (1 + 1e-12) or hi.sum() < total * (1 - 1e-12):
        raise ValidationError(f"no allocation fits: lower bounds sum to {lo.sum():g}, upper to {hi.sum():g}, "
                              f"total {total:g}.", fix="loosen the bounds.")

    def x_of(loglam: float) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = np.exp((np.log(gamma) - loglam) / (gamma + 1.0)) - N0
        return np.clip(x, lo, hi)

    # log lam: small lam -> large x. The multiplier spans exp(+-100s) for large gamma and
    # totals (gamma 19, 300 units per domain: log lam ~ -112), so the bracket starts at
    # [-60, 60] and is widened until it encloses the total.
    a, b = -60.0, 60.0
    while x_of(a).sum() <= total:
        if a < -1e7:
            raise ValidationError(f"the DDO allocation cannot reach a total of {total:g} units "
                                  f"(gamma {gamma}, N0 {N0}).", fix="check the fitted law's constants.")
        a -= max(60.0, abs(a))
    while x_of(b).sum() > total:
        if b > 1e7:
            raise ValidationError(f"the DDO allocation cannot come down to a total of {total:g} units "
                                  f"(lower bounds sum to {lo.sum():g}).", fix="loosen the lower bounds.")
        b += max(60.0, abs(b))
    for _ in range(200):
        mid = 0.5 * (a + b)
        if x_of(mid).sum() > total:
            a = mid
        else:
            b = mid
    x = x_of(0.5 * (a + b))
    # distribute the (tiny) bisection residue over the free coordinates
    free = (x > lo + 1e-12) & (x < hi - 1e-12)
    resid = total - x.sum()
    if abs(resid) > 1e-8 * max(1.0, abs(total)) or (resid != 0 and not free.any()):
        raise ValidationError(f"the DDO allocation did not converge: its total is {x.sum():.10g}, "
                              f"not {total:g}.", fix="check the fitted law's constants and the bounds.")
    if free.any():
        x[free] += resid / free.sum()
    return x


def extrapolate(N1: np.ndarray, N2: np.ndarray, target: float) -> tuple[np.ndarray, float]:
    """Stage 2: ``N_i(s) = N1_i (N2_i / N1_i)^s`` with ``sum_i N_i(s) = target``; returns (N(s), s).

    ``g(s) = log sum_i N_i(s) - log target`` is convex in s, so it can have two roots; the one
    that continues the path from the fitted budgets in the target's direction is taken:
    a target above ``sum N2`` (the usual case) takes the smallest root s > 1, one below
    ``sum N1`` the largest root s < 0, one in between the root in [0, 1]. (Taking the root
    nearest [0, 1] instead can walk the path backwards: N1 = [.5, .5], N2 = [1.5, .05] and a
    target of 10 gave s = -1.3, mixture [0.01, 0.99], where s > 1 gives about [1, 0].)
    """
    from scipy.optimize import brentq, minimize_scalar
    from scipy.special import logsumexp

    N1, N2 = np.asarray(N1, float), np.asarray(N2, float)
    if (N1 <= 0).any() or (N2 <= 0).any():
        raise ValidationError("extrapolation needs positive token counts at both budgets.")
    if not target > 0:
        raise ValidationError(f"the target budget must be positive, got {target:g} tokens.")
    lr = np.log(N2 / N1)
    l1, lt = np.log(N1), np.log(target)

    def g(s: float) -> float:
        return float(logsumexp(l1 + s * lr)) - lt

    none = ValidationError(f"no s gives a total of {target:g} tokens along the optimum path "
                           f"(from {N1.sum():.4g} to {N2.sum():.4g} tokens).",
                           fix="fit DDO at budgets that bracket or lie below the target.")
    g0, g1 = g(0.0), g(1.0)
    if g1 < 0 and g0 < 0:  # above both budgets: the first crossing after s = 1
        b = 2.0
        while g(b) < 0:
            if b > 1e6:
                raise none
            b = 1.0 + 2.0 * (b - 1.0)
        s = brentq(g, 1.0, b, xtol=1e-14, rtol=1e-14, maxiter=500)
    elif g0 > 0 and g1 > 0:  # below both budgets: the first crossing before s = 0
        # g is convex: its minimum on s <= 0 decides whether a root exists
        a = -1.0
        while g(a) >= 0 and g(a) < g(a / 2.0) and a > -1e6:
            a *= 2.0
        if g(a) >= 0:
            lo_s = minimize_scalar(g, bounds=(a, 0.0), method="bounded", options={"xatol": 1e-12}).x
            if g(lo_s) >= 0:
                raise none
            a = lo_s
        s = brentq(g, a, 0.0, xtol=1e-14, rtol=1e-14, maxiter=500)
    else:  # between the budgets (g0 <= 0 <= g1, or the path shrinks: g0 >= 0 >= g1)
        s = 0.0 if g0 == 0 else 1.0 if g1 == 0 else brentq(g, 0.0, 1.0, xtol=1e-14, rtol=1e-14, maxiter=500)
    return N1 * np.exp(s * lr), float(s)


def fit_law(X: np.ndarray, L: np.ndarray, *, init: tuple[np.ndarray, np.ndarray] | None = None,
            n_starts: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Joint least squares of ``L = sum_i (X_i + N0_i)^-gamma_i + c``; returns (N0, gamma, c, rmse)."""
    X, L = np.asarray(X, float), np.asarray(L, float)
    K = X.shape[1]
    rng = np.random.default_rng(seed)

    def unpack(p):
        return np.exp(p[:K]), np.exp(p[K:2 * K]), p[2 * K]

    def res(p):
        N0, g, c = unpack(p)
        return ddo_loss(X, N0, g, c) - L

    def jac(p):
        # analytic: finite differences cost 2K + 2 evaluations per step (K = 17 RegMix domains:
        # a 512-run fit took ~4 minutes with its bootstrap)
        N0, g, _ = unpack(p)
        B = X + N0
        T = np.power(B, -g)
        return np.column_stack([-g * T / B * N0, -T * np.log(B) * g, np.ones(len(X))])

    starts = []
    if init is not None:
        N0i, gi = init
        c0 = float(np.mean(L - ddo_loss(X, N0i, gi)))
        starts.append(np.concatenate([np.log(N0i), np.log(gi), [c0]]))
    for s in range(n_starts):
        N0s = np.full(K, 1.0) if s == 0 else np.exp(rng.normal(0, 0.7, K))
        gs = np.full(K, 1.0) if s == 0 else np.exp(rng.normal(0, 0.4, K))
        c0 = float(np.min(L) - np.mean(ddo_loss(X, N0s, gs)) * 0 - 0.5 * K * np.mean(np.power(1 + N0s, -gs)))
        starts.append(np.concatenate([np.log(N0s), np.log(gs), [c0]]))
    lo = np.concatenate([np.full(K, np.log(1e-4)), np.full(K, np.log(1e-3)), [-np.inf]])
    hi = np.concatenate([np.full(K, np.log(1e4)), np.full(K, np.log(20.0)), [np.inf]])
    best = None
    for p0 in starts:
        p0 = np.clip(p0, lo + 1e-9, hi - 1e-9)
        try:
            r = least_squares(res, p0, jac=jac, bounds=(lo, hi), method="trf", max_nfev=3000, x_scale="jac")
        except (ValueError, FloatingPointError):
            continue
        if best is None or r.cost < best.cost:
            best = r
    if best is None:
        raise ValidationError("the DDO power laws could not be fitted.")
    N0, g, c = unpack(best.x)
    return N0, g, float(c), float(np.sqrt(2 * best.cost / len(L)))


def fit_domain(xb: float, Lb: float, xs: np.ndarray, Ls: np.ndarray,
               init: tuple[float, float] | None = None) -> tuple[float, float]:
    """(N0, gamma) of one domain from its perturbations: ``f(x_j) - f(x_b) = L_j - L_b``."""
    xs, dL = np.asarray(xs, float), np.asarray(Ls, float) - Lb

    def res(p):
        N0, g = np.exp(p)
        return (np.power(xs + N0, -g) - np.power(xb + N0, -g)) - dL

    best = None
    starts = ([np.log(init[0]), np.log(init[1])],) if init is not None else (
        [0.0, 0.0], [np.log(0.1), np.log(0.5)], [np.log(3.0), np.log(1.5)], [np.log(0.5), np.log(3.0)])
    for p0 in starts:
        try:
            r = least_squares(res, p0, bounds=([np.log(1e-4), np.log(1e-3)], [np.log(1e4), np.log(20.0)]))
        except (ValueError, FloatingPointError):
            continue
        if best is None or r.cost < best.cost:
            best = r
    N0, g = np.exp(best.x)
    return float(N0), float(g)


# ---------------------------------------------------------------------------------------------
# Grouping runs into budgets
# ---------------------------------------------------------------------------------------------
def robust_spread(B: np.ndarray) -> np.ndarray:
    """Per column, the std a Gaussian with the same median absolute deviation would have
    (1.4826 x MAD over the rows of ``B``): the spread of the bulk of bootstrap refits, not of
    the few that diverge (module docstring)."""
    B = np.asarray(B, float)
    med = np.median(B, axis=0)
    return 1.4826 * np.median(np.abs(B - med), axis=0)


@dataclass
class BudgetLaw:
    """A fitted DDO law at one (model size, budget)."""

    model_params: float
    budget: float  # total tokens
    unit: float  # tokens per unit (budget / K)
    N0: np.ndarray
    gamma: np.ndarray
    c: float
    rmse: float
    n_runs: int
    design: str  # "perturbation" or "least-squares"
    boot: list[tuple[np.ndarray, np.ndarray, float]]  # bootstrap (N0, gamma, c)
    runs_T: np.ndarray | None = None  # (n_runs, K) per-domain tokens of the runs it was fitted on

    def loss(self, T: np.ndarray, which: int | None = None) -> np.ndarray:
        """Loss at per-domain token counts T (n, K); ``which`` picks a bootstrap law."""
        N0, g, c = (self.N0, self.gamma, self.c) if which is None else self.boot[which]
        return ddo_loss(T / self.unit, N0, g, c)


def _single_coord_partners(T: np.ndarray, rtol: float = 1e-3) -> list[dict[int, list[int]]]:
    """For each run: {domain: [runs differing from it only in that domain]}."""
    n, K = T.shape
    out: list[dict[int, list[int]]] = [dict() for _ in range(n)]
    close = np.isclose(T[:, None, :], T[None, :, :], rtol=rtol, atol=0)
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            diff = np.flatnonzero(~close[a, b])
            if len(diff) == 1:
                out[a].setdefault(int(diff[0]), []).append(b)
    return out


class AutoScale(LossModel):
    """DDO laws per budget + optimum-path extrapolation; see the module docstring."""

    name = "autoscale"
    smooth = True

    def __init__(self, *, budgets: list[float] | None = None, lower_bound: float = 0.2,
                 n_bootstrap: int = 20, noise_std: float = 0.01, seed: int = 0):
        self.budgets = budgets
        self.lower_bound = lower_bound
        self.n_bootstrap = n_bootstrap
        self.noise_std = noise_std
        self.seed = seed

    def n_params(self, K: int) -> int:
        return 2 * K + 1

    # ---- fitting -------------------------------------------------------------------------
    def _fit(self, prep: Prepared, *, warm_start=None) -> None:
        if prep.tokens is None:
            raise ValidationError("AutoScale needs each checkpoint's token count.",
                                  fix="add a 'tokens' column, or 'steps' plus tokens_per_step when fitting.")
        K = len(prep.domains)
        # the law is a loss (decreasing in every domain's tokens): a metric (higher is better)
        # is fitted negated, and predictions are negated back
        self.sign_ = -1.0 if prep.objective.startswith(METRIC_PREFIX) else 1.0
        fin = prep.final_rows()
        self.laws_: list[BudgetLaw] = []
        self.notes_: list[str] = []
        rng = np.random.default_rng(self.seed)
        for mp in np.unique(prep.m[fin]):
            rows = fin[prep.m[fin] == mp]
            T = prep.W[rows] * prep.tokens[rows][:, None]
            L = self.sign_ * prep.y[rows]
            for members, budget, base in self._groups(T):
                law = self._fit_group(T[members], L[members], budget, base, K, float(mp), rng)
                if law is not None:
                    self.laws_.append(law)
        if not self.laws_:
            raise ValidationError(
                f"AutoScale found no budget with enough runs: each needs a base run plus x0.2 / x3 "
                f"perturbations of each domain, or at least {2 * K + 1} runs of similar total tokens.",
                fix="run the DDO design (propose with the 'autoscale' strategy) or give more runs.")
        self.observed_mixtures_ = None

    def _groups(self, T: np.ndarray):
        """Yield (member indices, budget tokens, base index or None)."""
        n, K = T.shape
        totals = T.sum(axis=1)
        partners = _single_coord_partners(T)
        bases = [i for i in range(n) if len(partners[i]) >= 2]
        # merge replicate bases (same token vector): keep the first
        uniq: list[int] = []
        for b in bases:
            if not any(np.allclose(T[b], T[u], rtol=1e-3) for u in uniq):
                uniq.append(b)
        used = set()
        for b in uniq:
            members = [b] + sorted({j for lst in partners[b].values() for j in lst})
            members += [j for j in range(n) if j not in members and np.allclose(T[j], T[b], rtol=1e-3)]
            used.update(members)
            yield np.array(members), float(totals[b]), b
        rest = np.array([i for i in range(n) if i not in used], dtype=int)
        if len(rest) == 0:
            return
        lt = np.log(totals[rest])
        if self.budgets:
            centres = np.log(np.asarray(self.budgets, float))
            lab = np.argmin(np.abs(lt[:, None] - centres[None, :]), axis=1)
            ok = np.abs(lt - centres[lab]) < np.log(2.0)
            for j in range(len(centres)):
                mem = rest[(lab == j) & ok]
                if len(mem):
                    yield mem, float(np.exp(centres[j])), None
            return
        order = np.argsort(lt)
        cut = np.flatnonzero(np.diff(lt[order]) > np.log(1.5))
        for chunk in np.split(order, cut + 1):
            mem = rest[chunk]
            yield mem, float(np.exp(np.median(np.log(totals[mem])))), None

    def _fit_group(self, T, L, budget, base, K, mp, rng) -> BudgetLaw | None:
        unit = budget / K
        X = T / unit
        n = len(L)
        init = None
        design = "least-squares"
        if base is not None:
            b = 0  # members put the base first
            N0 = np.ones(K)
            g = np.ones(K)
            have = np.zeros(K, bool)
            n_pert = np.zeros(K, int)
            for i in range(K):
                mask = np.array([j != b and np.allclose(np.delete(X[j], i), np.delete(X[b], i), rtol=1e-3)
                                 and not np.isclose(X[j, i], X[b, i], rtol=1e-3) for j in range(n)])
                n_pert[i] = len(np.unique(np.round(X[mask, i], 6)))
                if n_pert[i] >= 2:
                    N0[i], g[i] = fit_domain(X[b, i], L[b], X[mask, i], L[mask])
                    have[i] = True
            init = (N0, g)
            design = "perturbation"
            if not have.all():
                # A domain without its two perturbations is not pinned by the design: (N0, gamma)
                # would stay at the starting (1, 1), off its own run. With one perturbation, fit
                # every domain jointly by least squares (the curve then passes through that run;
                # along that domain the law is one equation short, so it stays near (1, 1), which
                # is said in a warning); with none, nothing says how that domain's tokens matter.
                names = [self.domains_[i] for i in np.flatnonzero(~have)]
                none = [self.domains_[i] for i in np.flatnonzero(n_pert == 0)]
                if none:
                    raise ValidationError(
                        f"the DDO design at {budget:.3g} tokens (model size {mp:.3g}) has no perturbation of "
                        f"{', '.join(none)}: the law cannot say how those domains' tokens move the loss.",
                        fix=f"add x0.2 and x3 runs of {', '.join(none)} (the other domains' tokens unchanged), "
                            "e.g. by widening their weight bounds.")
                import warnings

                note = (f"DDO design at {budget:.3g} tokens: {', '.join(names)} had one perturbation, not two; "
                        "the law is a least-squares fit that passes through it but is one equation short "
                        "along those domains.")
                warnings.warn(note, stacklevel=2)
                self.notes_.append(note)
                design = "least-squares"
        elif n < 2 * K + 1:
            return None
        if design == "perturbation" and n == 2 * K + 1:
            c = float(L[0] - ddo_loss(X[0], *init))
            N0f, gf, rmse = init[0], init[1], 0.0
        else:
            N0f, gf, c, rmse = fit_law(X, L, init=init, seed=int(rng.integers(1 << 30)))
        boot = []
        for _ in range(self.n_bootstrap):
            if n > 2 * K + 1 and design == "least-squares":
                idx = rng.integers(0, n, n)
                if len(np.unique(idx)) < 2 * K + 1:
                    continue
                Xb, Lb = X[idx], L[idx]
            else:
                Xb, Lb = X, L + rng.normal(0, max(rmse, self.noise_std), n)
            try:
                if design == "perturbation":
                    Nb, gb = np.ones(K), np.ones(K)
                    for i in range(K):
                        mask = np.array([j != 0 and np.allclose(np.delete(Xb[j], i), np.delete(Xb[0], i), rtol=1e-3)
                                         and not np.isclose(Xb[j, i], Xb[0, i], rtol=1e-3) for j in range(n)])
                        if mask.sum() >= 2:
                            Nb[i], gb[i] = fit_domain(Xb[0, i], Lb[0], Xb[mask, i], Lb[mask], (N0f[i], gf[i]))
                        else:
                            Nb[i], gb[i] = N0f[i], gf[i]
                    cb = float(Lb[0] - ddo_loss(Xb[0], Nb, gb))
                else:
                    Nb, gb, cb, _ = fit_law(Xb, Lb, init=(N0f, gf), n_starts=0)
                boot.append((Nb, gb, cb))
            except ValidationError:
                continue
        return BudgetLaw(mp, budget, unit, N0f, gf, c, rmse, n, design, boot, T.copy())

    # ---- prediction ----------------------------------------------------------------------
    def _law_index(self, m: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Index into ``laws_`` of the law that predicts each query row (sizes m, per-domain tokens
        T): the nearest fitted model size (log distance), then the law whose own design holds
        that token vector (a DDO perturbation's total differs from its base's budget by up to
        x(1 + 2/K)), else the budget nearest the row's **total tokens** (log distance): the
        budget of a run is its total tokens, whatever its mixture."""
        sizes = np.array(sorted({law.model_params for law in self.laws_}))
        size_of = sizes[np.argmin(np.abs(np.log(sizes)[None, :] - np.log(m)[:, None]), axis=1)]
        out = np.full(len(m), -1, dtype=int)
        lt = np.log(np.maximum(T.sum(axis=1), 1e-300))
        for ms in sizes:
            rows = np.flatnonzero(size_of == ms)
            if not len(rows):
                continue
            cands = [i for i, law in enumerate(self.laws_) if law.model_params == ms]
            lb = np.log([self.laws_[i].budget for i in cands])
            out[rows] = np.asarray(cands)[np.argmin(np.abs(lt[rows, None] - lb[None, :]), axis=1)]
            for i in cands:
                R = self.laws_[i].runs_T
                if R is None or not len(R):
                    continue
                for s in range(0, len(rows), 4096):
                    rr = rows[s:s + 4096]
                    own = np.isclose(T[rr, None, :], R[None, :, :], rtol=1e-3, atol=0).all(-1).any(-1)
                    out[rr[own]] = i
        return out

    def _tokens(self, z: np.ndarray) -> np.ndarray:
        enc = self.encoding_
        if enc.z_kind == "tokens":
            return z
        return z * float(enc.tokens_per_step)

    def _predict_arrays(self, W, m, z):
        tok = self._tokens(np.asarray(z, float))
        T = W * tok[:, None]
        mean = np.zeros(len(W))
        std = np.zeros(len(W))
        if not len(W):
            return mean, std
        which = self._law_index(np.asarray(m, float), T)
        for k in np.unique(which):
            law = self.laws_[k]
            idx = np.flatnonzero(which == k)
            mean[idx] = self.sign_ * law.loss(T[idx])
            if law.boot:
                B = np.stack([law.loss(T[idx], j) for j in range(len(law.boot))])
                std[idx] = robust_spread(B)
        return mean, std

    def allocation(self, model_params: float, tokens: float, *, law_index: int | None = None,
                   bounds: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """Token allocation (per domain) at a budget: stage 2 extrapolation where two budgets
        are fitted at this size, else DDO of the nearest law. ``law_index`` picks a bootstrap
        refit. Returns (tokens per domain, info)."""
        K = len(self.domains_)
        sizes = np.array(sorted({law.model_params for law in self.laws_}))
        ms = sizes[np.argmin(np.abs(np.log(sizes) - np.log(model_params)))]
        laws = sorted([law for law in self.laws_ if law.model_params == ms], key=lambda law: law.budget)

        def ddo(law: BudgetLaw, total_tokens: float) -> np.ndarray:
            N0, g, _ = (law.N0, law.gamma, law.c) if law_index is None or not law.boot else \
                law.boot[law_index % len(law.boot)]
            total = total_tokens / law.unit
            lo = np.full(K, min(self.lower_bound, total / K))
            hi = None
            if bounds is not None:
                lo = np.maximum(lo, bounds[:, 0] * total)
                hi = np.maximum(bounds[:, 1] * total, lo)
            return ddo_optimum(N0, g, total, lo, hi) * law.unit

        if len(laws) >= 2:
            l1, l2 = laws[-2], laws[-1]
            N1, N2 = ddo(l1, l1.budget), ddo(l2, l2.budget)
            Ns, s = extrapolate(N1, N2, tokens)
            return Ns, {"stage": 2, "s": s, "budgets": [l1.budget, l2.budget], "N1": N1, "N2": N2}
        law = laws[-1]
        return ddo(law, tokens), {"stage": 1, "budgets": [law.budget]}

    def optimum(self, model_params, *, steps=None, tokens=None, bounds=None, direction=None):
        from engine.models.base import compute_threads

        self._check_fitted()
        with compute_threads(self.num_threads):
            return self._optimum(model_params, steps=steps, tokens=tokens, bounds=bounds, direction=direction)

    def _optimum(self, model_params, *, steps, tokens, bounds, direction):
        from engine.mixture import snap_to_bounds
        from engine.models.base import Optimum, check_bounds

        natural = "maximize" if self.sign_ < 0 else "minimize"
        if self._direction(direction) != natural:
            raise ValidationError(
                f"AutoScale's law is monotone in every domain's tokens: it can only {natural[:-1]}e "
                f"'{self.objective_}' (asked to {self._direction(direction)[:-1]}e it).",
                fix=f"use direction '{natural}' (the default), or another model.")
        K = len(self.domains_)
        b = check_bounds(bounds, K)
        z = self.encoding_.z_from(steps=steps, tokens=tokens)
        tok = float(self._tokens(np.array([z]))[0])
        Ns, info = self.allocation(model_params, tok, bounds=None if bounds is None else b)
        w = snap_to_bounds(project_simplex((Ns / Ns.sum())[None], b)[0], b)
        mean, std = self._predict_arrays(w[None], np.array([float(model_params)]), np.array([z]))
        W_boot = []
        for j in range(self.n_bootstrap):
            try:
                Nb, _ = self.allocation(model_params, tok, law_index=j, bounds=None if bounds is None else b)
                W_boot.append(project_simplex((Nb / Nb.sum())[None], b)[0])
            except ValidationError:
                continue
        self.weights_std_ = (dict(zip(self.domains_, np.std(W_boot, axis=0))) if W_boot
                             else dict.fromkeys(self.domains_, 0.0))
        info["weights_std"] = self.weights_std_
        info["tokens_per_domain"] = dict(zip(self.domains_, Ns))
        return Optimum(dict(zip(self.domains_, map(float, w))), float(mean[0]), float(std[0]),
                       int(model_params), steps, tokens, info)
