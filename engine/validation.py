"""Validation runs: real runs at a study's target, held out from every fit, and the verdict on them.

A study's *validation* trials (``purpose = "validation"`` in the store) are runs trained at the
target scale to check a prediction, never to make one: :meth:`engine.store.Store.runs_frame`
leaves them out unless asked, so no model, strategy, backtest or trajectory ever reads them.
This module reads them back and compares them with the model's predictions:

- per validation **mixture** (its runs share a mixture and differ by seed): the model's
  prediction at the target (mean and std, from a fit on the study's own runs only) against the
  observed loss (mean and spread over seeds), whether the observation falls within 1 and 2 std;
- the **speed-up against uniform** in the AutoScale paper's sense (Kang et al. 2025): the steps
  the uniform mixture needs to reach its own final loss, divided by the steps this mixture needs
  to reach that same loss, read off the checkpoints (seed-mean curves, linear interpolation
  between checkpoints). A mixture that never gets there has no speed-up; the verdict says so.
  With a schedule that decays over the run's full length, a checkpoint is not a shorter run:
  the ratio compares two runs of the target length along the way, as the paper's curves do;
- a **verdict** sentence that says plainly whether the recommended mixture beat the others.

Which mixture is which (``label``: "recommended", "uniform", ...) is recorded by whoever planned
the runs (:mod:`engine.demo.validation`) in a ``validation_plan`` event; a mixture trained for an
earlier plan keeps its runs and is labelled as such ("previous recommendation").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from engine.records import TrialState
from engine.runtable.schema import objective_values

PLAN_EVENT = "validation_plan"
#: decimals of the weights a mixture's key is made of (two mixtures closer than that are one)
KEY_DECIMALS = 3


def clean_mixture(weights: dict[str, float], domains: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``weights`` in domain order, negatives (an optimiser's -1e-17) clipped, summing to 1."""
    w = np.array([max(0.0, float(weights.get(d, 0.0))) for d in domains])
    if w.sum() <= 0:
        raise ValidationError("a validation mixture needs a positive weight.")
    w = w / w.sum()
    return {d: float(x) for d, x in zip(domains, w)}


def mixture_key(weights: dict[str, float], domains: list[str] | tuple[str, ...]) -> str:
    """A short stable id of a mixture: a hash of its weights rounded to :data:`KEY_DECIMALS`
    decimals, in domain order (so the same mixture stored twice has one key)."""
    w = clean_mixture(weights, domains)
    text = ",".join(f"{round(w[d], KEY_DECIMALS) + 0.0:.{KEY_DECIMALS}f}" for d in domains)
    return hashlib.sha1(text.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class Arm:
    """A mixture the plan wants validated: its label, why it was chosen, its rounded weights."""

    label: str
    weights: dict[str, float]
    how: str
    key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "weights": self.weights, "how": self.how, "key": self.key}


@dataclass
class ArmResult:
    """What the verdict says about one validation mixture (``labels``: every role it plays in the
    plan, e.g. both "recommended" and "small-scale optimum" when the two coincide)."""

    labels: list[str]
    key: str
    weights: dict[str, float]
    how: str
    current: bool  # in the latest plan (else: trained for an earlier one)
    run_ids: list[str]
    seeds: list[int]
    observed: list[float]  # the final objective of each finished seed
    pred_mean: float | None = None
    pred_std: float | None = None
    speedup: float | None = None  # vs uniform (AutoScale): None where it never reaches uniform's final loss
    steps_to_uniform_final: float | None = None
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)  # steps, seed, value (per checkpoint)
    pending: int = 0  # runs not finished (yet)

    @property
    def label(self) -> str:
        return " = ".join(self.labels)

    def is_(self, label: str) -> bool:
        return label in self.labels

    @property
    def observed_mean(self) -> float | None:
        return float(np.mean(self.observed)) if self.observed else None

    @property
    def observed_spread(self) -> float | None:
        """Half the range over seeds (None with fewer than two)."""
        return float((max(self.observed) - min(self.observed)) / 2) if len(self.observed) > 1 else None

    @property
    def z(self) -> float | None:
        """(observed - predicted) / std."""
        if self.pred_mean is None or not self.pred_std or self.observed_mean is None:
            return None
        return (self.observed_mean - self.pred_mean) / self.pred_std

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "labels": self.labels, "key": self.key, "weights": self.weights, "how": self.how,
                "current": self.current, "run_ids": self.run_ids, "seeds": self.seeds, "observed": self.observed,
                "observed_mean": self.observed_mean, "observed_spread": self.observed_spread,
                "pred_mean": self.pred_mean, "pred_std": self.pred_std, "z": self.z, "speedup": self.speedup,
                "steps_to_uniform_final": self.steps_to_uniform_final, "pending": self.pending}


@dataclass
class Verdict:
    """The validation of a study: one :class:`ArmResult` per mixture, and what they add up to."""

    study: str
    objective: str
    direction: str
    model: str | None
    target: tuple[int, int | None]
    largest_observed: int
    arms: list[ArmResult]
    summary: str
    fit_runs: int = 0

    @property
    def scale_factor(self) -> float:
        """How far beyond the largest size the models fit on the target lies (x times)."""
        return self.target[0] / self.largest_observed if self.largest_observed else float("nan")

    def table(self) -> pd.DataFrame:
        """One row per mixture (the report's table)."""
        rows = []
        for a in self.arms:
            rows.append({"mixture": a.label, "seeds": len(a.observed), "pred_mean": a.pred_mean,
                         "pred_std": a.pred_std, "observed_mean": a.observed_mean,
                         "observed_spread": a.observed_spread, "z": a.z, "speedup_vs_uniform": a.speedup,
                         "steps_to_uniform_final": a.steps_to_uniform_final, "pending": a.pending,
                         **{f"w_{d}": w for d, w in a.weights.items()}})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "objective": self.objective, "direction": self.direction, "model": self.model,
                "target": {"model_params": self.target[0], "steps": self.target[1]},
                "largest_observed": self.largest_observed, "scale_factor": self.scale_factor,
                "fit_runs": self.fit_runs, "summary": self.summary, "arms": [a.to_dict() for a in self.arms]}


def latest_plan(store, study: str) -> dict[str, Any] | None:
    """The newest ``validation_plan`` event's detail (``arms``, ``model``), or None."""
    ev = store.events(study)
    ev = ev[ev["kind"] == PLAN_EVENT]
    if ev.empty:
        return None
    d = ev.iloc[0]["detail"]  # newest first
    return json.loads(d) if isinstance(d, str) else dict(d)


def steps_to_reach(curve: pd.DataFrame, goal: float, sign: float = 1.0) -> float | None:
    """The first step at which a (steps, value) curve reaches ``goal`` (``sign`` = -1 for a
    maximised objective), interpolating linearly between checkpoints; None if it never does."""
    c = curve.sort_values("steps")
    s = c["steps"].to_numpy(dtype=float)
    v = sign * c["value"].to_numpy(dtype=float)
    g = sign * goal
    hit = np.flatnonzero(v <= g + 1e-12)
    if not len(hit):
        return None
    i = int(hit[0])
    if i == 0 or v[i - 1] == v[i]:
        return float(s[i])
    return float(s[i - 1] + (v[i - 1] - g) / (v[i - 1] - v[i]) * (s[i] - s[i - 1]))


def _mean_curve(curve: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean curve over the steps every seed has."""
    n = curve["seed"].nunique()
    g = curve.groupby("steps")["value"].agg(["mean", "count"]).reset_index()
    g = g[g["count"] == n]
    return g.rename(columns={"mean": "value"})[["steps", "value"]]


def verdict(store, study: str, *, model: str | None = None, fitted=None) -> Verdict:
    """The verdict on the study's validation runs (see the module docstring). ``model``: the loss
    model whose predictions are judged (default: the model the latest plan's recommendation came
    from, else the study's recommended one; calibrated, as `mixplan optimum` answers); ``fitted``: an already fitted model (the app passes its cached fit)."""
    from engine.recommendation import AUTO, study_model

    cfg = store.get_config(study)
    t = cfg.target
    if t is None or t.steps is None:
        raise ValidationError(f"study '{study}' has no target in steps, so its validation runs cannot be judged.")
    sign = 1.0 if cfg.direction == "minimize" else -1.0
    plan = latest_plan(store, study) or {"arms": []}
    model = model or plan.get("model") or AUTO
    held = store.runs_frame(study, meta=True, purpose="validation")
    trials = store.trials(study, purpose="validation")
    domains = list(cfg.domains)
    fit_runs = store.runs_frame(study)
    largest = int(fit_runs["model_params"].max()) if len(fit_runs) else 0

    current: dict[str, list[dict]] = {}
    for a in plan.get("arms", []):
        current.setdefault(a["key"], []).append(a)
    groups: dict[str, list] = {}
    for tr in trials:
        if tr.state in (TrialState.REJECTED, TrialState.CANCELLED):
            continue
        groups.setdefault(mixture_key(tr.weights, domains), []).append(tr)
    arms: list[ArmResult] = []
    for key, trs in groups.items():
        planned = current.get(key)
        if planned:
            labels, how = [a["label"] for a in planned], "; ".join(f"{a['label']}: {a['how']}" for a in planned)
        else:  # trained for an earlier plan
            first = (trs[0].reason or "").removeprefix("validation: ")
            old = first.split(" (")[0]
            labels = [f"previous {old}" if old else "earlier plan"]
            how = f"trained for an earlier plan: {first}"
        res = ArmResult(labels, key, clean_mixture(trs[0].weights, domains), how, bool(planned),
                        [x.run_id for x in trs], [], [])
        curves = []
        for tr in sorted(trs, key=lambda x: (x.seed or 0)):
            rows = held[(held["trial_id"] == tr.trial_id) & held["steps"].notna()]
            if tr.state != TrialState.DONE or rows.empty:
                res.pending += 1
                continue
            vals = pd.to_numeric(objective_values(rows, cfg.objective), errors="coerce").to_numpy(dtype=float)
            c = pd.DataFrame({"steps": rows["steps"].astype(float).to_numpy(), "value": vals,
                              "seed": int(tr.seed or 0)})
            curves.append(c)
            at = c[c["steps"] == float(t.steps)]
            if len(at):
                res.seeds.append(int(tr.seed or 0))
                res.observed.append(float(at["value"].iloc[-1]))
        res.curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["steps", "value", "seed"])
        arms.append(res)
    order = {"recommended": 0, "uniform": 1, "natural": 2, "small-scale optimum": 3}
    arms.sort(key=lambda a: (not a.current, min(order.get(x, 9) for x in a.labels), a.label))

    # predictions at the target, from the study's own runs only
    if arms and len(fit_runs):
        if fitted is None:
            fitted, _ = study_model(store, study, model)
        model = getattr(fitted, "chosen_", model)
        q = pd.DataFrame([{**{f"w_{d}": a.weights[d] for d in domains}, "model_params": int(t.model_params),
                           "steps": int(t.steps), "tokens": cfg.tokens_for(t.steps)} for a in arms])
        mean, std = fitted.predict(q)
        for a, m_, s_ in zip(arms, mean, std):
            a.pred_mean, a.pred_std = float(m_), float(s_)

    # speed-up against uniform (AutoScale): steps uniform needs for its final loss / steps this needs
    uni = next((a for a in arms if a.is_("uniform") and a.observed), None)
    if uni is not None:
        ucurve = _mean_curve(uni.curve)
        final = float(ucurve.loc[ucurve["steps"] == float(t.steps), "value"].iloc[-1]) if (
            ucurve["steps"] == float(t.steps)).any() else None
        if final is not None:
            need_u = steps_to_reach(ucurve, final, sign)
            for a in arms:
                if not a.observed:
                    continue
                s = steps_to_reach(_mean_curve(a.curve), final, sign)
                a.steps_to_uniform_final = s
                a.speedup = (need_u / s) if (s and need_u) else None
    summary = _summary(arms, cfg.objective, sign)
    return Verdict(study, cfg.objective, cfg.direction, model, (int(t.model_params), int(t.steps)), largest, arms,
                   summary, fit_runs["run_id"].nunique() if len(fit_runs) else 0)


def _summary(arms: list[ArmResult], objective: str, sign: float) -> str:
    """One honest sentence or three: did the recommended mixture win at the target?"""
    done = [a for a in arms if a.current and a.observed]
    rec = next((a for a in done if a.is_("recommended")), None)
    if rec is None:
        return "No finished validation run of the recommended mixture yet."
    others = [a for a in done if a is not rec]
    if not others:
        return f"The recommended mixture scored {rec.observed_mean:.4f} ({objective}); nothing to compare it with yet."
    if len(rec.labels) > 1:
        also = ", ".join(x for x in rec.labels if x != "recommended")
        prefix = f"The recommended mixture is also the {also}. "
    else:
        prefix = ""
    best = min(others, key=lambda a: sign * a.observed_mean)
    gap = sign * (best.observed_mean - rec.observed_mean)  # > 0: the recommendation is better
    noise = max([a.observed_spread or 0.0 for a in done] + [0.0])
    beaten = [a.label for a in others if sign * (a.observed_mean - rec.observed_mean) > 0]
    if gap > 0:
        text = (f"mixplan's recommended mixture wins at the target: {objective} {rec.observed_mean:.4f} vs "
                f"{best.observed_mean:.4f} for the best alternative ({best.label}), {gap:.4f} better")
    else:
        text = (f"mixplan's recommended mixture loses at the target: {objective} {rec.observed_mean:.4f} vs "
                f"{best.observed_mean:.4f} for {best.label}, {-gap:.4f} worse"
                + (f"; it beats {', '.join(beaten)}" if beaten else "; it beats none of the alternatives"))
    text += (f" (seeds spread by up to +-{noise:.4f}: the difference is "
             f"{'more than' if abs(gap) > 2 * noise else 'within'} twice the seed noise).")
    if rec.speedup is not None:
        text += f" Speed-up against uniform: {rec.speedup:.2f}x."
    elif rec.observed and any(a.is_("uniform") for a in done):
        text += " It never reaches the uniform mixture's final loss within the run (no speed-up)."
    text = prefix + text
    if rec.z is not None:
        text += (f" Predicted {rec.pred_mean:.4f} +- {rec.pred_std:.4f}: the observation is {abs(rec.z):.1f} std "
                 f"{'above' if rec.z > 0 else 'below'} the prediction.")
    return text
