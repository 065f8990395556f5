"""Backtest: fit on the small runs, predict the larger ones, and score the prediction.

mixplan's question is which mixture is best at a scale nobody has trained at, so a loss model is
judged by how it extrapolates, never by its in-sample fit. :func:`backtest` does what a careful
user would do by hand: for every size boundary of a study (``cut``: the largest model size
kept), it fits each model on the runs at sizes <= cut (every checkpoint), predicts the final
checkpoint of every run above the cut, and scores the predictions per held-out size:

- ``spearman``: rank correlation of predicted and observed values (does it rank mixtures?);
- ``mre``: mean relative error |pred - obs| / |obs| (is the level right?);
- ``best_regret``: observed value of the mixture predicted best minus the best observed (in the
  objective's units, >= 0 for both directions): what trusting the model would have cost;
- ``coverage_1std`` / ``coverage_2std``: the share of held-out runs whose observed value lies
  within +-1 / +-2 predicted std (is the interval honest? a calibrated Gaussian gives 68% / 95%).

Held-out runs never enter a fit: the fit table is filtered by size before the model sees it
(``tests/test_models_backtest.py`` checks this with a poisoned held-out run).

:func:`recommend_model` names the model to trust from these rows and says why.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from engine.numbers import human
from engine.runtable.schema import METRIC_PREFIX, objective_values

#: the models a backtest compares by default (the registry's loss models that extrapolate in
#: scale; the fixed mixtures predict no level and are left out)
DEFAULT_MODELS = ("mfms-gp", "dmsl", "mixing-law", "autoscale", "regmix")
#: inner cuts a calibration is fitted on (the largest ones below the fit's own sizes)
INNER_CUTS = 2
#: columns of :attr:`BacktestResult.rows` (one row per model, cut and held-out size)
ROW_COLUMNS = ("model", "cut", "model_params", "n", "spearman", "mre", "best_regret", "rel_regret",
               "coverage_1std", "coverage_2std", "size_ratio", "fit_s", "error")


@dataclass
class BacktestResult:
    """Scores per (model, cut, held-out size) in ``rows``; every held-out prediction in
    ``predictions`` (model, cut, run_id, model_params, length, observed, pred_mean, pred_std);
    the recommended model and why."""

    rows: pd.DataFrame
    predictions: pd.DataFrame
    objective: str
    direction: str
    cuts: list[int]
    recommended: str | None = None
    reason: str = ""
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_records(self) -> list[dict]:
        """``backtest --json`` rows: the score columns plus ``recommended`` on every row."""
        out = []
        for r in self.rows.to_dict("records"):
            rec = {k: plain(r.get(k)) for k in ROW_COLUMNS if k in r}
            rec["recommended"] = self.recommended
            out.append(rec)
        return out


def plain(v):
    """A score as JSON has it: numpy numbers as Python numbers, NaN and infinities as None."""
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def size_cuts(runs: pd.DataFrame, cut: str | int | float = "auto") -> list[int]:
    """The size boundaries to backtest. ``auto``: every size below the largest, from the first
    that leaves two sizes in the fit (one size cannot show a model how loss falls with size;
    where the study has only two sizes, the smaller one). A number: that boundary (it must
    leave runs on both sides)."""
    sizes = np.sort(pd.unique(pd.to_numeric(runs["model_params"], errors="coerce").dropna()))
    if len(sizes) < 2:
        raise ValidationError(
            f"a backtest needs runs at two model sizes at least; this table has {len(sizes)} "
            f"({', '.join(f'{int(s):,}' for s in sizes) or 'none'}).",
            fix="add runs at a second (larger) model size: the backtest fits the smaller sizes and predicts "
                "the larger ones.")
    if isinstance(cut, str):
        if cut != "auto":
            try:
                cut = float(cut)
            except ValueError:
                raise ValidationError(f"--cut must be 'auto' or a model size, got {cut!r}.",
                                      fix="e.g. --cut auto or --cut 60000000.") from None
        else:
            first = 1 if len(sizes) >= 3 else 0
            return [int(s) for s in sizes[first:-1]]
    c = float(cut)
    if not (sizes[0] <= c < sizes[-1]):
        raise ValidationError(
            f"cut {c:,.0f} leaves no runs on one side: the study's sizes are "
            f"{', '.join(f'{int(s):,}' for s in sizes)}.",
            fix=f"give a size from {int(sizes[0]):,} up to (not including) {int(sizes[-1]):,}.")
    return [int(c)]


def final_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's last checkpoint (largest steps, else tokens)."""
    key = _length_column(runs)
    df = runs.reset_index(drop=True)
    if key is None:
        return df.groupby("run_id", sort=False).tail(1)
    return df.sort_values(["run_id", key], kind="stable").groupby("run_id", sort=False).tail(1)


def score(obs: np.ndarray, mean: np.ndarray, std: np.ndarray, *, maximize: bool = False) -> dict:
    """The backtest scores of one held-out group (module docstring)."""
    from scipy.stats import spearmanr

    obs, mean, std = (np.asarray(a, float) for a in (obs, mean, std))
    n = len(obs)
    out = {"n": n}
    if n == 0:
        return out | {"spearman": np.nan, "mre": np.nan, "best_regret": np.nan, "rel_regret": np.nan,
                      "coverage_1std": np.nan, "coverage_2std": np.nan}
    ok = np.isfinite(mean)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(obs[ok], mean[ok])[0]) if ok.sum() >= 3 and np.ptp(mean[ok]) > 0 else np.nan
    err = np.abs(mean - obs)
    sign = -1.0 if maximize else 1.0
    best_pred = int(np.nanargmin(sign * mean)) if ok.any() else 0
    best_obs = obs[int(np.argmin(sign * obs))]
    regret = max(0.0, float(sign * (obs[best_pred] - best_obs)))
    sd = np.where(np.isfinite(std), std, 0.0)
    return out | {
        "spearman": rho,
        "mre": float(np.nanmean(err / np.maximum(np.abs(obs), 1e-12))),
        "best_regret": regret,
        "rel_regret": regret / max(abs(float(best_obs)), 1e-12),
        "coverage_1std": float(np.mean(err <= sd)),
        "coverage_2std": float(np.mean(err <= 2 * sd)),
    }


def backtest(runs: pd.DataFrame, objective: str, *, models: Sequence[str] = DEFAULT_MODELS,
             cut: str | int | float = "auto", domains: list[str] | None = None,
             tokens_per_step: float | None = None, direction: str | None = None, calibrate: bool = True,
             make_model: Callable[[str], object] | None = None,
             progress: Callable[[str], None] | None = None) -> BacktestResult:
    """Fit every model on the runs at sizes <= each cut and score its predictions of the final
    checkpoint of every larger run (module docstring). ``calibrate``: each model's std is
    widened as mixplan widens it in use (:mod:`engine.models.calibration`), from an inner
    backtest on the fitted runs alone, so the coverage columns measure the intervals a user
    would see (``coverage_1std_raw`` / ``_2std_raw`` keep the model's own). A model that cannot
    be fitted on a cut gets rows with its ``error`` and no scores (a backtest never stops on one
    model)."""
    from engine.models import get_model
    from engine.models.calibration import calibration_from_backtest, distance

    make = make_model or get_model
    if runs.empty:
        raise ValidationError("the study has no runs to backtest.", fix="import or run some trials first.")
    direction = direction or ("maximize" if objective.startswith(METRIC_PREFIX) else "minimize")
    maximize = direction == "maximize"
    cuts = size_cuts(runs, cut)
    mp = pd.to_numeric(runs["model_params"], errors="coerce").to_numpy(float)
    rows, preds = [], []
    # this backtest's own predictions per (model, cut): a later cut's calibration backtests the
    # cuts below it, whose fits (the runs <= that cut) and held-out runs these already are, so
    # they are reused instead of fitted again (a 500-run study: 6 fits per model instead of 13)
    outer_preds: dict[tuple[str, int], pd.DataFrame] = {}
    for c in cuts:
        fit_runs = runs[mp <= c].reset_index(drop=True)
        held = final_rows(runs[mp > c])
        obs = pd.to_numeric(objective_values(held, objective), errors="coerce").to_numpy(float)
        keep = np.isfinite(obs)
        held, obs = held[keep].reset_index(drop=True), obs[keep]
        max_fit = float(fit_runs["model_params"].max())
        length = _length(held)
        d = distance(held["model_params"].to_numpy(float), length, max_fit, _max_length(fit_runs))
        for name in models:
            if progress:
                progress(f"{name} on sizes <= {human(c)}")
            t0 = time.perf_counter()
            mean, std, err, model = _fit_predict(make, name, fit_runs, held, objective, domains, tokens_per_step)
            std_raw = std
            note = ""
            if getattr(model, "self_calibrated", False) and err is None:
                std_raw = model.predict_raw(held)[1]
                note = model.calibration_.describe()
            elif calibrate and err is None:
                try:
                    inner_cuts = size_cuts(fit_runs)
                except ValidationError:
                    inner_cuts = []
                if inner_cuts:
                    # the two largest inner cuts: the closest to this fit, and the cheapest way to
                    # measure how the error grows with the distance (all cuts made a 500-run study's
                    # backtest ~2x slower for the same calibration)
                    inner = [_inner_predictions(outer_preds[(name, ic)], c) if (name, ic) in outer_preds
                             else backtest(fit_runs, objective, models=[name], cut=ic, domains=domains,
                                           tokens_per_step=tokens_per_step, direction=direction,
                                           calibrate=False, make_model=make).predictions
                             for ic in inner_cuts[-INNER_CUTS:]]
                    cal = calibration_from_backtest(pd.concat(inner, ignore_index=True), name)
                    std = cal.apply(mean, std, d)
                    note = cal.describe()
                else:
                    note = "not calibrated: the fitted runs have one model size"
            fit_s = time.perf_counter() - t0
            for size, grp in held.groupby("model_params", sort=True):
                i = grp.index.to_numpy()
                sc = score(obs[i], mean[i], std[i], maximize=maximize) if err is None else {"n": len(i)}
                raw = score(obs[i], mean[i], std_raw[i], maximize=maximize) if err is None else {}
                rows.append({"model": name, "cut": int(c), "model_params": int(size), **sc,
                             "coverage_1std_raw": raw.get("coverage_1std"),
                             "coverage_2std_raw": raw.get("coverage_2std"),
                             "size_ratio": float(size) / max_fit, "fit_s": fit_s, "error": err,
                             "calibration": note})
            pred = pd.DataFrame({
                "model": name, "cut": int(c), "run_id": held["run_id"].astype(str).to_numpy(),
                "model_params": held["model_params"].to_numpy(),
                "length": length if length is not None else np.nan, "distance": d,
                "observed": obs, "pred_mean": mean, "pred_std": std, "pred_std_raw": std_raw})
            preds.append(pred)
            outer_preds[(name, int(c))] = pred
    rows_df = pd.DataFrame(rows)
    for col in ROW_COLUMNS:
        if col not in rows_df.columns:
            rows_df[col] = np.nan
    rows_df = rows_df[list(ROW_COLUMNS) + [c for c in rows_df.columns if c not in ROW_COLUMNS]]
    pred_df = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    res = BacktestResult(rows_df, pred_df, objective, direction, cuts)
    res.summary = summarise(rows_df)
    res.recommended, res.reason = recommend_model(res.summary, pred_df, preference=list(models),
                                                  maximize=maximize)
    return res


def _inner_predictions(outer: pd.DataFrame, cut: int) -> pd.DataFrame:
    """What an uncalibrated backtest of the runs <= ``cut`` would predict, from an outer cut's
    predictions: the same fit, its held-out runs at sizes <= ``cut``, the model's own std."""
    inner = outer[outer["model_params"].to_numpy(float) <= cut].reset_index(drop=True)
    return inner.assign(pred_std=inner["pred_std_raw"])


def _fit_predict(make, name: str, fit_runs: pd.DataFrame, held: pd.DataFrame, objective: str,
                 domains, tokens_per_step) -> tuple[np.ndarray, np.ndarray, str | None, object]:
    """(mean, std, None, model) of a model fitted on ``fit_runs`` at the held-out rows, or NaNs,
    the error text and None where it cannot be fitted."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make(name)
            model.fit(fit_runs, objective, domains=domains, tokens_per_step=tokens_per_step)
            mean, std = model.predict(held)
        return np.asarray(mean, float), np.asarray(std, float), None, model
    except Exception as exc:  # noqa: BLE001 - a model that fails gets a row saying why
        nan = np.full(len(held), np.nan)
        return nan, nan, f"{type(exc).__name__}: {str(exc).splitlines()[0][:240]}", None


def _length_column(df: pd.DataFrame) -> str | None:
    """The column that measures a run's length: steps where every row has them, else tokens."""
    for col in ("steps", "tokens"):
        if col in df.columns and df[col].notna().all():
            return col
    return None


def _length(df: pd.DataFrame) -> np.ndarray | None:
    col = _length_column(df)
    return None if col is None else df[col].to_numpy(float)


def _max_length(df: pd.DataFrame) -> float | None:
    v = _length(df)
    return float(np.max(v)) if v is not None and len(v) else None


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its scores averaged over every (cut, held-out size), the number of
    held-out sizes it could predict, and its mean relative regret (regret / |best|)."""
    out = []
    for name, g in rows.groupby("model", sort=False):
        ok = g[g["error"].isna()]
        rec = {"model": name, "groups": len(g), "scored": len(ok)}
        for col in ("spearman", "mre", "best_regret", "rel_regret", "coverage_1std", "coverage_2std",
                    "coverage_1std_raw", "coverage_2std_raw"):
            rec[col] = float(np.nanmean(ok[col])) if len(ok) and ok[col].notna().any() else np.nan
        rec["error"] = None if len(ok) else str(g["error"].dropna().iloc[0])
        out.append(rec)
    return pd.DataFrame(out)


def recommend_model(summary: pd.DataFrame, predictions: pd.DataFrame | None = None, *,
                    preference: Sequence[str] | None = None, maximize: bool = False,
                    seed: int = 0) -> tuple[str | None, str]:
    """The model to trust, and why: among models that predicted every held-out size, the one
    with the lowest relative level error plus relative regret of its pick plus 0.1 x (1 -
    Spearman): what a wrong level, a wrong pick and a wrong ranking cost. Coverage does not
    decide (mixplan widens every model's std by its backtest) but the reason reports it.

    A lead must be real to count: with the held-out ``predictions``, the runs of each held-out
    size are resampled (:data:`LEAD_RESAMPLES` paired bootstraps) and a model listed earlier in
    ``preference`` (simpler first, e.g. the law before the GP) is kept unless the leader's cost
    is at least :data:`LEAD_MARGIN` lower than its cost in :data:`LEAD_CONFIDENCE` of the
    resamples. Why: a backtest often holds out one or two sizes of a few dozen runs, and a lead
    must be both repeatable and large beside the errors themselves. On RegMix's two-size table
    every model fitted on 1M runs missed the 60M level by 23%, and a lead of 0.2% error and
    0.006 Spearman (repeatable: every model missed in the same way) chose the model that cannot
    extrapolate in size, which then missed the best mixture at 1B."""
    if summary.empty:
        return None, "no model could be backtested."
    ok = summary[(summary["scored"] == summary["groups"]) & summary["mre"].notna()]
    if ok.empty:
        return None, "no model predicted every held-out size: " + "; ".join(
            f"{r.model}: {r.error}" for r in summary.itertuples() if r.error)
    # level error and regret in relative units, and rank correlation at 0.1 per unit (a Spearman
    # 0.1 lower weighs like 1% more level error): all three matter at the target
    total = _total(ok["mre"].to_numpy(), ok["rel_regret"].fillna(0.0).to_numpy(), ok["spearman"].fillna(0.0).to_numpy())
    rho = ok["spearman"].fillna(-1.0).to_numpy()
    order = np.lexsort((-rho, np.round(total, 5)))
    best = ok.iloc[order[0]]
    tie = ""
    earlier = [m for m in (preference or []) if m in set(ok["model"])]
    if predictions is not None and not predictions.empty and earlier and earlier[0] != best.model:
        names = [str(m) for m in ok["model"]]
        leads = lead_shares(predictions, names, str(best.model), maximize=maximize, seed=seed)
        for name in preference:
            if name == best.model:
                break
            if name in leads and leads[name] < LEAD_CONFIDENCE:
                tie = (f"; {best.model} scored better, by {LEAD_MARGIN:.0%} or more in only {leads[name]:.0%} "
                       f"of {LEAD_RESAMPLES} resamples of the held-out runs ({LEAD_CONFIDENCE:.0%} needed to "
                       f"prefer it to {name}, listed first)")
                best = ok[ok["model"] == name].iloc[0]
                break
    scores = (f"mean relative error {best.mre:.2%}, regret {best.best_regret:.4g}"
              + (f", Spearman {best.spearman:.2f}" if np.isfinite(best.spearman) else "")
              + f", +-1 std holds {best.coverage_1std:.0%}")
    why = (f"listed first, and the best did not beat it clearly ({scores}){tie}" if tie else
           f"the best held-out level, regret of its predicted best and ranking together ({scores})")
    others = [ok.iloc[i] for i in order if ok.iloc[i].model != best.model]
    if others:
        nxt = others[0]
        why += f"; next: {nxt.model} (error {nxt.mre:.2%}, regret {nxt.best_regret:.4g})"
    return str(best.model), why + "."


#: paired bootstrap resamples of the held-out runs behind :func:`lead_shares`
LEAD_RESAMPLES = 200
#: the share of resamples in which a model must beat one listed before it to be preferred
LEAD_CONFIDENCE = 0.9
#: by how much (relative cost) it must beat it there: a lead far smaller than the errors
#: themselves says nothing about which model extrapolates better
LEAD_MARGIN = 0.1


def _total(mre, rel_regret, spearman):
    """The recommendation's cost (:func:`recommend_model`): level + regret + 0.1 x (1 - rank)."""
    return np.asarray(mre) + np.asarray(rel_regret) + 0.1 * (1.0 - np.asarray(spearman))


def lead_shares(predictions: pd.DataFrame, models: Sequence[str], leader: str, *, maximize: bool = False,
                resamples: int = LEAD_RESAMPLES, margin: float = LEAD_MARGIN, seed: int = 0) -> dict[str, float]:
    """For each other model, the share of paired bootstrap resamples (the held-out runs of each
    (cut, size) group drawn with replacement, the same draw for every model) in which
    ``leader``'s cost (:func:`_total`, averaged over the groups) is at least ``margin`` (relative)
    lower than that model's."""
    from scipy.stats import rankdata

    p = predictions[predictions["model"].isin(models)]
    rng = np.random.default_rng(seed)
    names = [m for m in models if m in set(p["model"])]
    if leader not in names:
        return {}
    cost = np.zeros((resamples, len(names)))
    groups = 0
    sign = -1.0 if maximize else 1.0
    key = ["cut", "model_params", "run_id"]
    wide = p.pivot_table(index=key, columns="model", values="pred_mean", aggfunc="first").reindex(columns=names)
    observed = p.groupby(key)["observed"].first().reindex(wide.index)
    for (_, _), g in wide.groupby(level=[0, 1], sort=True):
        obs = observed.loc[g.index].to_numpy(float)
        M = g.to_numpy(float).T  # (models, runs)
        n = len(obs)
        if n < 3 or not np.isfinite(M).all():
            continue
        idx = rng.integers(0, n, (resamples, n))
        o = obs[idx]  # (B, n)
        m = M[:, idx]  # (models, B, n)
        mre = np.mean(np.abs(m - o) / np.maximum(np.abs(o), 1e-12), axis=2)
        pick = np.argmin(sign * m, axis=2)
        best_o = np.min(sign * o, axis=1) * sign
        picked = np.take_along_axis(np.broadcast_to(o, m.shape), pick[..., None], axis=2)[..., 0]
        rel_regret = np.maximum(sign * (picked - best_o), 0.0) / np.maximum(np.abs(best_o), 1e-12)
        ro, rm = rankdata(o, axis=1), rankdata(m, axis=2)
        ro, rm = ro - ro.mean(axis=1, keepdims=True), rm - rm.mean(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.sum(ro * rm, axis=2) / np.sqrt(np.sum(ro ** 2, axis=1) * np.sum(rm ** 2, axis=2))
        cost += _total(mre, rel_regret, np.nan_to_num(rho, nan=0.0)).T
        groups += 1
    if not groups:
        return {}
    i = names.index(leader)
    return {name: float(np.mean(cost[:, i] < (1.0 - margin) * cost[:, j])) for j, name in enumerate(names) if j != i}
