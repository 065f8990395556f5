"""The app's queries: latest_checkpoints is runs_frame's last row per run; states filter."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.records import Checkpoint, Proposal, TrialState
from engine.runtable import read_run_table
from engine.store import Store


def test_latest_checkpoints_match_runs_frame(tmp_db: Path, data_dir: Path) -> None:
    store = Store(tmp_db)
    table, _ = read_run_table(data_dir / "runs_checkpoints.csv")
    store.import_runs("q", table)
    (t,) = store.add_trials("q", [Proposal({"web": 0.2, "code": 0.3, "books": 0.5}, 1_000_000, steps=300)])
    store.approve("q", [t.trial_id])
    store.transition([t.trial_id], TrialState.QUEUED)
    store.start_trial(t.trial_id)
    store.record_checkpoints(t.trial_id, [Checkpoint(300, None, {"web": 2.0, "code": 2.0, "books": 2.0}),
                                          Checkpoint(None, 5e6, {"web": 1.9, "code": 1.9, "books": 1.9})])
    full = store.runs_frame("q", meta=True)
    latest = store.latest_checkpoints("q")
    expect = full.groupby("trial_id", sort=False).tail(1).reset_index(drop=True)
    pd.testing.assert_frame_equal(latest, expect)
    assert list(latest["run_id"]) == ["a", "b", "c", t.run_id]
    assert list(latest["steps"].astype("float")[:3]) == [400.0, 200.0, 800.0]
    done = store.runs_frame("q", states=[TrialState.DONE])
    assert len(done) == 9 and len(store.runs_frame("q", states=[TrialState.RUNNING])) == 2


def test_bench_store_smoke() -> None:
    import json

    from typer.testing import CliRunner

    from engine.cli import app

    r = CliRunner().invoke(app, ["bench", "store", "--rows", "400", "--repeats", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["rows"] == 400 and out["runs"] == 20
    names = {t["name"] for t in out["timings"]}
    assert {"import (store)", "runs_frame", "latest_checkpoints", "list_studies", "trials_frame"} <= names
