"""The database schema and its migrations.

The schema is versioned: ``schema_version`` holds one row per applied migration. A migration
is a list of SQL statements applied in one transaction. DuckDB cannot DROP COLUMN on a table
that has an index, so migrations only ever add (tables, columns); a column that is no longer
used stays and is ignored.

Ids (study, trial, checkpoint, event) are assigned by the store inside its write transaction
as ``max(id) + 1``: only one process can hold the read-write connection at a time, so this is
race-free and lets bulk imports allocate thousands of ids without a round-trip each.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema: studies, domains, trials, mixtures, checkpoints, values, events",
        [
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
            # role: 'train' (w_*), 'eval' (loss_*), 'metric' (metric_*)
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
            # name is the run-table column: loss_<domain> or metric_<name>
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
        ],
    ),
    (
        2,
        "dispatch bookkeeping: job ids, attempts, wall time per checkpoint and trial",
        [
            "ALTER TABLE trials ADD COLUMN job_id VARCHAR",
            "ALTER TABLE trials ADD COLUMN attempts INTEGER DEFAULT 0",
            "ALTER TABLE trials ADD COLUMN wall_s DOUBLE",
            "ALTER TABLE checkpoints ADD COLUMN wall_s DOUBLE",
        ],
    ),
    (
        3,
        "trial purpose: 'fit' (models and strategies read it) or 'validation' (held out, never fitted on)",
        [
            "ALTER TABLE trials ADD COLUMN purpose VARCHAR DEFAULT 'fit'",
            "UPDATE trials SET purpose = 'fit' WHERE purpose IS NULL",
        ],
    ),
]

LATEST_VERSION: int = MIGRATIONS[-1][0]
