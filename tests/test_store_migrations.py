"""Migrations: a database at an older schema version opens with Store, is migrated to the
latest version, keeps its data, and the new columns work.

Version 1 is frozen here as SQL text (what migration 1 created when files of that version were
written), not rebuilt from ``MIGRATIONS``: a migration edited in place would change what the
code builds but not the files users already have, and only a frozen copy notices."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from engine.config import config_from_dict
from engine.errors import MixplanError
from engine.records import Checkpoint, RunResult, TrialState
from engine.store import Store
from engine.store.schema import LATEST_VERSION, MIGRATIONS


#: The schema a version-1 database has, as created by migration 1 (frozen copy; never edit).
V1_SCHEMA = [
    """CREATE TABLE schema_version (
           version INTEGER NOT NULL,
           description VARCHAR NOT NULL,
           applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    """CREATE TABLE studies (
           study_id INTEGER PRIMARY KEY,
           name VARCHAR NOT NULL UNIQUE,
           config_json VARCHAR NOT NULL,
           data_version BIGINT NOT NULL DEFAULT 0,
           created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    """CREATE TABLE domains (
           study_id INTEGER NOT NULL,
           role VARCHAR NOT NULL,
           name VARCHAR NOT NULL,
           position INTEGER NOT NULL)""",
    """CREATE TABLE trials (
           trial_id BIGINT PRIMARY KEY,
           study_id INTEGER NOT NULL,
           run_id VARCHAR NOT NULL,
           state VARCHAR NOT NULL,
           model_params BIGINT NOT NULL,
           steps BIGINT,
           tokens DOUBLE,
           source VARCHAR NOT NULL,
           strategy VARCHAR,
           acq_value DOUBLE,
           pred_mean DOUBLE,
           pred_std DOUBLE,
           cost DOUBLE,
           reason VARCHAR,
           seed BIGINT,
           created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
           updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    """CREATE TABLE mixtures (
           trial_id BIGINT NOT NULL,
           domain VARCHAR NOT NULL,
           weight DOUBLE NOT NULL)""",
    """CREATE TABLE checkpoints (
           checkpoint_id BIGINT PRIMARY KEY,
           trial_id BIGINT NOT NULL,
           steps BIGINT,
           tokens DOUBLE,
           cost DOUBLE,
           created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    """CREATE TABLE checkpoint_values (
           checkpoint_id BIGINT NOT NULL,
           name VARCHAR NOT NULL,
           value DOUBLE NOT NULL)""",
    """CREATE TABLE events (
           event_id BIGINT PRIMARY KEY,
           study_id INTEGER,
           trial_id BIGINT,
           kind VARCHAR NOT NULL,
           actor VARCHAR NOT NULL,
           detail VARCHAR,
           created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    "INSERT INTO schema_version (version, description) VALUES "
    "(1, 'initial schema: studies, domains, trials, mixtures, checkpoints, values, events')",
]


def _catalog(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Every table's columns (name, type, nullability, default, position) and constraints."""
    cols = con.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default, ordinal_position "
        "FROM information_schema.columns WHERE table_schema = 'main' ORDER BY ALL").fetchall()
    cons = con.execute("SELECT table_name, constraint_type, constraint_column_names::VARCHAR "
                       "FROM duckdb_constraints() WHERE schema_name = 'main' ORDER BY ALL").fetchall()
    return cols + cons


def _v1_database(path: Path) -> None:
    con = duckdb.connect(str(path))
    for sql in V1_SCHEMA:
        con.execute(sql)
    con.close()


def test_migration_1_still_builds_the_frozen_v1_schema(tmp_path: Path) -> None:
    """Editing migration 1 in place would leave existing v1 files unlike new ones: refused here."""
    _v1_database(tmp_path / "frozen.duckdb")
    con = duckdb.connect(str(tmp_path / "code.duckdb"))
    con.execute("BEGIN TRANSACTION")
    Store.migrate(con, up_to=1)
    con.execute("COMMIT")
    frozen = duckdb.connect(str(tmp_path / "frozen.duckdb"), read_only=True)
    assert _catalog(con) == _catalog(frozen)
    assert con.execute("SELECT version, description FROM schema_version").fetchall() == \
        frozen.execute("SELECT version, description FROM schema_version").fetchall()
    con.close()
    frozen.close()


def test_frozen_v1_migrated_equals_a_new_database(tmp_path: Path) -> None:
    """A v1 file brought up to date has exactly the schema of a file created today."""
    _v1_database(tmp_path / "old.duckdb")
    Store(tmp_path / "old.duckdb")
    Store(tmp_path / "new.duckdb")
    old = duckdb.connect(str(tmp_path / "old.duckdb"), read_only=True)
    new = duckdb.connect(str(tmp_path / "new.duckdb"), read_only=True)
    # columns added by a migration come after the original ones, so compare without positions
    strip = lambda rows: sorted(r[:5] if len(r) == 6 else r for r in rows)  # noqa: E731
    assert strip(_catalog(old)) == strip(_catalog(new))
    old.close()
    new.close()


def test_migrations_are_numbered_and_add_only() -> None:
    versions = [v for v, _, _ in MIGRATIONS]
    assert versions == list(range(1, LATEST_VERSION + 1))
    for _, _, statements in MIGRATIONS:
        assert not any("DROP" in s.upper() for s in statements)


def test_v1_database_is_migrated_with_data_intact(tmp_db: Path) -> None:
    cfg = config_from_dict({"name": "old", "domains": ["a", "b"]})
    _v1_database(tmp_db)  # the frozen v1 schema, not today's migration 1
    con = duckdb.connect(str(tmp_db))
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
    # migration 3: trials written before it are runs models fit on; validation runs stay out
    assert {t.purpose for t in store.trials("old", purpose=None)} == {"fit"}
    assert list(store.runs_frame("old", meta=True)["purpose"].unique()) == ["fit"]
    from engine.records import Proposal

    val = store.add_trials("old", [Proposal({"a": 0.5, "b": 0.5}, 1000000, steps=100, run_id="v1")],
                           state=TrialState.APPROVED, purpose="validation")[0]
    store.transition([val.trial_id], TrialState.QUEUED)
    store.complete_trial(val.trial_id, RunResult([Checkpoint(100, None, {"a": 2.0})]))
    assert "v1" not in set(store.runs_frame("old")["run_id"])
    assert set(store.runs_frame("old", purpose="validation")["run_id"]) == {"v1"}
    assert [s.validation_runs for s in store.list_studies()] == [1]
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


@pytest.mark.parametrize("tables", [["CREATE TABLE sales (id INTEGER, amount DOUBLE)"],
                                    ["CREATE TABLE studies (x INTEGER)", "CREATE VIEW v AS SELECT 1 AS one"]],
                         ids=["unrelated-table", "table-named-like-mixplan"])
def test_foreign_duckdb_database_is_refused_and_unchanged(tmp_db: Path, tables: list[str]) -> None:
    con = duckdb.connect(str(tmp_db))
    for sql in tables:
        con.execute(sql)
    table = "sales" if "sales" in tables[0] else "studies"
    con.execute(f"INSERT INTO {table} VALUES " + ("(1, 9.5)" if table == "sales" else "(7)"))

    def state(c: duckdb.DuckDBPyConnection) -> tuple:
        return _catalog(c), c.execute(f"SELECT * FROM {table}").fetchall()

    before = state(con)
    con.close()
    with pytest.raises(MixplanError, match=r"some other program .*no mixplan schema_version.*Pass --db"):
        Store(tmp_db)
    with pytest.raises(MixplanError, match="some other program"):
        Store(tmp_db, create=False)
    con = duckdb.connect(str(tmp_db), read_only=True)
    assert state(con) == before
    con.close()


@pytest.mark.parametrize("name", ["runs.csv", "runs.duckdb", "runs.parquet"])
def test_a_file_that_is_not_duckdb_is_refused(tmp_path: Path, name: str) -> None:
    """DuckDB itself opens an existing CSV as an in-memory database (writes would vanish) and
    calls a text file 'not a valid DuckDB database file' in a raw IOException."""
    p = tmp_path / name
    p.write_text("run_id,model_params\na,1\n")
    with pytest.raises(MixplanError, match=r"is not a DuckDB database.*Pass --db"):
        Store(p)
    assert p.read_text() == "run_id,model_params\na,1\n"
