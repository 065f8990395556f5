"""The bundled BO comparison: one study per strategy, each a real autopilot loop on the
``synthetic`` landscape (which ships with mixplan and knows the truth), so the Trajectory page
compares the strategies' true regret against cost on a fresh clone.

``mixplan demo build --bo`` creates (or resumes) the studies ``demo-bo-<strategy>``: the study of
``examples/synthetic.toml`` (4 domains, 20M-1B parameters, target 1B / 19,500 steps, costs in
1B-model runs of 100 steps), renamed, one per strategy, and runs ``autopilot`` on each until its
budget is spent. They share every setting but the name, which is what makes the Trajectory page
draw them together (:func:`engine.trajectory.comparable_studies`).

Reproducible: the landscape, its noise (per run id) and every strategy are seeded, so a build
from scratch gives the same trajectories. Resumable: a study whose loop finished carries a
``demo_bo_done`` event and is skipped; an interrupted loop's unfinished trials are cancelled and
the loop goes on with what is left of its budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.config import StudyConfig, config_from_dict
from engine.records import TrialState

BO_PREFIX = "demo-bo"
#: the strategies compared: the paper's method and three baselines (its random search and Hyperband,
#: and multi-fidelity BO over steps at the target size)
BO_STRATEGIES: tuple[str, ...] = ("mfms-bo", "random", "mf-bo", "hyperband")
DONE_EVENT = "demo_bo_done"
SIZES = (20_000_000, 60_000_000, 150_000_000, 400_000_000, 1_000_000_000)
STEPS = (300, 700, 2200, 6500, 19500)


@dataclass(frozen=True)
class BOPlan:
    """What the comparison runs: strategies, the budget each may spend (in the study's cost unit:
    a 1B-parameter run of 100 steps costs 1, a run at the target 195), its seed and noise."""

    strategies: tuple[str, ...] = BO_STRATEGIES
    budget: float = 1000.0
    seed: int = 0
    noise: float = 0.003
    max_trials: int = 120


def study_name(strategy: str) -> str:
    return f"{BO_PREFIX}-{strategy}"


def synthetic_config_dict(name: str = "synthetic", *, budget: float = 1000.0, noise: float = 0.003,
                          seed: int = 0) -> dict:
    """The study of ``examples/synthetic.toml`` (tests check the two agree)."""
    return {
        "name": name,
        "description": ("mixplan's synthetic landscape: a smooth loss over (mixture, size, steps) whose optimum "
                        "moves with scale"),
        "domains": ["web", "code", "books", "science"], "objective": "mean_loss", "tokens_per_step": 1_048_576,
        "budget": float(budget), "seed": int(seed),
        "scales": [{"model_params": m, "steps": list(STEPS), "cost_per_step": m / 1e11} for m in SIZES],
        "target": {"model_params": SIZES[-1], "steps": STEPS[-1]},
        "runner": {"kind": "synthetic", "noise": float(noise), "checkpoint_every": 100, "landscape_seed": 0},
    }


def bo_config(strategy: str, plan: BOPlan = BOPlan()) -> StudyConfig:
    raw = synthetic_config_dict(study_name(strategy), budget=plan.budget, noise=plan.noise, seed=plan.seed)
    raw["description"] = (f"Bundled BO comparison: {strategy} ran `mixplan autopilot` here on mixplan's synthetic "
                          "landscape (known truth); compare with the other demo-bo-* studies on the Trajectory page.")
    return config_from_dict(raw, source="demo-bo")


def _spent(store, study: str) -> float:
    return float(sum(t.cost or 0.0 for t in store.trials(study, [TrialState.DONE, TrialState.FAILED])))


def _cancel_unfinished(store, study: str) -> int:
    """Trials an interrupted loop left proposed / approved / queued / running: cancelled (the loop
    runs in-process, so nothing else is working on them)."""
    stale = store.trials(study, [TrialState.PROPOSED, TrialState.APPROVED, TrialState.QUEUED, TrialState.RUNNING])
    if stale:
        store.transition([t.trial_id for t in stale], TrialState.CANCELLED, actor="demo",
                         reason="the demo build was interrupted; the loop goes on without it", study=study)
    return len(stale)


def build_bo(db, *, plan: BOPlan = BOPlan(), progress: Callable[[str], None] | None = None) -> dict:
    """Create or resume the ``demo-bo-*`` studies in ``db`` and run each strategy's autopilot loop
    until its budget is spent; returns {study: {"strategy", "trials", "spent", "stopped"}}."""
    from engine.autopilot import autopilot
    from engine.store import Store

    store = Store(db)
    out: dict[str, dict] = {}
    for strategy in plan.strategies:
        name = study_name(strategy)
        if name not in store.study_names():
            store.create_study(bo_config(strategy, plan), actor="demo")
        done_ev = store.events(name)
        finished = done_ev[done_ev["kind"] == DONE_EVENT]
        if len(finished):
            out[name] = {"strategy": strategy, "skipped": "already built", "spent": _spent(store, name)}
            continue
        _cancel_unfinished(store, name)
        left = plan.budget - _spent(store, name)
        n_before = len(store.trials(name, [TrialState.DONE, TrialState.FAILED]))
        if progress:
            progress(f"{name}: autopilot {strategy}, budget left {left:g}")
        stopped = "budget spent"
        if left > 0 and n_before < plan.max_trials:
            res = autopilot(store, name, strategy, left, seed=plan.seed, max_trials=plan.max_trials - n_before)
            stopped = res.stopped
        spent = _spent(store, name)
        store.log_event(name, DONE_EVENT, actor="demo", detail={"strategy": strategy, "spent": spent,
                                                                 "budget": plan.budget, "stopped": stopped})
        out[name] = {"strategy": strategy, "trials": len(store.trials(name, [TrialState.DONE])), "spent": spent,
                     "stopped": stopped}
    return out


def bo_studies(store, strategies: Sequence[str] = BO_STRATEGIES) -> list[str]:
    """The demo-bo studies present in the store."""
    have = set(store.study_names())
    return [study_name(s) for s in strategies if study_name(s) in have]
