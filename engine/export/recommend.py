"""Which mixture to export: a loss model's optimum at the study's target, or a run's mixture.

Shared by ``mixplan export`` and the app's Export page. Loss models come from the registry of
:mod:`engine.models` (``get_model(name)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from engine import __version__
from engine.errors import NotFoundError, ValidationError

#: Loss models the registry is expected to offer (DESIGN.md: mfms-gp, autoscale, mixing-law, regmix).
KNOWN_MODELS = ("mfms-gp", "dmsl", "autoscale", "mixing-law", "regmix", "uniform", "natural")
#: ``auto``: the study's recommended model and mixture (engine.recommendation), the one every
#: command and page agrees on
DEFAULT_MODEL = "auto"


@dataclass(frozen=True)
class Provenance:
    """Where an exported mixture comes from."""

    study: str
    source: str  # "optimum" (a model's prediction) or "run" (an observed run's mixture)
    objective: str
    model: str | None = None
    pred_mean: float | None = None
    pred_std: float | None = None
    observed: float | None = None  # the run's own objective at its last checkpoint (source "run")
    run_id: str | None = None
    trial_id: int | None = None
    model_params: int | None = None
    steps: float | None = None
    tokens: float | None = None
    runs: int = 0  # how many runs the recommendation rests on
    recommended: bool | None = None  # the study's recommended model and mixture (engine.recommendation)
    reason: str | None = None  # why that model (its backtest)
    extrapolation: str | None = None  # how far the target lies beyond the runs, what the backtest measured there
    run_ids: tuple[str, ...] = ()
    data_version: int | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    mixplan_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["run_ids"] = list(self.run_ids)
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class MixtureExport:
    """A mixture (domain -> weight, summing to 1) and its provenance."""

    weights: dict[str, float]
    provenance: Provenance


def model_registry():
    """``engine.models.get_model`` (imported here: torch and BoTorch load on first fit, not on
    import of the export module)."""
    from engine.models import get_model

    return get_model


def available_models() -> list[str]:
    """Model names the registry offers. Cheap: lists the registry's names without importing the
    models (torch and BoTorch load on first fit)."""
    from engine.models import MODELS

    names = list(MODELS)
    # the exact GP is the slow reference variant; the app and export default to the others
    return [n for n in names if not n.endswith("-exact")] + [n for n in names if n.endswith("-exact")]


def objective_of(cfg, runs: pd.DataFrame) -> str:
    """The study's objective, checked against the run table's columns."""
    obj = cfg.objective
    if obj != "mean_loss" and obj not in runs.columns:
        have = [c for c in runs.columns if c.startswith(("loss_", "metric_"))]
        raise ValidationError(f"the study's objective '{obj}' is not among its measured columns.",
                              fix=f"measured: {', '.join(have) or 'none yet'}.")
    return obj


def runs_at_version(store, study: str, *, tries: int = 3) -> tuple[pd.DataFrame, int]:
    """The study's run table and the data_version it was read at (read the version before and
    after the table, retrying while a writer moves it; after ``tries`` the version from before
    the last read: the table holds at least that)."""
    for _ in range(max(1, tries)):
        before = store.data_version(study)
        runs = store.runs_frame(study)
        if store.data_version(study) == before:
            break
    return runs, before


def fit_study_model(store, study: str, model: str, objective: str | None = None,
                    runs: pd.DataFrame | None = None):
    """Fit loss model ``model`` on the study's runs; returns the fitted model."""
    get_model = model_registry()
    cfg = store.get_config(study)
    if runs is None:
        runs = store.runs_frame(study)
    if runs.empty:
        raise ValidationError(f"study '{study}' has no results yet, so no model can be fitted.",
                              fix="import a run table or run some trials first.")
    objective = objective or objective_of(cfg, runs)
    try:
        m = get_model(model)
    except KeyError as exc:
        raise NotFoundError(f"no loss model named '{model}'.",) from exc
    return m.fit(runs, objective, domains=list(cfg.domains), tokens_per_step=cfg.tokens_per_step)


def target_of(cfg, runs: pd.DataFrame | None = None):
    """(model_params, steps, tokens) of the study's target; a ValidationError when it has none,
    whose fix is a `mixplan study edit` patch (built from ``runs`` where given)."""
    t = cfg.target
    if t is None:
        from engine.study_edit import needs_edit_message

        raise ValidationError(f"study '{cfg.name}' has no target scale to export a mixture for.",
                              fix=needs_edit_message(cfg, runs, "Exporting a mixture", need=("target",)))
    return int(t.model_params), t.steps, t.tokens


def optimum_at_target(fitted, cfg):
    """The fitted model's optimum at the study's target, within the study's bounds."""
    mp, steps, tokens = target_of(cfg)
    if tokens is None and steps is not None and cfg.tokens_per_step:
        tokens = cfg.tokens_for(steps)
    objective = getattr(fitted, "objective_", None) or cfg.objective
    return fitted.optimum(mp, steps=steps, tokens=tokens, bounds=cfg.bounds_array(),
                          direction=cfg.direction_for(objective))


def from_optimum(store, study: str, model: str = DEFAULT_MODEL, *, fitted=None, runs: pd.DataFrame | None = None,
                 optimum=None, data_version: int | None = None) -> MixtureExport:
    """The model's predicted optimum at the study's target. ``fitted``/``optimum`` may be given
    (the app passes its cached fit, with ``data_version``: the version of the runs it was fitted
    on, which the provenance records; approving proposals bumps the version without a refit)."""
    cfg = store.get_config(study)
    if model == DEFAULT_MODEL and fitted is None and optimum is None:
        return from_recommendation(store, study)
    if runs is None:
        runs, read_at = runs_at_version(store, study)
        data_version = read_at if data_version is None and fitted is None else data_version
    target_of(cfg, runs)  # before a fit that could not be used
    if fitted is None:
        fitted = fit_study_model(store, study, model, runs=runs)
    opt = optimum if optimum is not None else optimum_at_target(fitted, cfg)
    mp, steps, tokens = target_of(cfg)
    run_ids = tuple(dict.fromkeys(runs["run_id"].astype(str))) if len(runs) else ()
    prov = Provenance(study=study, source="optimum", objective=getattr(fitted, "objective_", cfg.objective),
                      model=model, pred_mean=float(opt.pred_mean), pred_std=float(opt.pred_std),
                      model_params=mp, steps=steps, tokens=tokens if tokens is not None else cfg.tokens_for(steps),
                      runs=len(run_ids), run_ids=run_ids,
                      data_version=data_version if data_version is not None else store.data_version(study))
    return MixtureExport({d: float(opt.weights[d]) for d in cfg.domains}, prov)


def from_recommendation(store, study: str, rec=None) -> MixtureExport:
    """The study's recommended mixture (:func:`engine.recommendation.recommend`) with its
    provenance: the model the backtest chose and why, the calibrated std, the extrapolation."""
    from engine.recommendation import recommend

    cfg = store.get_config(study)
    rec = rec if rec is not None else recommend(store, study)
    runs = store.runs_frame(study)
    run_ids = tuple(dict.fromkeys(runs["run_id"].astype(str))) if len(runs) else ()
    prov = Provenance(study=study, source="optimum", objective=rec.objective, model=rec.model,
                      pred_mean=rec.pred_mean, pred_std=rec.pred_std, model_params=rec.model_params,
                      steps=rec.steps, tokens=rec.tokens, runs=len(run_ids), run_ids=run_ids,
                      data_version=rec.data_version, recommended=True, reason=rec.reason,
                      extrapolation=rec.extrapolation.describe())
    return MixtureExport({d: float(rec.weights[d]) for d in cfg.domains}, prov)


def from_run(store, study: str, *, run_id: str | None = None, trial_id: int | None = None) -> MixtureExport:
    """An observed run's (or any trial's) mixture, with its measured objective where it has one."""
    cfg = store.get_config(study)
    trials = store.trials(study)
    match = [t for t in trials if (trial_id is not None and t.trial_id == int(trial_id))
             or (run_id is not None and t.run_id == str(run_id))]
    if not match:
        what = f"trial {trial_id}" if trial_id is not None else f"run '{run_id}'"
        raise NotFoundError(f"study '{study}' has no {what}.",)
    t = match[0]
    observed = None
    runs = store.runs_frame(study, meta=True)
    mine = runs[runs["trial_id"] == t.trial_id]
    if len(mine):
        from engine.runtable.schema import objective_values

        try:
            observed = float(objective_values(mine, cfg.objective).iloc[-1])
        except (KeyError, ValueError):
            observed = None
    prov = Provenance(study=study, source="run", objective=cfg.objective, pred_mean=t.pred_mean,
                      pred_std=t.pred_std, observed=observed, run_id=t.run_id, trial_id=t.trial_id,
                      model_params=t.model_params, steps=t.steps, tokens=t.tokens, runs=1, run_ids=(t.run_id,),
                      data_version=store.data_version(study))
    return MixtureExport({d: float(t.weights.get(d, 0.0)) for d in cfg.domains}, prov)
