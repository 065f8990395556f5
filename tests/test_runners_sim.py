"""The mfms-sim and table runners (the simulator tests skip where ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.records import Trial, TrialState
from engine.runners.base import RunFailed

WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "mfms-sim" / "weights.json"
DOMAINS = ["wikipedia", "stackexchange", "github", "arxiv", "book"]


def _trial(w, mp, steps, tid=1):
    return Trial(tid, "s", f"t{tid}", TrialState.RUNNING, dict(w), mp, steps, None, "strategy", None, None,
                 None, None, None, None, None)


@pytest.fixture
def sim_runner():
    if not WEIGHTS.exists():
        pytest.skip(f"simulator weights not found at {WEIGHTS}")
    from engine.runners.mfms_sim import MFMSSimRunner

    return MFMSSimRunner(WEIGHTS)


def test_mfms_sim_runner_check_values(sim_runner, tmp_path):
    uni = {d: 0.2 for d in DOMAINS}
    res = sim_runner.run(_trial(uni, 20_000_000, 6000), tmp_path)
    assert len(res.checkpoints) == 60 and res.checkpoints[0].steps == 100 and res.checkpoints[-1].steps == 6000
    last = res.checkpoints[-1]
    assert last.losses["stackexchange"] == pytest.approx(1.4215, abs=1e-4)
    assert last.losses["github"] == pytest.approx(1.1517, abs=1e-4)
    assert last.metrics["hellaswag"] == pytest.approx(0.2597, abs=1e-4)
    assert res.cost == pytest.approx(0.012963 * 60)
    assert sim_runner.true_value(uni, 1_000_000_000, 19500, "loss_stackexchange") == pytest.approx(0.9044, abs=1e-4)
    assert sim_runner.true_value(uni, 1_000_000_000, 19500, "metric_arc_easy") == pytest.approx(0.4671, abs=1e-4)


def test_mfms_sim_runner_noise_and_errors(sim_runner, tmp_path):
    from engine.runners.mfms_sim import MFMSSimRunner

    noisy = MFMSSimRunner(WEIGHTS, noise=0.01, seed=1)
    uni = {d: 0.2 for d in DOMAINS}
    a = noisy.run(_trial(uni, 60_000_000, 500), tmp_path).checkpoints[-1].losses["c4"]
    b = sim_runner.run(_trial(uni, 60_000_000, 500), tmp_path).checkpoints[-1].losses["c4"]
    assert a != b and abs(a - b) < 0.1
    with pytest.raises(RunFailed):
        sim_runner.run(_trial(uni, 33_000_000, 500), tmp_path)
    with pytest.raises(RunFailed):
        sim_runner.run(_trial(uni, 60_000_000, 50_000), tmp_path)


def test_mfms_study_config_and_registry(sim_runner):
    from engine.runners.mfms_sim import mfms_study_config
    from engine.runners.registry import make_runner

    cfg = mfms_study_config("x", path=str(WEIGHTS))
    assert cfg.target.model_params == 1_000_000_000 and cfg.target.steps == 19500
    assert cfg.cost(1_000_000_000, steps=19500) == pytest.approx(195.0)
    assert cfg.cost(20_000_000, steps=100) == pytest.approx(0.012963)
    assert make_runner(cfg).kind == "mfms-sim"


def test_table_runner_nearest_and_exact(tmp_path):
    from engine.runners.table import TableRunner

    rows = []
    for rid, w in (("a", [0.7, 0.3]), ("b", [0.2, 0.8])):
        for st in (100, 200, 300):
            rows.append({"run_id": rid, "model_params": 1000, "steps": st, "w_x": w[0], "w_y": w[1],
                         "loss_x": 3.0 - st / 1000 - w[0], "cost": st * 1.0})
    table = pd.DataFrame(rows)
    r = TableRunner(table)
    res = r.run(_trial({"x": 0.65, "y": 0.35}, 1000, 200), tmp_path)
    assert res.info["table_run"] == "a" and res.info["distance"] == pytest.approx(0.1)
    assert [c.steps for c in res.checkpoints] == [100, 200] and res.cost == 200.0
    assert r.true_value({"x": 0.65, "y": 0.35}, 1000, 200, "loss_x") is None  # not an exact match
    assert r.true_value({"x": 0.7, "y": 0.3}, 1000, 200, "loss_x") == pytest.approx(3.0 - 0.2 - 0.7)
    exact = TableRunner(table, match="exact")
    with pytest.raises(RunFailed):
        exact.run(_trial({"x": 0.65, "y": 0.35}, 1000, 200), tmp_path)
    with pytest.raises(RunFailed):
        r.run(_trial({"x": 0.5, "y": 0.5}, 2000, 200), tmp_path)
    assert np.isfinite(exact.run(_trial({"x": 0.2, "y": 0.8}, 1000, 300), tmp_path).checkpoints[-1].losses["x"])
