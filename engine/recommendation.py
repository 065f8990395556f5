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
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from engine.models.backtest import plain
from engine.numbers import human

from engine.models.auto import CANDIDATES

#: the name that means "the study's recommended model" on the command line and in the app
AUTO = "auto"
CACHE_VERSION = 2


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
    #: False where no backtest across sizes is possible (runs at one size); None where none was
    #: run for this answer (``mixplan backtest`` measures it)
    backtestable: bool | None = None

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
                parts.append(f"{self.size_ratio:.3g}x the largest model size run ({human(self.largest_size)})")
            if (self.length_ratio or 1.0) > 1.0 + 1e-9:
                parts.append(f"{self.length_ratio:.3g}x the longest run ({self.longest:,.0f})")
            where = "an extrapolation: " + " and ".join(parts)
        msg = f"The target is {where}."
        if self.backtest_ratio is not None:
            msg += (f" The backtest measured this model at {self.backtest_ratio:.3g}x: mean relative error "
                    f"{_pct(self.backtest_mre)}, Spearman {_num(self.backtest_spearman)}, regret of its pick "
                    f"{_num(self.backtest_regret, 4)}, +-1 std held {_pct(self.backtest_coverage_1std, 0)}.")
        elif self.beyond and self.backtestable is False:
            msg += " No backtest across sizes was possible (runs at one size): treat the std as a lower bound."
        elif self.beyond:
            msg += " `mixplan backtest` measures how well the models extrapolate that far."
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
# A study's model, calibrated
# ---------------------------------------------------------------------------------------------
def study_model(store, study: str, model: str = AUTO, objective: str | None = None):
    """A study's model fitted on every run with calibrated std (``engine.models.auto``), and the
    recommendation where ``model`` is ``auto``: the recommended model with the recommendation's
    calibration (no second backtest); else ``model`` calibrated by a backtest of it alone
    (cached per data version like the recommendation)."""
    from engine.export.recommend import runs_at_version
    from engine.models.auto import CalibratedModel
    from engine.models.calibration import Calibration

    cfg = store.get_config(study)
    objective = objective or cfg.objective
    rec = None
    cal = None
    if model == AUTO:
        if objective != cfg.objective:
            raise ValidationError(f"--model auto recommends a model for the study's objective ({cfg.objective}).",
                                  fix=f"drop --objective, or name a model (e.g. --model dmsl) for '{objective}'.")
        rec = recommend(store, study)
        model, cal = rec.model, Calibration.from_dict(rec.calibration)
    runs, version = runs_at_version(store, study)
    runs = _usable(runs, objective, cfg.name)
    path = _cache_path(store, study).with_name(f"calibration-{_safe(model)}-{_safe(objective)}.json")
    key = _key(cfg, version, (model, objective))
    if cal is None:
        cal = _read_calibration(path, key)
    fitted = CalibratedModel(model, calibration=cal, **_model_options(cfg, model)).fit(
        runs, objective, domains=_domains(cfg, runs), tokens_per_step=cfg.tokens_per_step)
    if cal is None:
        _write_json(path, {"key": key, "calibration": fitted.calibration_.to_dict()})
    return fitted, rec


def study_optimum(store, study: str, model: str, model_params: int, *, steps: float | None = None,
                  tokens: float | None = None, objective: str | None = None) -> dict[str, Any]:
    """``mixplan optimum``: the best mixture at a scale (near the explored mixtures, within the
    study's bounds), calibrated std, the extrapolation statement. For ``auto`` at the study's
    target this is the recommendation itself."""
    cfg = store.get_config(study)
    if model == AUTO and (objective is None or objective == cfg.objective):
        rec = recommend(store, study)
        same_len = (steps is not None and rec.steps is not None and float(steps) == float(rec.steps)) or (
            tokens is not None and rec.tokens is not None and float(tokens) == float(rec.tokens))
        if int(model_params) == rec.model_params and same_len:
            return rec.optimum_json() | {"extrapolation_detail": asdict(rec.extrapolation)}
    fitted, rec = study_model(store, study, model, objective)
    obj = objective or cfg.objective
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = fitted.optimum(int(model_params), steps=steps, tokens=tokens,
                             bounds=[cfg.bound(d) for d in fitted.domains_], direction=cfg.direction_for(obj))
    length = fitted.encoding_.z_from(steps=steps, tokens=tokens) if fitted.encoding_.z_kind else None
    ext = extrapolation(store.runs_frame(study), model_params, length, _z_col_of(fitted))
    return {"weights": {d: float(w) for d, w in opt.weights.items()}, "pred_mean": float(opt.pred_mean),
            "pred_std": float(opt.pred_std), "model": fitted.chosen_, "recommended": rec is not None,
            "reason": rec.reason if rec is not None else "", "extrapolation": ext.describe(),
            "pred_std_uncalibrated": float(opt.info["pred_std_uncalibrated"]),
            "calibration": fitted.calibration_.describe(), "at_edge": opt.info["at_edge"],
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
    from engine.models.auto import EXPLORE_MARGIN, AutoModel

    objective = objective_of(cfg, runs)
    runs = _usable(runs, objective, cfg.name)
    direction = cfg.direction_for(objective)
    mp, steps, tokens = target_of(cfg)
    if tokens is None and steps is not None and cfg.tokens_per_step:
        tokens = cfg.tokens_for(steps)
    if progress:
        progress(f"backtest of {', '.join(candidates)}")
    auto = AutoModel(candidates=candidates).fit(runs, objective, domains=_domains(cfg, runs),
                                                tokens_per_step=cfg.tokens_per_step)
    if progress:
        progress(f"optimum of {auto.chosen_} at the target")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = auto.optimum(mp, steps=steps, tokens=tokens, bounds=cfg.bounds_array(), direction=direction)
    reason = f"{auto.chosen_}: {auto.reason_}" if auto.reason_ else auto.chosen_
    if opt.info["at_edge"]:
        reason += (f" The optimum sits at the edge of the mixtures the runs explored for "
                   f"{', '.join(opt.info['at_edge'])} (it is kept within {EXPLORE_MARGIN:.0%} of the explored "
                   "shares): propose runs beyond it to learn whether to go further.")
    bt = auto.backtest_
    length = auto.encoding_.z_from(steps=steps, tokens=tokens) if auto.encoding_.z_kind else None
    ext = extrapolation(runs, mp, length, _z_col_of(auto), bt.rows if bt is not None else None, auto.chosen_)
    summary = [{k: plain(v) for k, v in r.items()} for r in bt.summary.to_dict("records")] if bt is not None else []
    return Recommendation(
        study=cfg.name, objective=objective, direction=direction, model=auto.chosen_, reason=reason,
        weights={d: float(opt.weights[d]) for d in auto.domains_}, pred_mean=float(opt.pred_mean),
        pred_std=float(opt.pred_std), pred_std_raw=float(opt.info["pred_std_uncalibrated"]), model_params=int(mp),
        steps=steps, tokens=tokens, extrapolation=ext, calibration=auto.calibration_.to_dict(), backtest=summary,
        data_version=data_version, runs=int(runs["run_id"].nunique()), key=key)


def target_extrapolation(store, study: str) -> Extrapolation | None:
    """How far the study's target lies beyond its runs, with the current recommendation's
    backtest figures where one is cached (no fitting); None without a target or runs."""
    cfg = store.get_config(study)
    if cfg.target is None:
        return None
    rec = cached_recommendation(store, study)
    if rec is not None:
        return rec.extrapolation
    runs = store.latest_checkpoints(study)
    if runs.empty:
        return None
    z_col = next((c for c in ("steps", "tokens") if c in runs.columns and runs[c].notna().all()), None)
    t = cfg.target
    length = t.steps if z_col == "steps" else (t.tokens if t.tokens is not None else cfg.tokens_for(t.steps))
    if z_col == "steps" and t.steps is None:
        length = cfg.steps_for(t.tokens)
    return extrapolation(runs, t.model_params, length, z_col)


def extrapolation(runs: pd.DataFrame, model_params: float, length: float | None, z_col: str | None,
                  backtest_rows: pd.DataFrame | None = None, model: str | None = None) -> Extrapolation:
    """How far (model_params, length) lies beyond ``runs``, and the backtest's scores of
    ``model`` at the held-out size ratio closest to it (in log ratio)."""
    largest = float(pd.to_numeric(runs["model_params"]).max())
    longest = float(pd.to_numeric(runs[z_col]).max()) if z_col else None
    size_ratio = float(model_params) / largest
    length_ratio = float(length) / longest if (length is not None and longest) else None
    ext = dict(size_ratio=size_ratio, length_ratio=length_ratio, largest_size=int(largest), longest=longest,
               backtestable=bool(pd.to_numeric(runs["model_params"]).nunique() >= 2))
    if backtest_rows is not None and model is not None and len(backtest_rows):
        r = backtest_rows[(backtest_rows["model"] == model) & backtest_rows["error"].isna()]
        if len(r):
            i = int(np.argmin(np.abs(np.log(r["size_ratio"].to_numpy(float)) - math.log(max(size_ratio, 1e-12)))))
            row = r.iloc[i]
            ext.update(backtest_ratio=float(row["size_ratio"]), backtest_mre=plain(row["mre"]),
                       backtest_spearman=plain(row["spearman"]), backtest_regret=plain(row["best_regret"]),
                       backtest_coverage_1std=plain(row["coverage_1std"]))
    return Extrapolation(**ext)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _z_col_of(model) -> str | None:
    """The run-table column of a fitted model's length axis (steps, tokens or none)."""
    return model.encoding_.z_kind


def _usable(runs: pd.DataFrame, objective: str, study: str) -> pd.DataFrame:
    """The rows with a value for the objective (a model fits those)."""
    from engine.models.base import check_objective
    from engine.runtable.schema import objective_values

    check_objective(runs, objective)
    y = pd.to_numeric(objective_values(runs, objective), errors="coerce").to_numpy(float)
    out = runs.loc[np.isfinite(y)].reset_index(drop=True)
    if out.empty:
        raise ValidationError(f"no checkpoint of study '{study}' has a value for '{objective}'.",
                              fix="import runs with that column, or pick another objective.")
    return out


def _domains(cfg, runs: pd.DataFrame) -> list[str] | None:
    return [d for d in cfg.domains if f"w_{d}" in runs.columns] or None


def _model_options(cfg, model: str) -> dict:
    """Options a model takes from the study config (the natural mixture's domain sizes)."""
    if model == "natural":
        sizes = (cfg.runner.options or {}).get("domain_sizes") if cfg.runner else None
        if sizes:
            return {"domain_sizes": sizes}
    return {}


def _read_calibration(path: Path, key: str):
    from engine.models.calibration import Calibration

    try:
        d = json.loads(path.read_text())
        return Calibration.from_dict(d["calibration"]) if d.get("key") == key else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


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
    from engine.outfile import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0644: a temp file's 0600 would hide the cache from the app run as another user
        write_atomic(path, json.dumps(obj, default=plain), mode=0o644)
    except OSError:
        pass


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _pct(v, digits: int = 1) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}%}"


def _num(v, digits: int = 2) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"
