"""`mixplan bench optimize`: speed-up arithmetic (fast) and a tiny end-to-end run (slow)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from engine.bench.optimize import speedups, summarise

WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "mfms-sim" / "weights.json"


def _traj(name, seed, costs, regrets, init=100.0):
    return [{"objective": "o", "strategy": name, "seed": seed, "iteration": i, "cost": c, "total_cost": init + c,
             "regret": r} for i, (c, r) in enumerate(zip(costs, regrets))]


def test_speedup_definitions():
    rows = (_traj("mfms-bo", 0, [0, 1, 2, 3], [0.5, 0.2, 0.05, 0.01])
            + _traj("random", 0, [0, 200, 400, 600], [0.5, 0.3, 0.05, 0.05])
            + _traj("bo", 0, [0, 200, 400], [0.5, 0.1, 0.001]))
    su = speedups(pd.DataFrame(rows)).set_index("baseline")
    # random reached its final regret 0.05 at 400 (500 incl. the initial design); mfms-bo at 2 (102)
    assert su.loc["random", "speedup"] == pytest.approx(500 / 102)
    assert su.loc["random", "speedup_own"] == pytest.approx(400 / 2)
    assert bool(su.loc["random", "reached"])
    # bo's final regret is never reached by mfms-bo: a loss (0), flagged
    assert su.loc["bo", "speedup"] == 0.0 and not bool(su.loc["bo", "reached"])
    summ = summarise(su.reset_index(), pd.DataFrame(rows)).set_index("baseline")
    assert summ.loc["random", "speedup_median"] == pytest.approx(500 / 102)
    assert summ.loc["random", "mfms_reached"] == 1


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(tmp_path):
    if not WEIGHTS.exists():
        pytest.skip(f"simulator weights not found at {WEIGHTS}")
    from engine.bench.optimize import run_benchmark
    from engine.bench.optimize_report import format_summary

    res = run_benchmark(["loss_github"], ["mfms-bo", "random"], 1, tmp_path, budget=400.0, max_iter=3,
                        n_init=5, workers=1, weights_path=str(WEIGHTS), measure_latency=False,
                        log=lambda *_: None)
    runs = pd.read_csv(tmp_path / "optimize_runs.csv")
    assert set(runs["strategy"]) == {"mfms-bo", "random"}
    assert (runs["regret"] >= -1e-9).all() and runs["regret"].notna().all()
    assert (tmp_path / "optimize_summary.csv").exists() and (tmp_path / "optimize_regret.html").exists()
    assert res["summary"] and math.isfinite(res["summary"][0]["speedup_median"])
    assert "random" in format_summary(res)
