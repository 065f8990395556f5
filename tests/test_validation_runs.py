"""Validation runs: held out from every fit, planned and judged (on the synthetic landscape, whose
runs are real store writes through the real dispatch path, only cheap)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.autopilot import run_trial_in_process
from engine.config import load_config
from engine.records import Proposal, TrialState
from engine.runners.registry import make_runner
from engine.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "synthetic.toml"
DOMAINS = ["web", "code", "books", "science"]
TARGET = (1_000_000_000, 19500)


def _run(store: Store, study: str, props: list[Proposal], tmp: Path, purpose: str = "fit") -> list[int]:
    trials = store.add_trials(study, props, state=TrialState.APPROVED, purpose=purpose)
    runner = make_runner(store.get_config(study))
    for t in trials:
        assert run_trial_in_process(store, t, runner, tmp) == TrialState.DONE
    return [t.trial_id for t in trials]


@pytest.fixture
def study(tmp_path) -> Store:
    """The synthetic example with 16 fit runs at 20M and 60M parameters (2,200 steps)."""
    store = Store(tmp_path / "runs.duckdb")
    store.create_study(load_config(EXAMPLE))
    rng = np.random.default_rng(0)
    props = [Proposal(dict(zip(DOMAINS, rng.dirichlet(np.ones(4)))), mp, steps=2200, run_id=f"fit{i}")
             for i, mp in enumerate([20_000_000] * 10 + [60_000_000] * 6)]
    _run(store, "synthetic", props, tmp_path)
    return store


def _query() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    W = rng.dirichlet(np.ones(4), 5)
    return pd.DataFrame([{**{f"w_{d}": w for d, w in zip(DOMAINS, row)}, "model_params": TARGET[0],
                          "steps": TARGET[1]} for row in W])


def test_validation_runs_never_enter_a_fit(study, tmp_path):
    """Fit, add validation runs at the target, fit again: identical predictions, optimum and
    strategy state; the runs are there, counted apart."""
    from engine.export.recommend import fit_study_model, from_optimum
    from engine.strategies.base import StudyState
    from engine.trajectory import trajectory

    before_runs = study.runs_frame("synthetic")
    before = fit_study_model(study, "synthetic", "mfms-gp").predict(_query())
    before_opt = from_optimum(study, "synthetic").weights
    before_state = StudyState.from_store(study, "synthetic")
    before_traj = trajectory(study, "synthetic")

    val = [Proposal({d: 0.25 for d in DOMAINS}, TARGET[0], steps=TARGET[1], run_id=f"val-s{s}", seed=s)
           for s in (0, 1)]
    ids = _run(study, "synthetic", val, tmp_path, purpose="validation")

    assert study.runs_frame("synthetic").equals(before_runs)
    after = fit_study_model(study, "synthetic", "mfms-gp").predict(_query())
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert from_optimum(study, "synthetic").weights == before_opt
    state = StudyState.from_store(study, "synthetic")
    assert state.runs.equals(before_state.runs) and len(state.trials) == len(before_state.trials)
    assert not set(ids) & {t.trial_id for t in state.trials}
    assert [e["trial_id"] for e in trajectory(study, "synthetic")] == [e["trial_id"] for e in before_traj]
    # ... but they are stored, and counted apart
    held = study.runs_frame("synthetic", purpose="validation", meta=True)
    assert sorted(held["trial_id"].unique()) == ids and (held["purpose"] == "validation").all()
    assert len(study.runs_frame("synthetic", purpose=None)) == len(before_runs) + len(held)
    summary = study.list_studies()[0]
    assert (summary.runs, summary.validation_runs) == (16, 2)
    assert [t.purpose for t in study.trials("synthetic", purpose="validation")] == ["validation"] * 2
    # a proposal's "approve all" never touches them, a strategy's pending list never sees them
    assert study.approve("synthetic") == []


def test_a_bad_purpose_is_refused(study):
    from engine.errors import ValidationError

    with pytest.raises(ValidationError, match="unknown trial purpose"):
        study.runs_frame("synthetic", purpose="holdout")


def test_steps_to_reach_interpolates_between_checkpoints():
    from engine.validation import steps_to_reach

    curve = pd.DataFrame({"steps": [100, 200, 300], "value": [3.0, 2.5, 2.0]})
    assert steps_to_reach(curve, 2.5) == 200
    assert steps_to_reach(curve, 2.25) == pytest.approx(250)
    assert steps_to_reach(curve, 1.9) is None
    assert steps_to_reach(curve, 3.5) == 100
    up = pd.DataFrame({"steps": [100, 200], "value": [0.4, 0.6]})  # a maximised metric
    assert steps_to_reach(up, 0.5, sign=-1.0) == pytest.approx(150)


@pytest.mark.slow
def test_build_validation_and_its_verdict(study, tmp_path):
    """The plan's mixtures at the target, two seeds each, through the dispatcher; the verdict
    compares the model's predictions with them and gives the speed-up against uniform."""
    from engine.demo.validation import build_validation
    from engine.validation import verdict

    out = build_validation(study.path, "synthetic", seeds=(0, 1), workers=1)
    assert out["failed"] == {}
    labels = {a["label"] for a in out["arms"]}
    assert {"recommended", "uniform", "small-scale optimum"} <= labels  # no domain_sizes: no natural
    v = verdict(study, "synthetic")
    from engine.recommendation import recommend

    # predictions by the model the recommendation came from (the backtest's choice, calibrated)
    assert v.model == recommend(study, "synthetic").model and v.target == TARGET and v.largest_observed == 60_000_000
    assert v.scale_factor == pytest.approx(1e9 / 6e7)
    runner = make_runner(study.get_config("synthetic"))
    for a in v.arms:
        assert a.current and a.seeds == [0, 1] and len(a.observed) == 2 and a.pending == 0
        truth = runner.true_value(a.weights, *TARGET, "mean_loss")
        assert abs(a.observed_mean - truth) < 0.01  # what was measured is the mixture's own loss
        assert a.pred_mean is not None and a.pred_std > 0
    uni = next(a for a in v.arms if a.is_("uniform"))
    assert uni.speedup == pytest.approx(1.0) and uni.steps_to_uniform_final == pytest.approx(TARGET[1], rel=0.01)
    rec = next(a for a in v.arms if a.is_("recommended"))
    ref = next(a for a in v.arms if a.is_("uniform"))
    better = rec.observed_mean < ref.observed_mean
    assert ("wins" in v.summary) == (better and all(rec.observed_mean <= a.observed_mean for a in v.arms))
    assert ("loses" in v.summary) != ("wins" in v.summary)
    if rec.speedup is not None:
        assert (rec.speedup > 1) == better
    # the table the report prints
    table = v.table()
    assert list(table["mixture"]) == [a.label for a in v.arms] and (table["seeds"] == 2).all()
    json.dumps(v.to_dict())
    # building again trains nothing (the recommendation has not moved)
    again = build_validation(study.path, "synthetic", seeds=(0, 1), workers=1)
    assert again["done"] == []


@pytest.mark.slow
def test_a_new_recommendation_is_trained_and_the_old_one_kept(study, tmp_path, monkeypatch):
    """When the recommendation changes (here: the default model becomes another real model), a
    rebuild trains the new mixture; the old runs stay, labelled as a previous recommendation."""
    from engine.demo.validation import build_validation
    from engine.export import recommend
    from engine.validation import verdict

    build_validation(study.path, "synthetic", seeds=(0,), workers=1)
    before = verdict(study, "synthetic")
    first = next(a for a in before.arms if a.is_("recommended"))
    other = next(m for m in ("mfms-gp", "dmsl", "mixing-law") if m != before.model)  # not the current one
    # the default model becomes `other`: for the recommended mixture and the small-scale optimum
    import engine.recommendation as R

    monkeypatch.setattr(recommend, "from_optimum", functools.partial(recommend.from_optimum, model=other))
    orig = R.study_model
    monkeypatch.setattr(R, "study_model", lambda store, name, model=None, objective=None: orig(store, name, other,
                                                                                                objective))
    out = build_validation(study.path, "synthetic", seeds=(0,), workers=1)
    v = verdict(study, "synthetic")
    assert v.model == other
    rec = next(a for a in v.arms if a.is_("recommended"))
    assert rec.key != first.key and len(out["done"]) >= 1
    old = next(a for a in v.arms if a.key == first.key and not a.current)
    assert old.label == "previous recommended" and old.observed == first.observed


@pytest.mark.slow
def test_demo_report_cli(study, tmp_path):
    from typer.testing import CliRunner

    from engine.cli import app
    from engine.demo.validation import build_validation

    r = CliRunner().invoke(app, ["demo", "report", "--db", str(study.path), "--study", "synthetic"])
    assert r.exit_code == 0 and "no validation runs" in r.output
    build_validation(study.path, "synthetic", seeds=(0, 1), workers=1)
    r = CliRunner().invoke(app, ["demo", "report", "--db", str(study.path), "--study", "synthetic"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # rich wraps long lines
    assert "recommended" in text and "uniform" in text and "1.00x" in text
    assert "17x the largest size" in text and ("wins" in text or "loses" in text)
    r = CliRunner().invoke(app, ["demo", "report", "--db", str(study.path), "--study", "synthetic", "--json"])
    data = json.loads(r.output)
    # recommended, uniform and the small-scale optimum (one arm where the two optima coincide)
    assert data["target"] == {"model_params": TARGET[0], "steps": TARGET[1]}
    assert {"recommended", "uniform", "small-scale optimum"} <= {lab for a in data["arms"] for lab in a["labels"]}
    assert all(len(a["observed"]) == 2 for a in data["arms"])
