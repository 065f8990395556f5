"""The loss-model interface every model in :mod:`engine.models` implements.

A loss model is fitted on a run table (:mod:`engine.runtable.schema`: one row per checkpoint,
``w_<domain>``, ``model_params``, ``tokens`` and/or ``steps``, the objective column) and predicts
the objective's mean and standard deviation at any (mixture, model size, length). scikit-learn
style: hyperparameters go to ``__init__``, :meth:`LossModel.fit` learns state kept in attributes
ending in ``_``, and returns the model.

The length axis ("z"): a model works in **steps** when the training rows carry steps (or tokens
plus ``tokens_per_step``), else in **tokens**. A query gives ``steps`` or ``tokens``; tokens are
converted with ``tokens_per_step`` where the model works in steps. A table with neither column
is accepted by the mixture-only models (RegMix tables): every row then sits at one length.

Validation happens here, at the boundary, and raises :class:`engine.errors.ValidationError`
with the fix in the message: an unknown objective, one domain only, weights off the simplex,
a NaN objective, fewer runs than the model has parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Self

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from engine.mixture import snap_to_bounds
from engine.runtable.schema import (
    LOSS_PREFIX,
    METRIC_PREFIX,
    RENORMALISE_TOLERANCE,
    WEIGHT_PREFIX,
    loss_columns,
    metric_columns,
    objective_values,
    weight_columns,
)

#: The span (in nats of log size / log length) used to normalise an axis that the training
#: data does not vary (one model size only, one length only): one unit = a factor of e^log(10).
DEFAULT_LOG_SPAN = math.log(10.0)


class compute_threads:
    """Limit BLAS (via threadpoolctl, where installed) and torch to ``n`` threads in a block.

    Default 1 for every model: on a shared 2-core machine multi-threaded BLAS/OpenMP collapses
    when the other core is busy (an SVD of 531 x 19 took 127 ms instead of 3 ms, FACTS.md has
    torch 10-17x), while the matrices here gain little from a second thread. ``None``: as is.
    """

    def __init__(self, n: int | None = 1):
        self.n = n
        self._ctl = None
        self._torch_old = None

    def __enter__(self):
        if not self.n:
            return self
        try:
            from threadpoolctl import threadpool_limits

            self._ctl = threadpool_limits(limits=self.n)
        except ImportError:  # pragma: no cover - optional
            self._ctl = None
        import sys

        torch = sys.modules.get("torch")
        if torch is not None:
            self._torch_old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self._ctl is not None:
            self._ctl.restore_original_limits()
        if self._torch_old is not None:
            import sys

            sys.modules["torch"].set_num_threads(self._torch_old)


@dataclass(frozen=True)
class Optimum:
    """The best mixture a model finds at one scale, with its predicted objective."""

    weights: dict[str, float]
    pred_mean: float
    pred_std: float
    model_params: int | None = None
    steps: float | None = None
    tokens: float | None = None
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """``{"weights": {dom: w}, "pred_mean": .., "pred_std": ..}`` (DESIGN.md contract 1)."""
        return {
            "weights": {k: float(v) for k, v in self.weights.items()},
            "pred_mean": float(self.pred_mean),
            "pred_std": float(self.pred_std),
        }


# ---------------------------------------------------------------------------------------------
# Input encoding shared by the models
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Encoding:
    """How (w, model_params, length) become model inputs.

    ``encode`` returns ``[w_1..w_K, u_m, u_z]`` with
    ``u_m = (log m - log_m_lo) / log_m_span`` and ``u_z = (log z - log_z_lo) / log_z_span``,
    where lo/span are the training data's min and (max - min) of log size / log length
    (``DEFAULT_LOG_SPAN`` where the data holds one value). Training data thus lies in
    [0, 1] on both scale axes; larger scales map above 1.
    """

    domains: tuple[str, ...]
    z_kind: str | None  # "steps", "tokens" or None (no length column)
    tokens_per_step: float | None
    log_m_lo: float
    log_m_span: float
    log_z_lo: float
    log_z_span: float

    @property
    def dim(self) -> int:
        return len(self.domains) + 2

    def encode(self, W: np.ndarray, m: np.ndarray, z: np.ndarray) -> np.ndarray:
        W = np.asarray(W, dtype=float).reshape(-1, len(self.domains))
        n = W.shape[0]
        m = np.broadcast_to(np.asarray(m, dtype=float), (n,))
        z = np.broadcast_to(np.asarray(z, dtype=float), (n,))
        um = (np.log(m) - self.log_m_lo) / self.log_m_span
        uz = (np.log(z) - self.log_z_lo) / self.log_z_span
        return np.column_stack([W, um, uz])

    def z_from(self, *, steps: float | None = None, tokens: float | None = None) -> float:
        """The length on this model's axis from steps or tokens (1.0 where it has no axis)."""
        if self.z_kind is None:
            return 1.0
        if self.z_kind == "steps":
            if steps is not None:
                return float(steps)
            if tokens is not None and self.tokens_per_step:
                return float(tokens) / float(self.tokens_per_step)
            raise ValidationError(
                "this model was fitted on steps; the query gives no steps"
                + (" (and tokens cannot be converted without tokens_per_step)." if tokens is not None else "."),
                fix="give steps, or pass tokens_per_step when fitting.",
            )
        if tokens is not None:
            return float(tokens)
        if steps is not None and self.tokens_per_step:
            return float(steps) * float(self.tokens_per_step)
        raise ValidationError(
            "this model was fitted on tokens; the query gives no tokens.",
            fix="give tokens, or pass tokens_per_step when fitting so steps can be converted.",
        )


@dataclass
class Prepared:
    """A validated run table as arrays: one entry per checkpoint row."""

    domains: list[str]
    W: np.ndarray  # (n, K)
    m: np.ndarray  # (n,) model params
    z: np.ndarray  # (n,) length on the model's axis (1.0 where none)
    y: np.ndarray  # (n,) objective
    run_ids: np.ndarray  # (n,) run id per row
    z_kind: str | None
    tokens: np.ndarray | None  # (n,) tokens where known (else None)
    objective: str
    tokens_per_step: float | None
    #: for ``mean_loss``: each loss column's values ({column: (n,)}), so a model can fit the
    #: domains one by one (the Data Mixing Laws fit a law per domain); None otherwise
    parts: dict[str, np.ndarray] | None = None

    @property
    def n_runs(self) -> int:
        return len(np.unique(self.run_ids))

    def encoding(self) -> Encoding:
        lm, lz = np.log(self.m), np.log(self.z)
        span_m = float(lm.max() - lm.min()) or DEFAULT_LOG_SPAN
        span_z = float(lz.max() - lz.min()) or DEFAULT_LOG_SPAN
        return Encoding(tuple(self.domains), self.z_kind, self.tokens_per_step,
                        float(lm.min()), span_m, float(lz.min()), span_z)

    def final_rows(self) -> np.ndarray:
        """Index of each run's last checkpoint (largest length)."""
        df = pd.DataFrame({"r": self.run_ids, "z": self.z, "i": np.arange(len(self.z))})
        return df.sort_values(["r", "z"]).groupby("r", sort=False)["i"].last().to_numpy()


def check_objective(runs: pd.DataFrame, objective: str) -> None:
    """Raise a ValidationError naming the available objectives when ``objective`` is unknown."""
    if objective == "mean_loss":
        if not loss_columns(runs):
            raise ValidationError("objective 'mean_loss' needs at least one loss_* column; the table has none.",
                                  fix="add loss_<domain> columns or pick a metric_* objective.")
        return
    if objective not in runs.columns or not (
        objective.startswith(LOSS_PREFIX) or objective.startswith(METRIC_PREFIX)
    ):
        avail = ["mean_loss"] * bool(loss_columns(runs)) + loss_columns(runs) + metric_columns(runs)
        raise ValidationError(f"unknown objective '{objective}'.", column=objective,
                              fix=f"use one of: {', '.join(avail) or '(none: the table has no loss_*/metric_* columns)'}.")


def _weights(df: pd.DataFrame, domains: list[str] | None, *, what: str) -> tuple[list[str], np.ndarray]:
    cols = weight_columns(df)
    if domains is None:
        domains = [c[len(WEIGHT_PREFIX):] for c in cols]
    missing = [d for d in domains if WEIGHT_PREFIX + d not in df.columns]
    if missing:
        raise ValidationError(f"{what} has no weight column for domain(s) {', '.join(missing)}.",
                              fix=f"add columns {', '.join(WEIGHT_PREFIX + d for d in missing)}.")
    if len(domains) < 2:
        raise ValidationError(
            f"{what} has {len(domains)} mixture domain(s); a mixture needs at least two.",
            fix="add w_<domain> columns for every training domain (weights summing to 1).")
    W = df[[WEIGHT_PREFIX + d for d in domains]].to_numpy(dtype=float)
    bad = ~np.isfinite(W).all(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0]) + 1
        raise ValidationError(f"{what}: missing or non-numeric weight.", row=r,
                              fix="every row needs all w_* columns filled.")
    if (W < -1e-9).any():
        r = int(np.flatnonzero((W < -1e-9).any(axis=1))[0]) + 1
        raise ValidationError(f"{what}: negative mixture weight.", row=r,
                              fix="weights must be >= 0 and sum to 1.")
    s = W.sum(axis=1)
    off = np.abs(s - 1.0) > RENORMALISE_TOLERANCE
    if off.any():
        r = int(np.flatnonzero(off)[0]) + 1
        raise ValidationError(f"{what}: weights sum to {s[off][0]:.4g}, not 1 (off the simplex).", row=r,
                              fix="normalise each row's w_* columns to sum to 1.")
    W = np.clip(W, 0.0, None)
    return list(domains), W / W.sum(axis=1, keepdims=True)


def _positive(df: pd.DataFrame, col: str, what: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
        r = int(np.flatnonzero(bad)[0]) + 1
        raise ValidationError(f"{what}: '{col}' must be a positive number, got {df[col].iloc[r - 1]!r}.",
                              row=r, column=col, fix=f"fill '{col}' on every row.")
    return v


def prepare(runs: pd.DataFrame, objective: str, *, domains: list[str] | None = None,
            tokens_per_step: float | None = None, need_y: bool = True) -> Prepared:
    """Validate a run table and turn it into arrays (see the module docstring)."""
    if not isinstance(runs, pd.DataFrame):
        raise ValidationError(f"expected a run-table DataFrame, got {type(runs).__name__}.")
    if len(runs) == 0:
        raise ValidationError("the run table is empty.", fix="import or run some trials first.")
    runs = runs.reset_index(drop=True)
    doms, W = _weights(runs, domains, what="run table")
    if "model_params" not in runs.columns:
        raise ValidationError("the run table has no 'model_params' column.", column="model_params",
                              fix="add the model size in parameters on every row.")
    m = _positive(runs, "model_params", "run table")
    has_steps = "steps" in runs.columns and runs["steps"].notna().all()
    has_tokens = "tokens" in runs.columns and runs["tokens"].notna().all()
    tokens = _positive(runs, "tokens", "run table") if has_tokens else None
    if has_steps:
        z, z_kind = _positive(runs, "steps", "run table"), "steps"
    elif has_tokens and tokens_per_step:
        z, z_kind = tokens / float(tokens_per_step), "steps"
    elif has_tokens:
        z, z_kind = tokens, "tokens"
    else:
        z, z_kind = np.ones(len(runs)), None
    if tokens is None and has_steps and tokens_per_step:
        tokens = z * float(tokens_per_step)
    if "run_id" in runs.columns:
        run_ids = runs["run_id"].astype(str).to_numpy()
    else:  # each distinct (mixture, size) is one run
        key = pd.DataFrame(W).round(9).astype(str).agg(",".join, axis=1) + "|" + pd.Series(m).astype(str)
        run_ids = key.to_numpy()
    y = np.full(len(runs), np.nan)
    parts = None
    if need_y:
        check_objective(runs, objective)
        y = pd.to_numeric(objective_values(runs, objective), errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(y)
        if bad.any():
            r = int(np.flatnonzero(bad)[0]) + 1
            raise ValidationError(
                f"the objective '{objective}' is NaN or missing on {int(bad.sum())} row(s).", row=r,
                column=None if objective == "mean_loss" else objective,
                fix="drop those rows (e.g. runs.dropna(subset=[...])) or re-import the run with its losses.")
        if objective == "mean_loss":
            parts = {c: pd.to_numeric(runs[c], errors="coerce").to_numpy(dtype=float) for c in loss_columns(runs)}
    return Prepared(doms, W, m, z, y, run_ids, z_kind, tokens, objective,
                    None if tokens_per_step is None else float(tokens_per_step), parts)


def check_enough_runs(prep: Prepared, n_params: int, model: str, why: str | None = None) -> None:
    """Fewer runs than the model has parameters cannot identify it. ``why`` says where the
    required number comes from (default: "it has N parameters")."""
    if prep.n_runs < n_params:
        raise ValidationError(
            f"{model} with {len(prep.domains)} domains needs at least {n_params} runs "
            f"({why or f'it has {n_params} parameters'}); the table holds only {prep.n_runs} run(s).",
            fix=f"add at least {n_params - prep.n_runs} more run(s) with different mixtures, or use a "
                "simpler model (e.g. 'uniform').")


# ---------------------------------------------------------------------------------------------
# The simplex: projection and optimisation
# ---------------------------------------------------------------------------------------------
def check_bounds(bounds: list[tuple[float, float]] | None, K: int) -> np.ndarray:
    """(K, 2) array of per-domain weight bounds; raises when no mixture fits them."""
    if bounds is None:
        return np.column_stack([np.zeros(K), np.ones(K)])
    b = np.asarray(bounds, dtype=float)
    if b.shape != (K, 2):
        raise ValidationError(f"expected {K} (low, high) weight bounds, got shape {b.shape}.",
                              fix="give one (low, high) pair per domain, in domain order.")
    if (b[:, 0] > b[:, 1]).any() or (b < 0).any() or (b > 1).any():
        raise ValidationError("weight bounds need 0 <= low <= high <= 1.")
    if b[:, 0].sum() > 1 + 1e-9 or b[:, 1].sum() < 1 - 1e-9:
        raise ValidationError(f"no mixture fits the bounds: lows sum to {b[:, 0].sum():g}, highs to "
                              f"{b[:, 1].sum():g}.", fix="lower bounds must sum to <= 1 and upper to >= 1.")
    return b


def project_simplex(V: np.ndarray, bounds: np.ndarray | None = None) -> np.ndarray:
    """Euclidean projection of rows of V onto {lo <= w <= hi, sum w = 1} (no bounds: the simplex)."""
    from engine.mixture import project_to_simplex

    V = np.atleast_2d(np.asarray(V, dtype=float))
    return project_to_simplex(V, check_bounds(None, V.shape[1]) if bounds is None else bounds)


def sample_simplex(n: int, K: int, bounds: np.ndarray | None, rng: np.random.Generator,
                   alpha: float = 1.0) -> np.ndarray:
    """Dirichlet(alpha) samples projected onto the bounds."""
    W = rng.dirichlet(np.full(K, alpha), size=n)
    return W if bounds is None else project_simplex(W, bounds)


def optimize_simplex(f: Callable[[np.ndarray], np.ndarray], K: int, bounds: np.ndarray | None = None,
                     *, sign: float = 1.0, n_candidates: int = 4096, n_starts: int = 4, seed: int = 0,
                     smooth: bool = True, extra: np.ndarray | None = None) -> np.ndarray:
    """Minimise ``sign * f(w)`` over the (bounded) simplex.

    ``f`` maps an (n, K) array of mixtures to n values. Random Dirichlet candidates (several
    concentrations, plus the uniform mixture and ``extra``) are scored in one batch; the best
    ``n_starts`` are refined with SLSQP using batched forward differences when ``smooth``.
    """
    from scipy.optimize import minimize

    b = check_bounds(None, K) if bounds is None else bounds
    rng = np.random.default_rng(seed)
    parts = [project_simplex(np.full((1, K), 1.0 / K), b)]
    for alpha, frac in ((1.0, 0.5), (0.3, 0.25), (3.0, 0.25)):
        parts.append(sample_simplex(max(1, int(n_candidates * frac)), K, b, rng, alpha))
    if extra is not None and len(extra):
        parts.append(project_simplex(np.asarray(extra, float).reshape(-1, K), b))
    C = np.vstack(parts)
    vals = sign * np.asarray(f(C), dtype=float)
    order = np.argsort(vals)
    best_w, best_v = C[order[0]], vals[order[0]]
    if not smooth:
        return best_w
    h = 1e-6

    def fun_jac(w):
        P = np.vstack([w, w + h * np.eye(K)])
        v = sign * np.asarray(f(P), dtype=float)
        return v[0], (v[1:] - v[0]) / h

    cache: dict = {}

    def fun(w):
        key = w.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = fun_jac(w)
        return cache[key][0]

    def jac(w):
        fun(w)
        return cache[w.tobytes()][1]

    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(K)}]
    starts = []
    for i in order:  # distinct starts
        if all(np.abs(C[i] - s).max() > 1e-3 for s in starts):
            starts.append(C[i])
        if len(starts) >= n_starts:
            break
    for w0 in starts:
        try:
            res = minimize(fun, w0, jac=jac, method="SLSQP", bounds=[tuple(x) for x in b],
                           constraints=cons, options={"maxiter": 100, "ftol": 1e-10})
        except (ValueError, FloatingPointError):
            continue
        w = project_simplex(res.x[None, :], b)[0]
        v = sign * float(np.asarray(f(w[None, :]))[0])
        if np.isfinite(v) and v < best_v:
            best_w, best_v = w, v
    return best_w


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------
class LossModel(ABC):
    """Predicts an objective (loss or metric) from (mixture, model size, length).

    Subclasses implement :meth:`_fit` (on validated arrays) and :meth:`_predict_arrays`
    (mixtures, sizes, lengths -> mean, std); :meth:`fit`, :meth:`predict` and :meth:`optimum`
    are shared. After ``fit`` every model has ``domains_``, ``objective_``, ``encoding_``,
    ``n_runs_`` and ``fit_seconds_``.
    """

    name: ClassVar[str] = "base"
    #: threads for fit / predict / optimum (see :class:`compute_threads`); None leaves them as is
    num_threads: int | None = 1
    #: whether ``_predict_arrays`` is smooth in w (gradient refinement in ``optimum``)
    smooth: ClassVar[bool] = True

    # ---- public API ----------------------------------------------------------------------
    def fit(self, runs: pd.DataFrame, objective: str = "mean_loss", *, domains: list[str] | None = None,
            tokens_per_step: int | None = None, warm_start: "LossModel | None" = None) -> Self:
        """Fit on a run table; ``objective`` is a ``loss_*``/``metric_*`` column or ``mean_loss``."""
        with compute_threads(self.num_threads):
            return self._fit_public(runs, objective, domains=domains, tokens_per_step=tokens_per_step,
                                    warm_start=warm_start)

    def _fit_public(self, runs, objective, *, domains, tokens_per_step, warm_start) -> Self:
        import time

        t0 = time.perf_counter()
        prep = prepare(runs, objective, domains=domains, tokens_per_step=tokens_per_step)
        self.domains_ = list(prep.domains)
        self.objective_ = objective
        self.encoding_ = prep.encoding()
        self.n_runs_ = prep.n_runs
        self.n_rows_ = len(prep.y)
        need = self.n_params_for(prep)
        check_enough_runs(prep, need, self.name, self.min_runs_why(prep, need))
        self._fit(prep, warm_start=warm_start)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def predict(self, query: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the objective at each query row (``w_*``, ``model_params``, ``steps``
        or ``tokens``). Domains missing from the query are an error; extra columns are ignored."""
        self._check_fitted()
        W, m, z = self.query_arrays(query)
        with compute_threads(self.num_threads):
            mean, std = self._predict_arrays(W, m, z)
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)

    def predict_mean(self, query: pd.DataFrame) -> np.ndarray:
        """The mean alone at each query row; models whose std is the expensive part (the GP:
        O(n^2) per row against O(n)) skip it, so scoring many rows is cheap."""
        self._check_fitted()
        W, m, z = self.query_arrays(query)
        with compute_threads(self.num_threads):
            mean = self._predict_mean_arrays(W, m, z)
        return np.asarray(mean, dtype=float)

    def optimum(self, model_params: int, *, steps: int | None = None, tokens: float | None = None,
                bounds: list[tuple[float, float]] | None = None, direction: str | None = None) -> Optimum:
        """The mixture with the best predicted mean at one scale. ``direction`` defaults to
        ``maximize`` for ``metric_*`` objectives and ``minimize`` otherwise."""
        self._check_fitted()
        direction = self._direction(direction)
        K = len(self.domains_)
        b = check_bounds(bounds, K)
        z = self.encoding_.z_from(steps=steps, tokens=tokens)
        m = float(model_params)
        sign = 1.0 if direction == "minimize" else -1.0
        with compute_threads(self.num_threads):
            w = snap_to_bounds(self._optimize(m, z, b, sign), b)
            mean, std = self._predict_arrays(w[None, :], np.array([m]), np.array([z]))
        return Optimum({d: float(x) for d, x in zip(self.domains_, w)}, float(mean[0]), float(std[0]),
                       int(model_params), steps, tokens)

    # ---- hooks ---------------------------------------------------------------------------
    def n_params(self, K: int) -> int:
        """Number of free parameters with K domains (the minimum number of runs to fit)."""
        return 1

    def n_params_for(self, prep: Prepared) -> int:
        """The minimum number of runs to fit this table (checked before ``_fit``): by default
        :meth:`n_params`; models whose parameter count depends on the data (scale terms only
        where sizes / lengths vary) override it."""
        return self.n_params(len(prep.domains))

    def min_runs_why(self, prep: Prepared, need: int) -> str:
        """Why :meth:`n_params_for` asks for ``need`` runs (said in the error)."""
        return f"it has {need} parameters"

    @abstractmethod
    def _fit(self, prep: Prepared, *, warm_start: "LossModel | None" = None) -> None: ...

    @abstractmethod
    def _predict_arrays(self, W: np.ndarray, m: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def _predict_mean_arrays(self, W: np.ndarray, m: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self._predict_arrays(W, m, z)[0]

    def _optimize(self, m: float, z: float, bounds: np.ndarray, sign: float) -> np.ndarray:
        K = len(self.domains_)

        def f(W):
            return self._predict_mean_arrays(W, np.full(len(W), m), np.full(len(W), z))

        return optimize_simplex(f, K, bounds, sign=sign, smooth=self.smooth,
                                extra=getattr(self, "observed_mixtures_", None))

    # ---- helpers -------------------------------------------------------------------------
    def _direction(self, direction: str | None) -> str:
        if direction is None:
            return "maximize" if self.objective_.startswith(METRIC_PREFIX) else "minimize"
        if direction not in ("minimize", "maximize"):
            raise ValidationError(f"direction must be 'minimize' or 'maximize', got {direction!r}.")
        return direction

    def _check_fitted(self) -> None:
        if not hasattr(self, "domains_"):
            raise ValidationError(f"the {self.name} model is not fitted yet.", fix="call fit(runs) first.")

    def query_arrays(self, query: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated (W, model_params, z) of query rows on this model's axes."""
        self._check_fitted()
        if len(query) == 0:
            return np.zeros((0, len(self.domains_))), np.zeros(0), np.zeros(0)
        query = query.reset_index(drop=True)
        _, W = _weights(query, self.domains_, what="query")
        if "model_params" not in query.columns:
            raise ValidationError("the query has no 'model_params' column.", column="model_params")
        m = _positive(query, "model_params", "query")
        enc = self.encoding_
        if enc.z_kind is None:
            z = np.ones(len(query))
        else:
            has = {c: c in query.columns and query[c].notna().all() for c in ("steps", "tokens")}
            if enc.z_kind == "steps" and has["steps"]:
                z = _positive(query, "steps", "query")
            elif enc.z_kind == "tokens" and has["tokens"]:
                z = _positive(query, "tokens", "query")
            elif enc.z_kind == "steps" and has["tokens"] and enc.tokens_per_step:
                z = _positive(query, "tokens", "query") / enc.tokens_per_step
            elif enc.z_kind == "tokens" and has["steps"] and enc.tokens_per_step:
                z = _positive(query, "steps", "query") * enc.tokens_per_step
            else:
                raise ValidationError(f"the query needs a '{enc.z_kind}' column (the model was fitted on "
                                      f"{enc.z_kind}).", column=enc.z_kind,
                                      fix=f"add '{enc.z_kind}' to every query row.")
        return W, m, z

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
