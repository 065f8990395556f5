"""The bundled BO comparison (demo-bo-*): one autopilot loop per strategy on the synthetic
landscape, reproducible and resumable."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.autopilot import autopilot
from engine.config import load_config
from engine.demo.bo import (
    DONE_EVENT,
    BOPlan,
    bo_config,
    build_bo,
    study_name,
    synthetic_config_dict,
)
from engine.records import Proposal, TrialState
from engine.store import Store
from engine.trajectory import comparable_studies, trajectory

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "synthetic.toml"


def test_the_bo_studies_are_the_example_study():
    example = load_config(EXAMPLE).to_dict()
    ours = bo_config("random").to_dict()
    for d in (example, ours):
        for k in ("name", "description"):
            d.pop(k)
    assert ours == example
    assert synthetic_config_dict()["runner"]["kind"] == "synthetic"


def test_build_runs_each_strategy_resumes_and_compares(tmp_path):
    db = tmp_path / "runs.duckdb"
    plan = BOPlan(strategies=("random", "hyperband"), budget=400.0, max_trials=8)
    out = build_bo(db, plan=plan)
    store = Store(db)
    assert set(out) == {"demo-bo-random", "demo-bo-hyperband"}
    for name, res in out.items():
        assert 0 < res["spent"] <= plan.budget and res["trials"] >= 1
        traj = trajectory(store, name)
        assert traj and all(e["incumbent_regret"] is not None and e["incumbent_regret"] >= 0 for e in traj)
        assert (store.events(name)["kind"] == DONE_EVENT).sum() == 1
    assert comparable_studies(store, "demo-bo-random") == ["demo-bo-hyperband"]
    # a finished build is not run again
    n = {name: len(store.trials(name)) for name in out}
    again = build_bo(db, plan=plan)
    assert all(r.get("skipped") == "already built" for r in again.values())
    assert {name: len(store.trials(name)) for name in out} == n


def test_an_interrupted_loop_goes_on_with_what_is_left(tmp_path):
    db = tmp_path / "runs.duckdb"
    plan = BOPlan(strategies=("random",), budget=500.0, max_trials=10)
    store = Store(db)
    name = study_name("random")
    store.create_study(bo_config("random", plan))
    autopilot(store, name, "random", plan.budget, seed=0, max_trials=1)  # then "killed"
    stale = store.add_trials(name, [Proposal({"web": 0.25, "code": 0.25, "books": 0.25, "science": 0.25},
                                             1_000_000_000, steps=19500, strategy="random")], state="approved")
    out = build_bo(db, plan=plan)
    assert store.get_trial(stale[0].trial_id).state == TrialState.CANCELLED
    spent = sum(t.cost for t in store.trials(name, [TrialState.DONE]))
    assert out[name]["spent"] == pytest.approx(spent) and spent <= plan.budget
    assert len(store.trials(name, [TrialState.DONE])) == 2  # 195 each: two fit in 500
