"""The demo study builder: a real (tiny) build through the product's own path, and resuming."""

from __future__ import annotations

import numpy as np
import pytest

from engine.demo import DEMO_STUDY, DemoPlan, build_demo, design_mixtures, plan_trials
from engine.store import Store

DOMAINS = ("code", "docstrings", "unicode")


def test_design_is_deterministic_and_on_the_simplex():
    a, b = design_mixtures(12, 6, seed=3), design_mixtures(12, 6, seed=3)
    assert np.array_equal(a, b)
    assert np.allclose(a.sum(axis=1), 1.0) and (a >= 0).all()
    assert np.allclose(a[0], 1 / 6) and a[1, 0] == pytest.approx(0.5)
    assert len({tuple(r) for r in a}) == 12


@pytest.mark.slow
def test_tiny_demo_build_trains_stores_and_resumes(tmp_path):
    from engine.data import build_local_corpus

    corpus = tmp_path / "corpus"
    build_local_corpus(corpus, max_bytes_per_domain=60_000, max_val_bytes=10_000)
    plan = DemoPlan(sizes=((100_000, 3),), steps=20, eval_every=10, domains=DOMAINS, context=32, batch_size=4)
    db = tmp_path / "demo.duckdb"
    summary = build_demo(db, plan=plan, workers=1, corpus_dir=str(corpus))
    assert summary["failed"] == {}
    store = Store(db)
    runs = store.runs_frame(DEMO_STUDY)
    assert sorted(runs["run_id"].unique()) == ["0.1M-m00", "0.1M-m01", "0.1M-m02"]
    assert sorted(runs["steps"].unique()) == [10, 20]
    assert runs[[f"loss_{d}" for d in DOMAINS]].notna().all().all()
    assert plan_trials(store, plan) == []
    # resuming a finished build adds nothing and trains nothing
    again = build_demo(db, plan=plan, workers=1, corpus_dir=str(corpus))
    assert again["done"] == [] and len(Store(db).runs_frame(DEMO_STUDY)) == len(runs)
    # a bigger plan adds only the missing runs
    more = DemoPlan(sizes=((100_000, 4),), steps=20, eval_every=10, domains=DOMAINS, context=32, batch_size=4)
    assert [p.run_id for p in plan_trials(store, more)] == ["0.1M-m03"]


def test_the_default_plan_is_a_study_worth_modelling():
    """The bundled demo's plan: 60-150 runs over three sizes, the same mixtures at each size
    (the first n of one design), a target at least 3x the largest size, validated with 2 seeds,
    and the CLI's defaults are the plan's."""
    from engine.cli.demo_cmd import _DEFAULT
    from engine.demo import demo_config

    plan = DemoPlan()
    n = sum(k for _, k in plan.sizes)
    assert 60 <= n <= 150 and len(plan.sizes) == 3
    assert _DEFAULT == dict(plan.sizes)
    largest = max(m for m, _ in plan.sizes)
    assert plan.target[0] >= 3 * largest and len(plan.validation_seeds) >= 2
    cfg = demo_config(plan)
    assert (cfg.target.model_params, cfg.target.steps) == plan.target


@pytest.mark.slow
def test_tiny_demo_build_with_validation_runs(tmp_path):
    """A tiny demo through `build_demo(parts=("runs", "validation"))`: real training of the fit
    runs and of the validation runs at a target beyond them, held out of the fit, judged by the
    verdict; building again trains nothing."""
    from engine.data import build_local_corpus
    from engine.validation import verdict

    corpus = tmp_path / "corpus"
    build_local_corpus(corpus, max_bytes_per_domain=60_000, max_val_bytes=10_000)
    plan = DemoPlan(sizes=((100_000, 6),), steps=20, eval_every=10, domains=DOMAINS, context=32, batch_size=4,
                    target=(500_000, 20), validation_seeds=(0, 1))
    db = tmp_path / "demo.duckdb"
    out = build_demo(db, plan=plan, workers=2, corpus_dir=str(corpus), parts=("runs", "validation"))
    assert out["failed"] == {} and out["validation"]["failed"] == {}
    store = Store(db)
    cfg = store.get_config(DEMO_STUDY)
    assert (cfg.target.model_params, cfg.target.steps) == (500_000, 20)
    assert set(cfg.runner.options["domain_sizes"]) == set(DOMAINS)  # natural = the corpus's proportions
    assert store.runs_frame(DEMO_STUDY)["model_params"].unique().tolist() == [100_000]
    held = store.runs_frame(DEMO_STUDY, purpose="validation")
    assert held["model_params"].unique().tolist() == [500_000] and held["run_id"].str.startswith("val-").all()
    labels = {a["label"] for a in out["validation"]["arms"]}
    assert labels == {"recommended", "uniform", "natural", "small-scale optimum"}
    v = verdict(store, DEMO_STUDY)
    assert v.scale_factor == pytest.approx(5.0)
    assert all(len(a.observed) == 2 and a.pred_mean is not None for a in v.arms)
    again = build_demo(db, plan=plan, workers=1, corpus_dir=str(corpus), parts=("runs", "validation"))
    assert again["done"] == [] and again["validation"]["done"] == []
