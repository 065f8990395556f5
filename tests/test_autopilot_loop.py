"""Autopilot: stops at the budget, survives failing runs, records a trajectory."""

from __future__ import annotations

import json

import pytest

from engine.autopilot import autopilot
from engine.records import TrialState
from engine.store import Store
from engine.trajectory import trajectory
from tests.test_strategies_helpers import SynthRunner, study_config

KEYS = {"trial_id", "weights", "model_params", "steps", "tokens", "cost", "cumulative_cost",
        "incumbent_weights", "incumbent_pred"}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs.duckdb")
    s.create_study(study_config("ap"))
    return s


def test_autopilot_stops_at_the_budget(store):
    res = autopilot(store, "ap", "random", budget=40.0, runner=SynthRunner(), seed=1)
    # the target (10M x 900 steps) costs 9: four fit into 40, a fifth would exceed it
    assert len(res.done) == 4 and res.spent == pytest.approx(36.0)
    assert res.spent <= 40.0
    assert "budget" in res.stopped
    done = store.trials("ap", [TrialState.DONE])
    assert sum(t.cost for t in done) == pytest.approx(res.spent)
    rejected = store.trials("ap", [TrialState.REJECTED])
    assert len(rejected) == 1  # the proposal that would have exceeded the budget


def test_failing_runner_does_not_stop_the_loop(store):
    res = autopilot(store, "ap", "random", budget=1e9, max_trials=6, runner=SynthRunner(fail_every=2), seed=2)
    assert len(res.failed) == 3 and len(res.done) == 3
    failed = store.trials("ap", [TrialState.FAILED])
    assert len(failed) == 3 and all("synthetic failure" in (t.reason or "") for t in failed)


def test_max_trials_and_batches(store):
    res = autopilot(store, "ap", "random", budget=1e9, max_trials=5, batch=2, runner=SynthRunner())
    assert len(res.done) == 5


def test_trajectory_shape(store):
    autopilot(store, "ap", "hyperband", budget=30.0, runner=SynthRunner(), seed=3)
    traj = trajectory(store, "ap")
    assert traj and all(KEYS <= set(e) for e in traj)
    cum = [e["cumulative_cost"] for e in traj]
    assert cum == sorted(cum) and cum[-1] == pytest.approx(sum(e["cost"] for e in traj))
    assert all(e["incumbent_weights"] is not None for e in traj)
    # the synthetic runner knows the truth: autopilot stored it with each incumbent
    assert all(e.get("incumbent_true") is not None for e in traj)
    json.dumps(traj)


def test_cli_propose_and_trajectory(store, tmp_path):
    from typer.testing import CliRunner

    from engine.cli import app

    autopilot(store, "ap", "random", budget=20.0, runner=SynthRunner())
    r = CliRunner().invoke(app, ["propose", "--db", str(store.path), "--study", "ap", "--strategy", "random",
                                 "-n", "2", "--json"])
    assert r.exit_code == 0, r.output
    props = json.loads(r.output)
    assert len(props) == 2 and all(p["state"] == "proposed" and p["strategy"] == "random" for p in props)
    r = CliRunner().invoke(app, ["trajectory", "--db", str(store.path), "--study", "ap", "--json"])
    assert r.exit_code == 0, r.output
    traj = json.loads(r.output)
    assert len(traj) == 2 and KEYS <= set(traj[0])


def test_model_incumbent_carries_its_std(store):
    """A model's incumbent comes with the model's std (few runs: an extrapolation says so);
    an observed one has none."""
    autopilot(store, "ap", "mfms-bo", budget=1e9, max_trials=9, runner=SynthRunner(), seed=4)
    traj = trajectory(store, "ap")
    model = [e for e in traj if e["incumbent_source"] == "model"]
    assert model, "mfms-bo fits its GP after K + 2 runs"
    events = {int(t): json.loads(d) for t, d, k in store.events("ap")[["trial_id", "detail", "kind"]].itertuples(
        index=False) if k == "incumbent"}
    for e in model:
        assert e["incumbent_std"] == pytest.approx(events[e["trial_id"]]["pred_std"]) and e["incumbent_std"] > 0
    assert all(e["incumbent_std"] is None for e in traj if e["incumbent_source"] == "observed")
