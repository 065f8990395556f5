"""AppTest of the Validation page and of the Trajectory page's strategy comparison, on a synthetic
landscape study (real store, real models, real plan; runs answered by the synthetic runner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from engine.autopilot import autopilot, run_trial_in_process
from engine.config import load_config
from engine.records import Proposal, TrialState
from engine.runners.registry import make_runner
from engine.store import Store

MAIN = "../app/main.py"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "synthetic.toml"
DOMAINS = ["web", "code", "books", "science"]


def _run(store, study, props, tmp, purpose="fit"):
    runner = make_runner(store.get_config(study))
    for t in store.add_trials(study, props, state=TrialState.APPROVED, purpose=purpose):
        assert run_trial_in_process(store, t, runner, tmp) == TrialState.DONE


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """'synthetic': 16 fit runs and the demo's validation plan at the target (trained in-process);
    'synthetic-random' / 'synthetic-hyperband': the same experiment, one autopilot loop each."""
    from dataclasses import replace

    from engine.demo.validation import plan_arms, plan_trials
    from engine.validation import PLAN_EVENT

    tmp = tmp_path_factory.mktemp("appval")
    store = Store(tmp / "app.duckdb")
    cfg = load_config(EXAMPLE)
    store.create_study(cfg)
    rng = np.random.default_rng(0)
    _run(store, "synthetic", [Proposal(dict(zip(DOMAINS, rng.dirichlet(np.ones(4)))), mp, steps=2200,
                                       run_id=f"fit{i}") for i, mp in enumerate([20_000_000] * 10 + [60_000_000] * 6)],
         tmp)
    arms, model = plan_arms(store, "synthetic")
    store.log_event("synthetic", PLAN_EVENT, actor="test", detail={"model": model, "arms": [a.to_dict() for a in arms]})
    _run(store, "synthetic", plan_trials(store, "synthetic", arms, (0, 1)), tmp, purpose="validation")
    for strategy in ("random", "hyperband"):
        name = f"synthetic-{strategy}"
        store.create_study(replace(cfg, name=name))
        autopilot(store, name, strategy, 600.0, seed=0, max_trials=12)
    return tmp / "app.duckdb"


def page(name: str, study: str, db: Path, monkeypatch) -> AppTest:
    from app import common

    monkeypatch.setenv("MIXPLAN_DB", str(db))
    monkeypatch.setenv("MIXPLAN_APP_FIT_WAIT", "600")  # AppTest cannot tick run_every: fit synchronously
    common._version.clear()
    common._study_names.clear()
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["study"] = study
    at.switch_page(name)
    return at.run()


def test_validation_page_shows_the_verdict(db, monkeypatch):
    at = page("views/validation.py", "synthetic", db, monkeypatch)
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    from engine.recommendation import recommend

    model = recommend(Store(db), "synthetic").model  # the page names the study's recommended model
    assert "validation runs" in text and "17x" in text and f"Predictions by **{model}**" in text
    verdict = [e.value for e in list(at.success) + list(at.warning)]
    assert len(verdict) == 1 and "recommended mixture" in verdict[0]
    assert ("loses" in verdict[0]) == bool(at.warning)
    table = at.dataframe[0].value
    assert {"recommended", "uniform"} <= {x for label in table["mixture"] for x in label.split(" = ")}
    assert (table["seeds"] == 2).all() and table["predicted"].notna().all() and table["observed"].notna().all()
    uni = table[table["mixture"].str.contains("uniform")]
    assert uni["speed-up vs uniform"].iloc[0] == pytest.approx(1.0)


def test_validation_page_without_validation_runs(db, monkeypatch):
    at = page("views/validation.py", "synthetic-random", db, monkeypatch)
    assert not at.exception
    assert any("no validation runs" in i.value for i in at.info)


def test_trajectory_compares_the_same_experiment_by_default(db, monkeypatch):
    at = page("views/trajectory.py", "synthetic-random", db, monkeypatch)
    assert not at.exception, at.exception
    # the studies made from the same config (the example's) are drawn together without asking
    assert at.multiselect(key="traj_compare").value == ["synthetic", "synthetic-hyperband"]
    assert any("knows its true optimum" in c.value for c in at.caption)
    speed = at.dataframe[0].value
    assert len(speed) == 3 and set(speed.columns) >= {"strategy", "speedup"}
