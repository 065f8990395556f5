"""The demo's validation runs: real runs at its target (3M parameters, 500 steps: 3x the largest
size any model fits on), of the mixtures worth checking, held out from every fit.

The mixtures (:func:`plan_arms`), each trained with every seed of the plan:

- **recommended**: mixplan's one recommended mixture, exactly what
  :func:`engine.export.recommend.from_optimum` answers for the study with its default model (the
  answer ``mixplan export`` gives);
- **uniform**: 1/K each;
- **natural**: token-proportional to the corpus the demo trains on (``[runner] domain_sizes``);
- **small-scale optimum**: the same model's optimum at the smallest size, at the target's length
  ("tune small, apply large", the practice AutoScale warns about).

Runs are keyed by their mixture (:func:`engine.validation.mixture_key`: its weights rounded to 3
decimals), so when the recommendation changes (a new default model,
more runs), ``mixplan demo build`` trains the new mixture and keeps the old runs, which the report
then labels as a previous recommendation; when it has not changed, the step costs one model fit.
Each plan is logged as a ``validation_plan`` event (what each label meant, and which model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engine.errors import ValidationError
from engine.records import Proposal, TrialState
from engine.validation import PLAN_EVENT, Arm, clean_mixture, mixture_key

#: seeds each validation mixture is trained with
VALIDATION_SEEDS: tuple[int, ...] = (0, 1)
#: a new recommendation within this L1 distance of an already-trained validation mixture reuses it
#: (an optimiser's last digits are not a new mixture)
REUSE_L1 = 0.01


def _slug(label: str) -> str:
    return {"recommended": "rec", "uniform": "uniform", "natural": "natural",
            "small-scale optimum": "smallopt"}.get(label, label.replace(" ", "-"))


def plan_arms(store, study: str) -> tuple[list[Arm], str]:
    """The mixtures to validate now, and the model the recommendation came from."""
    from engine.export.recommend import from_optimum
    from engine.recommendation import AUTO, study_model

    cfg = store.get_config(study)
    domains = list(cfg.domains)
    rec = from_optimum(store, study)  # the study's one recommendation (engine.recommendation)
    model = rec.provenance.model or AUTO
    t = cfg.target
    arms = [Arm("recommended", clean_mixture(rec.weights, domains),
                f"{model} optimum at the target ({t.model_params:,} params, {t.steps} steps): `mixplan export`'s "
                f"answer, predicted {rec.provenance.pred_mean:.4f} +- {rec.provenance.pred_std:.4f}")]
    k = len(domains)
    arms.append(Arm("uniform", clean_mixture({d: 1.0 / k for d in domains}, domains), "1/K each"))
    sizes = (cfg.runner.options or {}).get("domain_sizes")
    if sizes and all(d in sizes for d in domains):
        arms.append(Arm("natural", clean_mixture({d: float(sizes[d]) for d in domains}, domains),
                        "token-proportional to the corpus the runs train on ([runner] domain_sizes)"))
    runs = store.runs_frame(study)
    small = int(runs["model_params"].min())
    # the same model, calibrated and kept near the explored mixtures, asked at the smallest size
    fitted, _ = study_model(store, study, AUTO)
    opt = fitted.optimum(small, steps=t.steps, tokens=cfg.tokens_for(t.steps), bounds=cfg.bounds_array(),
                         direction=cfg.direction)
    arms.append(Arm("small-scale optimum", clean_mixture(opt.weights, domains),
                    f"{model} optimum at the smallest size ({small:,} params, {t.steps} steps), applied at the target"))
    return [Arm(a.label, a.weights, a.how, mixture_key(a.weights, domains)) for a in arms], model


def _reuse(arm: Arm, trained: dict[str, dict[str, float]], domains: Sequence[str]) -> Arm:
    """The arm, re-keyed to an already-trained mixture within :data:`REUSE_L1` (if any)."""
    if arm.key in trained:
        return arm
    w = np.array([arm.weights[d] for d in domains])
    for key, tw in trained.items():
        if np.abs(w - np.array([tw[d] for d in domains])).sum() <= REUSE_L1:
            return Arm(arm.label, dict(tw), arm.how + f" (within L1 {REUSE_L1} of the mixture trained before)", key)
    return arm


def plan_trials(store, study: str, arms: Sequence[Arm], seeds: Sequence[int] = VALIDATION_SEEDS) -> list[Proposal]:
    """The validation trials the arms still lack (one per arm and seed, keyed by mixture)."""
    cfg = store.get_config(study)
    t = cfg.target
    domains = list(cfg.domains)
    have = {}
    for tr in store.trials(study, purpose="validation"):
        if tr.state not in (TrialState.REJECTED, TrialState.CANCELLED):
            have.setdefault(mixture_key(tr.weights, domains), set()).add(int(tr.seed or 0))
    taken = {tr.run_id for tr in store.trials(study, purpose=None)}
    out = []
    for a in arms:
        for seed in seeds:
            if seed in have.get(a.key, set()):
                continue
            have.setdefault(a.key, set()).add(seed)
            run_id = f"val-{_slug(a.label)}-{a.key}-s{seed}"
            if run_id in taken:  # a cancelled earlier attempt: a fresh id
                run_id += f"-{sum(r.startswith(run_id) for r in taken)}"
            out.append(Proposal(a.weights, int(t.model_params), steps=int(t.steps), strategy="manual", run_id=run_id,
                                seed=int(seed), reason=f"validation: {a.label} ({a.how})"))
    return out


def build_validation(db: str | Path, study: str, *, seeds: Sequence[int] = VALIDATION_SEEDS, workers: int = 2,
                     progress: Callable | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Plan the arms, log the plan, add the missing validation trials and train them (resumable:
    trials already stored are kept, interrupted ones re-attached or re-run)."""
    from engine.dispatch import run_approved
    from engine.store import Store

    store = Store(db)
    cfg = store.get_config(study)
    if cfg.target is None or cfg.target.steps is None:
        raise ValidationError(f"study '{study}' has no target in steps to validate at.")
    domains = list(cfg.domains)
    arms, model = plan_arms(store, study)
    trained = {}
    for tr in store.trials(study, purpose="validation"):
        if tr.state not in (TrialState.REJECTED, TrialState.CANCELLED):
            trained.setdefault(mixture_key(tr.weights, domains), clean_mixture(tr.weights, domains))
    arms = [_reuse(a, trained, domains) for a in arms]
    store.log_event(study, PLAN_EVENT, actor="demo", detail={"model": model, "arms": [a.to_dict() for a in arms],
                                                             "seeds": list(seeds)})
    new = plan_trials(store, study, arms, seeds)
    if log:
        for a in arms:
            log(f"validation {a.label}: " + " ".join(f"{d}={w:.3f}" for d, w in a.weights.items())
                + f" [{a.key}]")
        log(f"{len(new)} validation run(s) to add")
    if new:
        store.add_trials(study, new, actor="demo", state=TrialState.APPROVED, purpose="validation")
    summary = run_approved(store, study, executor="local", workers=workers, progress=progress)
    out = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)
    out["arms"] = [a.to_dict() for a in arms]
    return out
