"""One recommended mixture per study: the backtest's model, calibrated, at the study's target.

Every command and page that names "the mixture mixplan recommends" (``mixplan optimum`` and
``predict`` with ``--model auto``, ``mixplan export``, the end of ``autopilot``, the app's
Scaling and Export pages, ``mixplan demo report``) calls :func:`recommend`, so they agree:

1. :func:`engine.models.backtest.backtest` fits each candidate model on the study's smaller
   sizes and scores its predictions of the larger ones (level, ranking, regret, coverage);
2. the model with the best held-out level plus regret is recommended (the reason is kept);
3. that model is fitted on every run, its std widened by what its backtest showed
   (:mod:`engine.models.calibration`), and its optimum at the study's target (within the
   study's bounds) is the recommended mixture;
4. the answer says how far the target lies beyond the runs (x times in size and length) and
   what the backtest measured at a similar distance.

A study with runs at one model size cannot be backtested across sizes: the first candidate
that fits is used and the answer says its std is not calibrated.

Recommendations are cached per (study, data version, config) in
``<db dir>/.mixplan-cache/<study>/`` (JSON, written atomically), so repeated commands are fast
and return the same mixture; ``refresh=True`` recomputes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import ValidationError

#: the models the backtest chooses among, in the order used where no backtest is possible
CANDIDATES: tuple[str, ...] = ("dmsl", "dmsl-joint", "mixing-law", "mfms-gp", "regmix")
#: the name that means "the study's recommended model" on the command line and in the app
AUTO = "auto"
#: how far beyond the explored weights (per domain) an optimum may go: a law or GP asked about
#: a corner no run came near answers with its functional form, not with data (a 100%-docs
#: "optimum" from runs that never exceeded 60% docs); 0.1 lets the optimum lean past the
#: explored edge, and the answer says when it sits there
EXPLORE_MARGIN = 0.1
CACHE_VERSION = 1


@dataclass(frozen=True)
class Extrapolation:
    """How far a query lies beyond a study's runs, and what the backtest measured near there."""

    size_ratio: float  # query model size / largest observed size
    length_ratio: float | None  # query length / longest observed run (None: no length axis)
    largest_size: int
    longest: float | None
    backtest_ratio: float | None = None  # the closest size ratio the backtest measured
    backtest_mre: float | None = None
    backtest_spearman: float | None = None
    backtest_regret: float | None = None
    backtest_coverage_1std: float | None = None

    @property
    def beyond(self) -> bool:
        return self.size_ratio > 1.0 + 1e-9 or (self.length_ratio or 1.0) > 1.0 + 1e-9

    def describe(self) -> str:
        """One sentence for the CLI and the app."""
        if not self.beyond:
            where = "within the observed runs"
        else:
            parts = []
            if self.size_ratio > 1.0 + 1e-9:
                parts.append(f"{self.size_ratio:.3g}x the largest model size run ({_size(self.largest_size)})")
            if (self.length_ratio or 1.0) > 1.0 + 1e-9:
                parts.append(f"{self.length_ratio:.3g}x the longest run ({self.longest:,.0f})")
            where = "an extrapolation: " + " and ".join(parts)
        msg = f"The target is {where}."
        if self.backtest_ratio is not None:
            msg += (f" The backtest measured this model at {self.backtest_ratio:.3g}x: mean relative error "
                    f"{_pct(self.backtest_mre)}, Spearman {_num(self.backtest_spearman)}, regret of its pick "
                    f"{_num(self.backtest_regret, 4)}, +-1 std held {_pct(self.backtest_coverage_1std, 0)}.")
        elif self.beyond:
            msg += " No backtest across sizes was possible (runs at one size): treat the std as a lower bound."
        return msg


@dataclass(frozen=True)
class Recommendation:
    """The study's recommended model and mixture (module docstring)."""

    study: str
    objective: str
    direction: str
    model: str
    reason: str
    weights: dict[str, float]
    pred_mean: float
    pred_std: float  # calibrated
    pred_std_raw: float  # the model's own
    model_params: int
    steps: float | None
    tokens: float | None
    extrapolation: Extrapolation
    calibration: dict
    backtest: list[dict] = field(default_factory=list)  # per-model summary rows
    data_version: int | None = None
    runs: int = 0
    key: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extrapolation"] = asdict(self.extrapolation)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recommendation":
        d = dict(d)
        d["extrapolation"] = Extrapolation(**d["extrapolation"])
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def optimum_json(self) -> dict[str, Any]:
        """``mixplan optimum --json`` (DESIGN.md contract 1), plus what it rests on."""
        return {"weights": dict(self.weights), "pred_mean": self.pred_mean, "pred_std": self.pred_std,
                "model": self.model, "recommended": True, "reason": self.reason,
                "extrapolation": self.extrapolation.describe(), "pred_std_uncalibrated": self.pred_std_raw}


# ---------------------------------------------------------------------------------------------
# Fitting a study's model with calibrated std
# ---------------------------------------------------------------------------------------------
@dataclass
class CalibratedFit:
    """A fitted loss model with its calibration and the extent of the data it was fitted on."""

    name: str
    model: Any
    calibration: Any  # engine.models.calibration.Calibration
    largest_size: float
    longest: float | None
    z_col: str | None

    def predict(self, query: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, calibrated std, the model's own std) at query rows."""
        from engine.models.calibration import distance

        mean, std = self.model.predict(query)
        length = _query_length(query, self.z_col)
        d = distance(query["model_params"].to_numpy(float), length, self.largest_size, self.longest)
        return mean, self.calibration.apply(mean, std, d), std


def calibration_for(runs: pd.DataFrame, name: str, objective: str, *, domains: list[str],
                    tokens_per_step: float | None, predictions: pd.DataFrame | None = None,
                    direction: str | None = None):
    """The calibration of model ``name`` on these runs: from a backtest's ``predictions`` of it,
    else from a backtest of this model alone (not calibrated where the runs have one size)."""
    from engine.models.backtest import backtest, size_cuts
    from engine.models.calibration import Calibration, calibration_from_backtest

    if predictions is None:
        try:
            size_cuts(runs)
        except ValidationError:
            return Calibration(note="not calibrated: the runs have one model size, so no size can be held out")
        predictions = backtest(runs, objective, models=[name], domains=list(domains),
                               tokens_per_step=tokens_per_step, direction=direction, calibrate=False).predictions
    return calibration_from_backtest(predictions, name)


def fit_calibrated(runs: pd.DataFrame, name: str, objective: str, *, domains: list[str],
                   tokens_per_step: float | None, predictions: pd.DataFrame | None = None,
                   direction: str | None = None) -> CalibratedFit:
    """Fit ``name`` on every run and calibrate its std (:func:`calibration_for`)."""
    from engine.models import get_model

    model = get_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(runs, objective, domains=list(domains), tokens_per_step=tokens_per_step)
    cal = calibration_for(runs, name, objective, domains=domains, tokens_per_step=tokens_per_step,
                          predictions=predictions, direction=direction)
    z_col = _z_col(runs)
    longest = float(pd.to_numeric(runs[z_col]).max()) if z_col else None
    return CalibratedFit(name, model, cal, float(pd.to_numeric(runs["model_params"]).max()), longest, z_col)


def study_fit(store, study: str, model: str = AUTO, objective: str | None = None) -> tuple[CalibratedFit, "Recommendation | None"]:
    """A study's model fitted on every run with calibrated std: the recommended one for
    ``model="auto"`` (and the recommendation), else ``model`` calibrated by a backtest of it
    alone (its calibration cached per data version like the recommendation)."""
    from engine.cli.models import fit_study_model
    from engine.export.recommend import runs_at_version
    from engine.models.calibration import Calibration

    cfg = store.get_config(study)
    rec = None
    objective = objective or cfg.objective
    if model == AUTO:
        if objective != cfg.objective:
            raise ValidationError(f"--model auto recommends a model for the study's objective ({cfg.objective}).",
                                  fix=f"drop --objective, or name a model (e.g. --model dmsl) for '{objective}'.")
        rec = recommend(store, study)
        model = rec.model
    runs, version = runs_at_version(store, study)
    fitted = fit_study_model(runs, cfg, model, objective)
    z_col = _z_col(runs)
    longest = float(pd.to_numeric(runs[z_col]).max()) if z_col else None
    if rec is not None and rec.model == model:
        cal = Calibration.from_dict(rec.calibration)
    else:
        key = _key(cfg, version, (model, objective))
        path = _cache_path(store, study).with_name(f"calibration-{_safe(model)}-{_safe(objective)}.json")
        cal = None
        try:
            d = json.loads(path.read_text())
            if d.get("key") == key:
                cal = Calibration.from_dict(d["calibration"])
        except (OSError, ValueError, TypeError, KeyError):
            cal = None
        if cal is None:
            cal = calibration_for(runs, model, objective, domains=list(cfg.domains),
                                  tokens_per_step=cfg.tokens_per_step, direction=cfg.direction_for(objective))
            _write_json(path, {"key": key, "calibration": cal.to_dict()})
    fit = CalibratedFit(model, fitted, cal, float(pd.to_numeric(runs["model_params"]).max()), longest, z_col)
    return fit, rec


def study_optimum(store, study: str, model: str, model_params: int, *, steps: float | None = None,
                  tokens: float | None = None, objective: str | None = None) -> dict[str, Any]:
    """``mixplan optimum``: the best mixture at a scale, calibrated std, the extrapolation
    statement. For ``auto`` at the study's target this is the recommendation itself."""
    cfg = store.get_config(study)
    if model == AUTO and (objective is None or objective == cfg.objective):
        rec = recommend(store, study)
        t = cfg.target
        same_len = (steps is not None and t.steps is not None and float(steps) == float(t.steps)) or (
            tokens is not None and rec.tokens is not None and float(tokens) == float(rec.tokens))
        if int(model_params) == rec.model_params and same_len:
            return rec.optimum_json() | {"extrapolation_detail": asdict(rec.extrapolation)}
    fit, rec = study_fit(store, study, model, objective)
    runs = store.runs_frame(study)
    obj = objective or cfg.objective
    bounds, _ = explored_bounds(runs, list(fit.model.domains_), [cfg.bound(d) for d in fit.model.domains_])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = fit.model.optimum(int(model_params), steps=steps, tokens=tokens, bounds=bounds,
                                direction=cfg.direction_for(obj))
    q = _query(list(fit.model.domains_), opt.weights, model_params, steps, tokens)
    mean, std, raw = fit.predict(q)
    length = steps if fit.z_col == "steps" else tokens
    if length is None and fit.z_col == "steps" and tokens is not None and cfg.tokens_per_step:
        length = tokens / cfg.tokens_per_step
    ext = extrapolation(runs, model_params, length, fit.z_col)
    return {"weights": {d: float(w) for d, w in opt.weights.items()}, "pred_mean": float(mean[0]),
            "pred_std": float(std[0]), "model": fit.name, "recommended": rec is not None,
            "reason": rec.reason if rec is not None else "", "extrapolation": ext.describe(),
            "pred_std_uncalibrated": float(raw[0]), "calibration": fit.calibration.describe(),
            "extrapolation_detail": asdict(ext)}


# ---------------------------------------------------------------------------------------------
# The recommendation
# ---------------------------------------------------------------------------------------------
def recommend(store, study: str, *, refresh: bool = False, candidates: tuple[str, ...] = CANDIDATES,
              progress: Callable[[str], None] | None = None) -> Recommendation:
    """The study's recommended model and mixture at its target (module docstring)."""
    from engine.export.recommend import runs_at_version

    cfg = store.get_config(study)
    runs, version = runs_at_version(store, study)
    if runs.empty:
        raise ValidationError(f"study '{study}' has no results yet, so nothing can be recommended.",
                              fix="import a run table or run some trials first.")
    key = _key(cfg, version, candidates)
    path = _cache_path(store, study)
    if not refresh:
        cached = _read_cache(path, key)
        if cached is not None:
            return cached
    rec = compute_recommendation(cfg, runs, candidates=candidates, progress=progress, data_version=version,
                                 key=key)
    _write_cache(path, rec)
    return rec


def cached_recommendation(store, study: str, candidates: tuple[str, ...] = CANDIDATES) -> Recommendation | None:
    """The cached recommendation if it is current (no fitting; None otherwise)."""
    cfg = store.get_config(study)
    return _read_cache(_cache_path(store, study), _key(cfg, store.data_version(study), candidates))


def compute_recommendation(cfg, runs: pd.DataFrame, *, candidates: tuple[str, ...] = CANDIDATES,
                           progress: Callable[[str], None] | None = None, data_version: int | None = None,
                           key: str = "") -> Recommendation:
    """The recommendation for a study config and its run table (no store, no cache)."""
    from engine.export.recommend import objective_of, target_of
    from engine.models.backtest import backtest, size_cuts

    objective = objective_of(cfg, runs)
    direction = cfg.direction_for(objective)
    mp, steps, tokens = target_of(cfg)
    if tokens is None and steps is not None and cfg.tokens_per_step:
        tokens = cfg.tokens_for(steps)
    domains = list(cfg.domains)
    try:
        size_cuts(runs)
        multi_size = True
    except ValidationError:
        multi_size = False
    summary: list[dict] = []
    bt = None
    if multi_size:
        bt = backtest(runs, objective, models=candidates, domains=domains, tokens_per_step=cfg.tokens_per_step,
                      direction=direction, calibrate=False, progress=progress)
        summary = [{k: _plain(v) for k, v in r.items()} for r in bt.summary.to_dict("records")]
        order = [bt.recommended] if bt.recommended else []
        order += [c for c in candidates if c not in order]
        reason = f"{bt.recommended}: {bt.reason}" if bt.recommended else bt.reason
    else:
        order = list(candidates)
        reason = ("the runs have one model size, so no model could be backtested across sizes; "
                  "using the first of mixplan's models that fits ({}).")
    fit = None
    errors = []
    for name in order:
        if progress:
            progress(f"fitting {name} on every run")
        try:
            fit = fit_calibrated(runs, name, objective, domains=domains, tokens_per_step=cfg.tokens_per_step,
                                 predictions=bt.predictions if bt is not None else None, direction=direction)
            break
        except Exception as exc:  # noqa: BLE001 - the next candidate is tried; all failing is an error
            errors.append(f"{name}: {str(exc).splitlines()[0][:200]}")
    if fit is None:
        raise ValidationError("no loss model could be fitted to this study's runs: " + "; ".join(errors),
                              fix="add runs (at least two mixtures), or check the objective's values.")
    if "{}" in reason:
        reason = reason.format(fit.name)
    elif fit.name != (bt.recommended if bt is not None else None):
        reason += f" ({bt.recommended} could not be fitted on every run; using {fit.name})"
    if progress:
        progress(f"optimum of {fit.name} at the target")
    bounds, edges = explored_bounds(runs, domains, cfg.bounds_array())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = fit.model.optimum(mp, steps=steps, tokens=tokens, bounds=bounds, direction=direction)
    at_edge = [d for d, (lo, hi), (ulo, uhi) in zip(domains, bounds, cfg.bounds_array())
               if d in edges and ((hi < uhi and opt.weights[d] >= hi - 1e-3) or (lo > ulo and opt.weights[d] <= lo + 1e-3))]
    if at_edge:
        reason += (f" The optimum sits at the edge of the mixtures the runs explored for {', '.join(at_edge)} "
                   f"(kept within {EXPLORE_MARGIN:.0%} of the explored shares): propose runs beyond it to "
                   "learn whether to go further.")
    q = _query(domains, opt.weights, mp, steps, tokens)
    mean, std, std_raw = fit.predict(q)
    ext = extrapolation(runs, mp, steps if fit.z_col == "steps" else tokens, fit.z_col,
                        bt.rows if bt is not None else None, fit.name)
    return Recommendation(
        study=cfg.name, objective=objective, direction=direction, model=fit.name, reason=reason,
        weights={d: float(opt.weights[d]) for d in domains}, pred_mean=float(mean[0]), pred_std=float(std[0]),
        pred_std_raw=float(std_raw[0]), model_params=int(mp), steps=steps, tokens=tokens, extrapolation=ext,
        calibration=fit.calibration.to_dict(), backtest=summary, data_version=data_version,
        runs=int(runs["run_id"].nunique()), key=key)


def extrapolation(runs: pd.DataFrame, model_params: float, length: float | None, z_col: str | None,
                  backtest_rows: pd.DataFrame | None = None, model: str | None = None) -> Extrapolation:
    """How far (model_params, length) lies beyond ``runs``, and the backtest's scores of
    ``model`` at the held-out size ratio closest to it (in log ratio)."""
    largest = float(pd.to_numeric(runs["model_params"]).max())
    longest = float(pd.to_numeric(runs[z_col]).max()) if z_col else None
    size_ratio = float(model_params) / largest
    length_ratio = float(length) / longest if (length is not None and longest) else None
    ext = dict(size_ratio=size_ratio, length_ratio=length_ratio, largest_size=int(largest), longest=longest)
    if backtest_rows is not None and model is not None and len(backtest_rows):
        r = backtest_rows[(backtest_rows["model"] == model) & backtest_rows["error"].isna()]
        if len(r):
            i = int(np.argmin(np.abs(np.log(r["size_ratio"].to_numpy(float)) - math.log(max(size_ratio, 1e-12)))))
            row = r.iloc[i]
            ext.update(backtest_ratio=float(row["size_ratio"]), backtest_mre=_plain(row["mre"]),
                       backtest_spearman=_plain(row["spearman"]), backtest_regret=_plain(row["best_regret"]),
                       backtest_coverage_1std=_plain(row["coverage_1std"]))
    return Extrapolation(**ext)


def explored_bounds(runs: pd.DataFrame, domains: list[str], bounds: list[tuple[float, float]],
                    margin: float = EXPLORE_MARGIN) -> tuple[list[tuple[float, float]], set[str]]:
    """The study's bounds narrowed to the weights its runs explored, widened by ``margin``
    (see :data:`EXPLORE_MARGIN`); returns the bounds and the domains they narrowed. Where the
    narrowed box holds no mixture the study's bounds are returned unchanged."""
    out, narrowed = [], set()
    for d, (lo, hi) in zip(domains, bounds):
        col = f"w_{d}"
        if col not in runs.columns:
            out.append((lo, hi))
            continue
        w = pd.to_numeric(runs[col], errors="coerce")
        elo, ehi = max(0.0, float(w.min()) - margin), min(1.0, float(w.max()) + margin)
        nlo, nhi = max(lo, elo), min(hi, ehi)
        if nlo > nhi:
            nlo, nhi = lo, hi
        if (nlo, nhi) != (lo, hi):
            narrowed.add(d)
        out.append((nlo, nhi))
    if sum(b[0] for b in out) > 1 + 1e-9 or sum(b[1] for b in out) < 1 - 1e-9:
        return list(bounds), set()
    return out, narrowed


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _z_col(runs: pd.DataFrame) -> str | None:
    for col in ("steps", "tokens"):
        if col in runs.columns and runs[col].notna().all():
            return col
    return None


def _query_length(query: pd.DataFrame, z_col: str | None) -> np.ndarray | None:
    if z_col and z_col in query.columns and query[z_col].notna().all():
        return query[z_col].to_numpy(float)
    return None


def _query(domains, weights: dict[str, float], mp: float, steps, tokens) -> pd.DataFrame:
    row = {f"w_{d}": float(weights[d]) for d in domains}
    row["model_params"] = int(mp)
    if steps is not None:
        row["steps"] = float(steps)
    if tokens is not None:
        row["tokens"] = float(tokens)
    return pd.DataFrame([row])


def _key(cfg, version: int | None, candidates) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "config": cfg.to_dict(), "data": version, "candidates": list(candidates)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _cache_path(store, study: str) -> Path:
    return Path(store.path).resolve().parent / ".mixplan-cache" / _safe(study) / "recommendation.json"


def _read_cache(path: Path, key: str) -> Recommendation | None:
    try:
        d = json.loads(path.read_text())
        if d.get("key") != key:
            return None
        return Recommendation.from_dict(d)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_cache(path: Path, rec: Recommendation) -> None:
    _write_json(path, rec.to_dict())


def _write_json(path: Path, obj: dict) -> None:
    """Atomic (temporary file, then rename); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".rec-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, default=_plain)
        os.replace(tmp, path)
    except OSError:
        pass


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _size(n: float) -> str:
    n = float(n)
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:g}{unit}"
    return f"{n:g}"


def _pct(v, digits: int = 1) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}%}"


def _num(v, digits: int = 2) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"
