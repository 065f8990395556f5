"""The bundled demo study: real built-in-trainer runs on the six offline text domains.

``mixplan demo build --db runs.duckdb`` creates (or resumes) the study ``demo``:

- the corpus of :mod:`engine.data` (code, docs, books, encyclopedia, quotes, latex; byte-level);
- a fixed, seeded design of mixtures: uniform, each domain at 50% (the rest equal), then
  Dirichlet(1) draws; the first ``n`` of the same list at every model size, so the same
  mixtures are seen at several scales (what the scaling page compares);
- three sizes of the trainer's CPU ladder with one run per (mixture, size) and a validation
  checkpoint every ``eval_every`` steps (cosine schedule over the run's full length, so a
  mid-run checkpoint is *not* a shorter run; the models treat steps as a fidelity regardless);
- the trials go through the product's own path: stored as approved trials, then run by
  :func:`engine.dispatch.run_approved` on the local executor;
- a target beyond the observed sizes: 3M parameters at 500 steps (3x the largest, 1M), which the
  built-in trainer trains in ~6 minutes on one CPU thread, so :mod:`engine.demo.validation` can
  check the predictions there with real runs.

Resumable: run ids are deterministic (``<size>-m<index>``), trials already stored are never
added twice, and a build interrupted at any point continues where it stopped when the command
is run again (finished runs are kept; queued/running ones are re-attached or re-run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.config import config_from_dict
from engine.records import Proposal, TrialState
from engine.store import Store

DEMO_STUDY = "demo"
DEMO_DOMAINS = ("code", "docs", "books", "encyclopedia", "quotes", "latex")


@dataclass(frozen=True)
class DemoPlan:
    """How many mixtures at each size, and how long each run is."""

    sizes: tuple[tuple[int, int], ...] = ((100_000, 36), (500_000, 18), (1_000_000, 10))
    steps: int = 500
    eval_every: int = 50
    seed: int = 0
    domains: tuple[str, ...] = DEMO_DOMAINS
    batch_size: int = 16
    context: int = 128
    #: the scale the study is for: (model_params, steps), beyond every size it runs
    target: tuple[int, int] = (3_000_000, 500)
    #: seeds of each validation mixture at the target
    validation_seeds: tuple[int, ...] = (0, 1)


def design_mixtures(n: int, k: int = len(DEMO_DOMAINS), seed: int = 0) -> np.ndarray:
    """``n`` mixtures over ``k`` domains: uniform, one domain at 50% each, then Dirichlet(1)."""
    rows = [np.full(k, 1.0 / k)]
    for i in range(k):
        w = np.full(k, 0.5 / (k - 1))
        w[i] = 0.5
        rows.append(w)
    rng = np.random.default_rng(seed)
    while len(rows) < n:
        rows.append(rng.dirichlet(np.ones(k)))
    return np.round(np.array(rows[:n]), 6) / np.round(np.array(rows[:n]), 6).sum(axis=1, keepdims=True)


def demo_config(plan: DemoPlan, corpus_dir: str | None = None):
    """The demo study's config (builtin runner on the six domains)."""
    sizes = [m for m, _ in plan.sizes]
    raw = {
        "name": DEMO_STUDY,
        "description": "Real runs of mixplan's built-in byte-level GPT trainer (CPU) on six offline text domains.",
        "domains": list(plan.domains),
        "objective": "mean_loss",
        "tokens_per_step": plan.batch_size * plan.context,
        "scales": [{"model_params": m, "steps": [plan.steps // 2, plan.steps]} for m in sizes],
        "target": {"model_params": plan.target[0], "steps": plan.target[1]},
        "seed": plan.seed,
        "runner": {"kind": "builtin", "timeout_s": 3600, "eval_every": plan.eval_every,
                   "batch_size": plan.batch_size, "context": plan.context, "threads": 1,
                   **({"corpus": corpus_dir} if corpus_dir else {})},
    }
    return config_from_dict(raw, source="demo")


def plan_trials(store: Store, plan: DemoPlan) -> list[Proposal]:
    """The demo's proposals not yet stored (deterministic run ids make this resumable)."""
    have = {t.run_id for t in store.trials(DEMO_STUDY)}
    n_max = max(n for _, n in plan.sizes)
    mixes = design_mixtures(n_max, len(plan.domains), seed=plan.seed)
    out = []
    for model_params, n in plan.sizes:
        label = f"{model_params / 1e6:g}M"
        for i in range(n):
            run_id = f"{label}-m{i:02d}"
            if run_id in have:
                continue
            w = dict(zip(plan.domains, (float(x) for x in mixes[i])))
            out.append(Proposal(w, model_params, steps=plan.steps, strategy="manual", run_id=run_id,
                                seed=plan.seed, reason="demo design: " + ("uniform" if i == 0 else
                                "50% " + plan.domains[i - 1] if i <= len(plan.domains) else "Dirichlet(1) draw")))
    return out


def corpus_sizes(corpus_dir: str | None, domains) -> dict[str, int] | None:
    """Training tokens per domain of the corpus the runs train on (its manifest), or None
    where it is not prepared yet: the ``natural`` mixture's sizes."""
    from engine.data import default_cache_dir, read_manifest

    try:
        info = read_manifest(corpus_dir or default_cache_dir())
    except Exception:  # noqa: BLE001 - no corpus yet: the runs prepare it
        return None
    have = {d: int(info.domains[d].train_tokens) for d in domains if d in info.domains}
    return have if len(have) == len(tuple(domains)) else None


def sync_config(store: Store, plan: DemoPlan, corpus_dir: str | None = None) -> bool:
    """Bring the stored demo config to the plan: its target, and ``domain_sizes`` from the corpus
    (so ``natural`` means the corpus's own proportions). Returns whether it changed."""
    cfg = store.get_config(DEMO_STUDY)
    target = cfg.target
    want_target = replace(target, model_params=int(plan.target[0]), steps=int(plan.target[1]), tokens=None) \
        if target is not None else None
    options = dict(cfg.runner.options)
    sizes = corpus_sizes(corpus_dir, plan.domains)
    if sizes:
        options["domain_sizes"] = sizes
    new = replace(cfg, target=want_target, runner=replace(cfg.runner, options=options))
    if new == cfg:
        return False
    store.update_config(new, actor="demo")
    return True


#: what ``mixplan demo build`` builds, in this order
PARTS = ("runs", "validation", "bo")


def build_demo(db: str | Path, *, plan: DemoPlan = DemoPlan(), workers: int = 2, corpus_dir: str | None = None,
               progress: Callable | None = None, parts: tuple[str, ...] = ("runs",),
               log: Callable[[str], None] | None = None) -> dict:
    """Create or resume the demo in ``db``: ``parts`` of :data:`PARTS` (the study's runs, its
    validation runs at the target, the BO comparison studies); every step keeps what is done."""
    from engine.dispatch import run_approved

    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"unknown demo part(s) {bad}; parts are {PARTS}")
    store = Store(db)
    if DEMO_STUDY not in store.study_names():
        store.create_study(demo_config(plan, corpus_dir), actor="demo")
    sync_config(store, plan, corpus_dir)
    out: dict = {}
    if "runs" in parts:
        new = plan_trials(store, plan)
        if new:
            # cheapest first, so an interrupted build already holds a useful small-scale study
            new.sort(key=lambda p: p.model_params)
            store.add_trials(DEMO_STUDY, new, actor="demo", state=TrialState.APPROVED)
        summary = run_approved(store, DEMO_STUDY, executor="local", workers=workers, progress=progress)
        out = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)
        sync_config(store, plan, corpus_dir)  # the corpus exists now
    if "validation" in parts:
        from engine.demo.validation import build_validation

        out["validation"] = build_validation(db, DEMO_STUDY, seeds=plan.validation_seeds, workers=workers,
                                             progress=progress, log=log)
    if "bo" in parts:
        from engine.demo.bo import build_bo

        out["bo"] = build_bo(db, progress=log)
    return out
