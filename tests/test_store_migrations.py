"""Migrations: a database at an older schema version opens with Store, is migrated to the
latest version, keeps its data, and the new columns work."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from engine.config import config_from_dict
from engine.errors import MixplanError
from engine.records import Checkpoint, RunResult, TrialState
from engine.store import Store
from engine.store.schema import LATEST_VERSION, MIGRATIONS


def test_migrations_are_numbered_and_add_only() -> None:
    versions = [v for v, _, _ in MIGRATIONS]
    assert versions == list(range(1, LATEST_VERSION + 1))
    for _, _, statements in MIGRATIONS:
        assert not any("DROP" in s.upper() for s in statements)


def test_v1_database_is_migrated_with_data_intact(tmp_db: Path) -> None:
    cfg = config_from_dict({"name": "old", "domains": ["a", "b"]})
    con = duckdb.connect(str(tmp_db))
    con.execute("BEGIN TRANSACTION")
    assert Store.migrate(con, up_to=1) == [1]
    con.execute("COMMIT")
    import json

    con.execute("INSERT INTO studies (study_id, name, config_json) VALUES (1, 'old', ?)", [json.dumps(cfg.to_dict())])
    con.execute("INSERT INTO domains VALUES (1, 'train', 'a', 0), (1, 'train', 'b', 1), (1, 'eval', 'a', 0)")
    con.execute("INSERT INTO trials (trial_id, study_id, run_id, state, model_params, steps, tokens, source) "
                "VALUES (1, 1, 'r1', 'done', 1000000, 200, NULL, 'import'), "
                "(2, 1, 'r2', 'approved', 1000000, 100, NULL, 'manual')")
    con.execute("INSERT INTO mixtures VALUES (1, 'a', 0.3), (1, 'b', 0.7), (2, 'a', 0.5), (2, 'b', 0.5)")
    con.execute("INSERT INTO checkpoints (checkpoint_id, trial_id, steps, tokens, cost) VALUES "
                "(1, 1, 100, NULL, 1.0), (2, 1, 200, NULL, 2.0)")
    con.execute("INSERT INTO checkpoint_values VALUES (1, 'loss_a', 3.0), (2, 'loss_a', 2.5)")
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'trials'").fetchall()}
    assert "job_id" not in cols
    con.close()

    store = Store(tmp_db)
    assert store.schema_version() == LATEST_VERSION
    runs = store.runs_frame("old")
    assert list(runs["run_id"]) == ["r1", "r1"] and list(runs["loss_a"]) == [3.0, 2.5]
    assert list(runs["w_a"]) == [0.3, 0.3]
    t2 = store.get_trial(2)
    assert t2.state == TrialState.APPROVED and t2.attempts == 0 and t2.job_id is None
    # the columns migration 2 added are usable
    store.transition([2], TrialState.QUEUED)
    store.start_trial(2, job_id="slurm-7")
    store.complete_trial(2, RunResult([Checkpoint(100, None, {"a": 2.8}, wall_s=4.5)], wall_s=5.0))
    t2 = store.get_trial(2)
    assert t2.job_id == "slurm-7" and t2.attempts == 1
    meta = store.runs_frame("old", meta=True)
    assert meta.loc[meta["trial_id"] == 2, "wall_s"].tolist() == [4.5]
    # opening again changes nothing
    assert Store(tmp_db).schema_version() == LATEST_VERSION
    con = duckdb.connect(str(tmp_db), read_only=True)
    assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()] == \
        list(range(1, LATEST_VERSION + 1))
    con.close()


def test_newer_schema_is_refused(tmp_db: Path) -> None:
    Store(tmp_db)
    con = duckdb.connect(str(tmp_db))
    con.execute("INSERT INTO schema_version (version, description) VALUES (?, 'from the future')",
                [LATEST_VERSION + 1])
    con.close()
    with pytest.raises(MixplanError, match="newer than this mixplan"):
        Store(tmp_db)
