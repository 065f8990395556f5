"""One recommended mixture per study: the backtest's model, calibrated, the same in optimum,
export and the Python API; cached per data version; extrapolation stated."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from engine.config import config_from_dict
from engine.recommendation import Extrapolation, recommend
from engine.store import Store
from tests.test_models_dmsl import law_table

CANDIDATES = ("dmsl", "regmix")


@pytest.fixture
def law_db(tmp_path):
    db = tmp_path / "runs.duckdb"
    store = Store(db)
    store.create_study(config_from_dict({
        "name": "law", "domains": ["web", "code", "books"], "objective": "loss_x", "tokens_per_step": 4096,
        "scales": [{"model_params": s, "steps": [8000]} for s in (1_000_000, 3_000_000, 10_000_000)],
        "target": {"model_params": 30_000_000, "steps": 8000}}))
    store.import_runs("law", law_table(sizes=(1e6, 3e6, 10e6), n_mix=10))
    return db


def _cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_recommendation_is_the_backtest_winner_at_the_target_and_says_how_far(law_db):
    store = Store(law_db)
    rec = recommend(store, "law", candidates=CANDIDATES)
    assert rec.model == "dmsl" and "held-out level" in rec.reason
    assert sum(rec.weights.values()) == pytest.approx(1.0)
    assert rec.model_params == 30_000_000 and rec.pred_std >= rec.pred_std_raw > 0
    ext = rec.extrapolation
    assert ext.size_ratio == pytest.approx(3.0) and ext.beyond and ext.backtest_ratio == pytest.approx(10 / 3)
    assert "3x the largest model size run (10M)" in ext.describe()
    assert rec.calibration["fitted"] is True
    # cached: a second call reads the cache (no fitting) and returns the same answer
    import engine.recommendation as R

    def boom(*a, **k):
        raise AssertionError("recomputed although the data did not change")

    orig, R.compute_recommendation = R.compute_recommendation, boom
    try:
        assert recommend(store, "law", candidates=CANDIDATES).weights == rec.weights
    finally:
        R.compute_recommendation = orig
    # new data: recomputed
    more = law_table(sizes=(10e6,), n_mix=2, seed=9)
    more["run_id"] = "extra-" + more["run_id"]
    store.import_runs("law", more)
    assert recommend(store, "law", candidates=CANDIDATES).data_version != rec.data_version


@pytest.mark.slow
def test_optimum_export_and_api_name_the_same_mixture(law_db):
    store = Store(law_db)
    rec = recommend(store, "law")
    r = _cli("optimum", "--study", "law", "--db", str(law_db), "--model-params", "3e7", "--steps", "8000", "--json")
    assert r.returncode == 0, r.stderr
    opt = json.loads(r.stdout)
    assert opt["weights"] == pytest.approx(rec.weights) and opt["model"] == rec.model and opt["recommended"]
    assert "extrapolation" in opt and "3x" in opt["extrapolation"]
    r = _cli("export", "--study", "law", "--db", str(law_db), "--format", "json")
    assert r.returncode == 0, r.stderr
    ex = json.loads(r.stdout)
    assert ex["weights"] == pytest.approx(rec.weights, abs=1e-6)
    assert ex["provenance"]["model"] == rec.model and ex["provenance"]["recommended"] is True
    assert "3x" in ex["provenance"]["extrapolation"]
    # the human-readable optimum says it is an extrapolation and why this model
    r = _cli("optimum", "--study", "law", "--db", str(law_db), "--model-params", "3e7", "--steps", "8000")
    assert "an extrapolation" in r.stdout and "why this model" in r.stdout
    # an explicit model is calibrated too, and a query beyond the runs says so
    q = law_db.parent / "q.csv"
    q.write_text("w_web,w_code,w_books,model_params,steps\n0.3,0.3,0.4,30000000,8000\n0.3,0.3,0.4,3000000,8000\n")
    out = law_db.parent / "p.csv"
    r = _cli("predict", "--study", "law", "--db", str(law_db), "--model", "dmsl", "--query", str(q), "--out", str(out))
    assert r.returncode == 0, r.stderr and "3x the largest run" in r.stdout
    import pandas as pd

    p = pd.read_csv(out)
    assert p.loc[0, "pred_std"] > p.loc[0, "pred_std_uncalibrated"] and p.loc[0, "size_ratio"] == pytest.approx(3)
    assert p.loc[1, "pred_std"] == pytest.approx(p.loc[1, "pred_std_uncalibrated"])


def test_explored_bounds_keep_the_optimum_near_the_runs():
    from engine.models.auto import narrow_to_explored

    explored = np.array([[0.1, 0.5], [0.1, 0.6], [0.2, 0.8]])
    b = narrow_to_explored(explored, np.array([(0, 1), (0, 1), (0.0, 0.5)]))
    np.testing.assert_allclose(b, [(0.0, 0.6), (0.0, 0.7), (0.1, 0.5)])
    # a box that holds no mixture falls back to the given bounds
    user = np.array([(0.0, 0.3), (0.0, 0.3), (0.0, 0.35)])
    np.testing.assert_allclose(narrow_to_explored(np.array([[0, .2], [0, .2], [0, .2]]), user), user)


def test_extrapolation_within_the_runs_says_so():
    e = Extrapolation(size_ratio=1.0, length_ratio=1.0, largest_size=1_000_000, longest=500.0)
    assert not e.beyond and "within the observed runs" in e.describe()
    e = Extrapolation(size_ratio=1.0, length_ratio=3.0, largest_size=1_000_000, longest=500.0, backtestable=False)
    assert "3x the longest run (500)" in e.describe() and "No backtest" in e.describe()


def test_one_size_study_is_recommended_without_calibration(tmp_path):
    store = Store(tmp_path / "r.duckdb")
    store.create_study(config_from_dict({"name": "one", "domains": ["web", "code", "books"], "objective": "loss_x",
                                         "target": {"model_params": 30_000_000, "steps": 8000}}))
    store.import_runs("one", law_table(sizes=(3e6,), n_mix=12))
    rec = recommend(store, "one", candidates=CANDIDATES)
    assert rec.model == "dmsl" and "one model size" in rec.reason
    assert rec.calibration["fitted"] is False and rec.pred_std == rec.pred_std_raw
    assert "No backtest across sizes" in rec.extrapolation.describe()


def test_propose_says_how_far_the_target_lies_beyond_the_runs(law_db):
    r = _cli("propose", "--study", "law", "--db", str(law_db), "--strategy", "random", "-n", "1")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())  # wrapped to the terminal
    assert "The target is an extrapolation: 3x the largest model size run (10M)" in text
    assert "`mixplan backtest` measures" in text and "No backtest" not in text
