"""The run store: every study, trial, checkpoint and event of mixplan, in one DuckDB file.

Only this module talks SQL. Every public method opens a connection, does one short
transaction and closes it (see :mod:`engine.store.connection`), so the app, the CLI and
worker processes can share a file. Writes are all-or-nothing: an import, a batch of
transitions or a finished trial either lands whole or leaves the database as it was, and a
committed write survives ``kill -9`` (DuckDB replays its WAL).

Run tables come out in the format of :mod:`engine.runtable.schema` (one row per checkpoint),
so models, exports and the app all read the same frame.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import numpy as np
import pandas as pd

from engine.config import StudyConfig, config_from_dict
from engine.errors import MixplanError, NotFoundError, StateError, ValidationError
from engine.mixture import validate_weights
from engine.outfile import remove_stale_temps, temp_path
from engine.records import (
    EDITABLE_STATES,
    PURPOSES,
    TRANSITIONS,
    Checkpoint,
    Proposal,
    RunResult,
    StudySummary,
    Trial,
    TrialState,
)
from engine.runtable import schema as rt
from engine.runtable.reader import Locator
from engine.store.base import STRATEGY_STATE, checked_proposal
from engine.store.connection import _file_lock, connect, transaction
from engine.store.schema import LATEST_VERSION, MIGRATIONS

if TYPE_CHECKING:  # pragma: no cover
    from engine.study_edit import ConfigEdit, StudyFacts

DEFAULT_DB = "runs.duckdb"
T = TypeVar("T")
_TRIAL_COLUMNS = (
    "trial_id, run_id, state, model_params, steps, tokens, source, strategy, acq_value, "
    "pred_mean, pred_std, cost, reason, seed, job_id, attempts, purpose"
)


def _purpose_sql(purpose: str | None, alias: str = "t") -> str:
    """`` AND t.purpose = '...'`` for one purpose (records.PURPOSES), nothing for None (all)."""
    if purpose is None:
        return ""
    if purpose not in PURPOSES:
        raise ValidationError(f"unknown trial purpose {purpose!r}.", fix=f"use one of {', '.join(PURPOSES)}.")
    return f" AND {alias}.purpose = {_lit(purpose)}"


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    """A quoted SQL string literal (names reaching here were validated, this is belt and braces)."""
    return "'" + value.replace("'", "''") + "'"


def _first(rows: list[Any]) -> Any:
    """First row or None (DuckDB 2 wants results read to the end, so we never fetchone)."""
    return rows[0] if rows else None


def _none(v: Any) -> Any:
    """NaN/NA -> None for the database."""
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v.item() if isinstance(v, np.generic) else v


#: the side files of a database (and of a database being built) besides the file itself
_SIDE_SUFFIXES = (".wal", ".lock", ".gate")


def remove_stale_builds(path: str | Path) -> list[Path]:
    """Delete the hidden files :meth:`Store.create_with` built a new database in (and their
    ``.wal``/lock files) whose process is gone: what an import into a new database leaves when
    it is killed (``kill -9`` skips its clean-up). Returns the files removed."""
    return remove_stale_temps(Path(path), "new", _SIDE_SUFFIXES)


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    study: str
    runs: int
    checkpoints: int
    created_study: bool
    renormalised_rows: int = 0


class Store:
    """A mixplan database file. Cheap to construct; holds no open connection."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, busy_timeout_s: float = 60.0, create: bool = True) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        remove_stale_builds(self.path)
        if self.path.is_dir():
            raise MixplanError(f"{self.path} is a folder, not a database file. Pass --db with a file, e.g. "
                               f"{self.path / DEFAULT_DB} (a new file name starts a database).")
        if not self.path.exists():
            if not create:
                raise NotFoundError(f"no database at {self.path}. Create one with `mixplan study create` "
                                    "or `mixplan import`, or pass --db PATH.")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ensure_schema()

    @classmethod
    def create_with(cls, path: str | Path, build: Callable[["Store"], T], *, busy_timeout_s: float = 60.0) -> T:
        """Make a new database at ``path`` holding what ``build(store)`` wrote, or no file at all.

        Why: a command that creates the database (``mixplan import`` into a new file) and then
        fails must leave nothing behind, yet must never delete a file: between its check that
        ``path`` did not exist and its failure, another process may have created ``path`` and
        written to it. So the database is built in a hidden file beside ``path`` and put in
        place only once ``build`` has returned, by a hard link, which refuses to replace an
        existing file (under the store's exclusive lock, so no mixplan process is half-way
        through creating ``path``). If another process created ``path`` meanwhile, nothing is
        written and :class:`~engine.errors.MixplanError` says to run the command again. The
        hidden file goes in every case. Returns what ``build`` returned."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(path)
        tmp = temp_path(path, "new")
        try:
            store = cls(tmp, busy_timeout_s=busy_timeout_s)
            result = build(store)
            with connect(tmp, write=True, busy_timeout_s=busy_timeout_s) as con:
                con.execute("CHECKPOINT")  # everything in the file itself, no WAL beside it
            if tmp.with_name(tmp.name + ".wal").exists():
                raise MixplanError(f"could not finish the new database {path} (its write-ahead log stayed); "
                                   "nothing was written. Run the command again.")
            taken = MixplanError(f"another process created the database {path} while this command ran; nothing "
                                 "was written. Run the command again (it will add to that database).")
            with _file_lock(path, write=True, deadline=time.monotonic() + busy_timeout_s,
                            busy_timeout_s=busy_timeout_s):
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise taken from None
                except OSError:  # a file system without hard links: under the lock, check, then rename
                    if path.exists():
                        raise taken from None
                    os.rename(tmp, path)
            return result
        finally:
            for p in (tmp, *(tmp.with_name(tmp.name + ext) for ext in _SIDE_SUFFIXES)):
                p.unlink(missing_ok=True)

    # ---- connections and schema ----------------------------------------------------------
    def _read(self):
        return connect(self.path, write=False, busy_timeout_s=self.busy_timeout_s)

    def _write(self):
        return transaction(self.path, busy_timeout_s=self.busy_timeout_s)

    def schema_version(self) -> int:
        """The schema version stored in the file (0 for a new file)."""
        if not self.path.exists():
            return 0
        with self._read() as con:
            return self._version(con)

    @staticmethod
    def _version(con: duckdb.DuckDBPyConnection) -> int:
        has = _first(con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        ).fetchall())[0]
        if not has:
            return 0
        v = _first(con.execute("SELECT max(version) FROM schema_version").fetchall())[0]
        return int(v or 0)

    def _ensure_schema(self) -> None:
        # DuckDB opens an existing CSV or Parquet file given as the database as an in-memory
        # database holding it as a view: everything written there would be lost. Its own files
        # carry the magic bytes 'DUCK' at offset 8.
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open("rb") as fh:
                if fh.read(12)[8:12] != b"DUCK":
                    raise MixplanError(self._not_duckdb())
        try:
            if self.path.exists() and self.path.stat().st_size > 0 and self.schema_version() == LATEST_VERSION:
                return
            with self._write() as con:
                self.migrate(con, where=str(self.path))
        except duckdb.IOException as exc:
            if "not a valid duckdb database" not in str(exc).lower():
                raise MixplanError(f"cannot open the database {self.path} ({exc}). Pass --db with a file you can "
                                   "read and write (a new file name starts a database).") from exc
            raise MixplanError(self._not_duckdb()) from exc

    def _not_duckdb(self) -> str:
        return (f"{self.path} is not a DuckDB database, so not a mixplan database either (a run table goes in "
                "with `mixplan import FILE --study NAME`). Pass --db with a mixplan database, or a new file name "
                "to start one.")

    @staticmethod
    def migrate(con: duckdb.DuckDBPyConnection, up_to: int = LATEST_VERSION, *,
                where: str = "this database") -> list[int]:
        """Apply the migrations the file lacks, up to ``up_to``; returns the versions applied.

        A file with tables but no ``schema_version`` is some other program's DuckDB database:
        it is refused rather than given mixplan's tables (or failing half-way on a table name
        both use)."""
        current = Store._version(con)
        if current > LATEST_VERSION:
            raise MixplanError(f"this database has schema version {current}, newer than this mixplan "
                               f"understands ({LATEST_VERSION}). Upgrade mixplan to open it.")
        if current == 0:
            foreign = [r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema NOT IN "
                "('information_schema', 'pg_catalog') ORDER BY table_name").fetchall()]
            if foreign:
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
                raise MixplanError(f"{where} is a DuckDB database of some other program (tables {shown}; no "
                                   "mixplan schema_version), so mixplan leaves it alone. Pass --db with a mixplan "
                                   "database, or a new file name to start one.")
        applied = []
        for version, description, statements in MIGRATIONS:
            if current < version <= up_to:
                for sql in statements:
                    con.execute(sql)
                con.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)",
                            [version, description])
                applied.append(version)
        return applied

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def _next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
        return int(_first(con.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchall())[0])

    @staticmethod
    def _study_row(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, StudyConfig]:
        row = _first(con.execute("SELECT study_id, config_json FROM studies WHERE name = ?", [name]).fetchall())
        if row is None:
            names = [r[0] for r in con.execute("SELECT name FROM studies ORDER BY name").fetchall()]
            have = f"studies here: {', '.join(names)}" if names else "this database has no study yet"
            raise NotFoundError(f"no study named '{name}' ({have}). Create it with `mixplan study create "
                                "--config FILE` or `mixplan import FILE --study NAME`.")
        return int(row[0]), config_from_dict(json.loads(row[1]), source=f"study '{name}'", check_runner_keys=False)

    @staticmethod
    def _trial_row(con: duckdb.DuckDBPyConnection, trial_id: int) -> tuple:
        """(state, study_id, model_params, steps, tokens) of a trial, or NotFoundError."""
        row = _first(con.execute("SELECT state, study_id, model_params, steps, tokens FROM trials WHERE trial_id = ?",
                                 [int(trial_id)]).fetchall())
        if row is None:
            raise NotFoundError(f"no trial with id {trial_id}.")
        return row

    @staticmethod
    def _config_of(con: duckdb.DuckDBPyConnection, study_id: int) -> StudyConfig:
        """The config of the study with this id."""
        name = _first(con.execute("SELECT name FROM studies WHERE study_id = ?", [study_id]).fetchall())[0]
        return Store._study_row(con, name)[1]

    @staticmethod
    def _domains(con: duckdb.DuckDBPyConnection, study_id: int, role: str) -> list[str]:
        rows = con.execute("SELECT name FROM domains WHERE study_id = ? AND role = ? ORDER BY position",
                           [study_id, role]).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def _add_domains(con: duckdb.DuckDBPyConnection, study_id: int, role: str, names: Iterable[str]) -> None:
        have = Store._domains(con, study_id, role)
        for name in names:
            if name not in have:
                con.execute("INSERT INTO domains VALUES (?, ?, ?, ?)", [study_id, role, name, len(have)])
                have.append(name)

    @staticmethod
    def _event(con: duckdb.DuckDBPyConnection, study_id: int | None, trial_id: int | None, kind: str,
               actor: str, detail: dict[str, Any] | None = None) -> None:
        eid = Store._next_id(con, "events", "event_id")
        con.execute(
            "INSERT INTO events (event_id, study_id, trial_id, kind, actor, detail) VALUES (?, ?, ?, ?, ?, ?)",
            [eid, study_id, trial_id, kind, actor, json.dumps(detail or {}, default=str)],
        )

    @staticmethod
    def _touch(con: duckdb.DuckDBPyConnection, study_id: int) -> None:
        con.execute("UPDATE studies SET data_version = data_version + 1 WHERE study_id = ?", [study_id])

    # ---- studies -------------------------------------------------------------------------
    def create_study(self, config: StudyConfig, *, actor: str = "user") -> None:
        """Register a study. Fails if the name is taken."""
        with self._write() as con:
            self._create_study(con, config, actor)

    def _create_study(self, con: duckdb.DuckDBPyConnection, config: StudyConfig, actor: str) -> int:
        if _first(con.execute("SELECT 1 FROM studies WHERE name = ?", [config.name]).fetchall()):
            raise ValidationError(f"a study named '{config.name}' already exists.",
                                  fix=f"choose another name, import into the existing study, or change its config "
                                      f"with `mixplan study edit --study {config.name} --config PATCH.toml` (a patch "
                                      "holds only what changes).")
        sid = self._next_id(con, "studies", "study_id")
        con.execute("INSERT INTO studies (study_id, name, config_json) VALUES (?, ?, ?)",
                    [sid, config.name, json.dumps(config.to_dict())])
        self._add_domains(con, sid, "train", config.domains)
        if config.eval_domains:
            self._add_domains(con, sid, "eval", config.eval_domains)
        self._event(con, sid, None, "study_created", actor, {"config": config.to_dict()})
        return sid

    def get_config(self, study: str) -> StudyConfig:
        """The study's config."""
        with self._read() as con:
            return self._study_row(con, study)[1]

    def update_config(self, config: StudyConfig, *, actor: str = "user") -> None:
        """Replace a study's config (same name, same domains); bumps the data_version."""
        with self._write() as con:
            sid, old = self._study_row(con, config.name)
            if tuple(old.domains) != tuple(config.domains):
                raise ValidationError("a study's domains cannot change once created.",
                                      fix="create a new study for a different set of domains.")
            con.execute("UPDATE studies SET config_json = ? WHERE study_id = ?",
                        [json.dumps(config.to_dict()), sid])
            self._event(con, sid, None, "config_updated", actor, {"config": config.to_dict()})
            self._touch(con, sid)  # readers cache the config per data_version

    def edit_config(self, study: str, patch: dict[str, Any], *, source: str = "<patch>", actor: str = "user",
                    dry_run: bool = False) -> "ConfigEdit":
        """Apply a config patch to a study (``mixplan study edit``; :mod:`engine.study_edit`):
        validated like a new config and against the study's stored trials and results, in the
        same transaction as the write, so no import can slip in between the check and the
        change. Records a ``config_edited`` event with each change (old -> new). ``dry_run``
        checks and returns the edit without writing."""
        from engine.study_edit import plan_edit

        with self._write() as con:
            sid, old = self._study_row(con, study)
            edit = plan_edit(old, patch, self._study_facts(con, sid), source)
            if dry_run or not edit.changes:
                return edit
            new = edit.new
            con.execute("UPDATE studies SET config_json = ? WHERE study_id = ?", [json.dumps(new.to_dict()), sid])
            if tuple(new.domains) != tuple(old.domains):  # allowed only while the study has no trial
                con.execute("DELETE FROM domains WHERE study_id = ? AND role = 'train'", [sid])
                self._add_domains(con, sid, "train", new.domains)
            if new.eval_domains:
                self._add_domains(con, sid, "eval", new.eval_domains)
            self._event(con, sid, None, "config_edited", actor,
                        {"source": source, "changes": [c.to_dict() for c in edit.changes],
                         "notes": list(edit.notes)})
            self._touch(con, sid)
        return edit

    @staticmethod
    def _study_facts(con: duckdb.DuckDBPyConnection, sid: int) -> "StudyFacts":
        """What a config edit must not contradict: trials by state, stored checkpoints, the
        columns they measured, and how their steps relate to tokens."""
        from engine.study_edit import StudyFacts

        states = {s: int(n) for s, n in con.execute(
            "SELECT state, count(*) FROM trials WHERE study_id = ? GROUP BY state", [sid]).fetchall()}
        ck, both, lo, hi, ck_steps = _first(con.execute(
            "SELECT count(*), count(*) FILTER (WHERE c.steps IS NOT NULL AND c.tokens IS NOT NULL AND c.steps > 0), "
            "min(c.tokens / c.steps) FILTER (WHERE c.steps > 0), max(c.tokens / c.steps) FILTER (WHERE c.steps > 0), "
            "count(*) FILTER (WHERE c.steps IS NOT NULL) "
            "FROM checkpoints c JOIN trials t USING (trial_id) WHERE t.study_id = ?", [sid]).fetchall())
        trial_steps = _first(con.execute("SELECT count(*) FROM trials WHERE study_id = ? AND steps IS NOT NULL",
                                         [sid]).fetchall())[0]
        measured = tuple(sorted(r[0] for r in con.execute(
            "SELECT DISTINCT v.name FROM checkpoint_values v JOIN checkpoints c USING (checkpoint_id) "
            "JOIN trials t USING (trial_id) WHERE t.study_id = ?", [sid]).fetchall()))
        return StudyFacts(trials=sum(states.values()), states=states, checkpoints=int(ck), measured=measured,
                          with_steps=int(ck_steps) + int(trial_steps),
                          tokens_per_step_seen=(float(lo), float(hi)) if both else None)

    def study_names(self) -> list[str]:
        with self._read() as con:
            return [r[0] for r in con.execute("SELECT name FROM studies ORDER BY study_id").fetchall()]

    def list_studies(self) -> list[StudySummary]:
        """One summary per study: domains, runs (trials with checkpoints), checkpoints, runner kind."""
        with self._read() as con:
            rows = con.execute(
                """SELECT s.study_id, s.name, s.config_json,
                          (SELECT count(DISTINCT c.trial_id) FROM checkpoints c JOIN trials t USING (trial_id)
                            WHERE t.study_id = s.study_id AND t.purpose = 'fit'),
                          (SELECT count(*) FROM checkpoints c JOIN trials t USING (trial_id)
                            WHERE t.study_id = s.study_id AND t.purpose = 'fit'),
                          (SELECT count(DISTINCT c.trial_id) FROM checkpoints c JOIN trials t USING (trial_id)
                            WHERE t.study_id = s.study_id AND t.purpose = 'validation')
                   FROM studies s ORDER BY s.study_id"""
            ).fetchall()
            out = []
            for sid, name, cfg, runs, ckpts, val in rows:
                config = config_from_dict(json.loads(cfg), source=f"study '{name}'", check_runner_keys=False)
                out.append(StudySummary(name, self._domains(con, sid, "train"), int(runs), int(ckpts),
                                        config.runner.kind, int(val)))
            return out

    def data_version(self, study: str) -> int:
        """A counter bumped by every write to the study: a cache key for fitted models."""
        with self._read() as con:
            row = _first(con.execute("SELECT data_version FROM studies WHERE name = ?", [study]).fetchall())
            if row is None:
                self._study_row(con, study)
            return int(row[0])

    def study_domains(self, study: str) -> dict[str, list[str]]:
        """{'train': [...], 'eval': [...], 'metric': [...]} as registered."""
        with self._read() as con:
            sid, _ = self._study_row(con, study)
            return {role: self._domains(con, sid, role) for role in ("train", "eval", "metric")}

    # ---- imports -------------------------------------------------------------------------
    def import_runs(self, study: str, table: pd.DataFrame, *, source: str = "<table>",
                    config: StudyConfig | None = None, renormalised_rows: int = 0,
                    actor: str = "import", locate: Locator | None = None) -> ImportReport:
        """Add a validated run table (see :func:`engine.runtable.read_run_table`) to a study,
        creating the study (from ``config``, else from the table's columns) if needed.
        All-or-nothing. ``locate`` (the reader's :attr:`ImportNotes.locate`) lets an error found
        here (a run id the study already has) point at the file, line and column it came from."""
        wcols, lcols, mcols = rt.weight_columns(table), rt.loss_columns(table), rt.metric_columns(table)
        bad_id = rt.first_unsafe_run_id(table["run_id"].to_numpy(dtype=object)) if "run_id" in table else None
        if bad_id is not None:  # the reader refuses these; a frame may come from elsewhere
            i, problem = bad_id
            f, row, line, column = locate(i, "run_id") if locate is not None else (source, i + 1, None, "run_id")
            raise ValidationError(f"run_id {table['run_id'].iloc[i]!r} {problem}; a run id names the run's folder.",
                                  file=f, row=row, line=line, column=column, fix=rt.RUN_ID_FIX)
        domains = [c[2:] for c in wcols]
        evals = [c[len(rt.LOSS_PREFIX):] for c in lcols]
        metrics = [c[len(rt.METRIC_PREFIX):] for c in mcols]
        with self._write() as con:
            created = False
            if _first(con.execute("SELECT 1 FROM studies WHERE name = ?", [study]).fetchall()) is None:
                # a table's own cost column is in a unit of its own (contract 2: any unit); without
                # one, costs are 6 x params x tokens FLOPs (engine.costs.cost_unit)
                cfg = config or config_from_dict({"name": study, "domains": domains, "eval_domains": evals,
                                                  **({"cost_unit": "cost units"} if "cost" in table.columns
                                                     and table["cost"].notna().any() else {})}, source=source)
                self._create_study(con, cfg, actor)
                created = True
            sid, cfg = self._study_row(con, study)
            have = self._domains(con, sid, "train")
            if set(have) != set(domains):
                raise ValidationError(
                    f"the table's mixture domains {sorted(domains)} disagree with study '{study}' "
                    f"({sorted(have)}).", file=source,
                    fix="import into a study with the same domains, or use a new --study name.")
            have_eval = self._domains(con, sid, "eval")
            has_data = _first(con.execute("SELECT count(*) FROM checkpoints c JOIN trials t USING (trial_id) "
                                   "WHERE t.study_id = ?", [sid]).fetchall())[0]
            if have_eval and has_data and set(have_eval) != set(evals):
                raise ValidationError(
                    f"the table's loss columns {sorted(evals)} disagree with the evaluation domains of "
                    f"study '{study}' ({sorted(have_eval)}).", file=source,
                    fix="give the same loss_* columns, or use a new --study name.")
            self._add_domains(con, sid, "eval", evals)
            self._add_domains(con, sid, "metric", metrics)

            runs = table.groupby("run_id", sort=False)
            first = runs.head(1).reset_index(drop=True)
            existing = {r[0] for r in con.execute("SELECT run_id FROM trials WHERE study_id = ?", [sid]).fetchall()}
            clash = [r for r in first["run_id"] if r in existing]
            if clash:
                i = int(np.flatnonzero((table["run_id"] == clash[0]).to_numpy())[0])
                f, row, line, column = locate(i, "run_id") if locate is not None else (source, i + 1, None, "run_id")
                raise ValidationError(
                    f"run '{clash[0]}' already exists in study '{study}' ({len(clash)} run id(s) clash).",
                    file=f, row=row, line=line, column=column,
                    fix="give the runs new run_id values (`mixplan import --run-prefix P` puts P in front of "
                        "every id), or import into a new study.")

            t0 = self._next_id(con, "trials", "trial_id")
            trial_ids = np.arange(t0, t0 + len(first), dtype=np.int64)
            id_of_run = dict(zip(first["run_id"], trial_ids))
            last = runs.agg(
                {c: "max" for c in ("steps", "tokens", "cost") if c in table.columns}
            ).reindex(first["run_id"]) if any(c in table.columns for c in ("steps", "tokens", "cost")) else None

            def col(frame: pd.DataFrame | None, name: str, n: int) -> Any:
                if frame is None or name not in frame.columns:
                    return pd.Series([None] * n, dtype="object")
                return frame[name].to_numpy()

            n = len(first)
            trials_df = pd.DataFrame({
                "trial_id": trial_ids,
                "study_id": sid,
                "run_id": first["run_id"].astype(str).to_numpy(),
                "state": TrialState.DONE.value,
                "model_params": first["model_params"].astype("int64").to_numpy(),
                "steps": pd.array(col(last, "steps", n), dtype="Int64"),
                "tokens": pd.array(col(last, "tokens", n), dtype="Float64"),
                "source": "import",
                "cost": pd.array(col(last, "cost", n), dtype="Float64"),
                "reason": f"imported from {source}",
            })
            mix_df = first.melt(id_vars=["run_id"], value_vars=wcols, var_name="domain", value_name="weight")
            mix_df["trial_id"] = mix_df["run_id"].map(id_of_run).astype("int64")
            mix_df["domain"] = mix_df["domain"].str.slice(2)
            c0 = self._next_id(con, "checkpoints", "checkpoint_id")
            ck = pd.DataFrame({
                "checkpoint_id": np.arange(c0, c0 + len(table), dtype=np.int64),
                "trial_id": table["run_id"].map(id_of_run).astype("int64").to_numpy(),
                "steps": pd.array(col(table, "steps", len(table)), dtype="Int64"),
                "tokens": pd.array(col(table, "tokens", len(table)), dtype="Float64"),
                "cost": pd.array(col(table, "cost", len(table)), dtype="Float64"),
            })
            vals = table[lcols + mcols].copy()
            vals["checkpoint_id"] = ck["checkpoint_id"].to_numpy()
            vals = vals.melt(id_vars=["checkpoint_id"], var_name="name", value_name="value").dropna(subset=["value"])

            con.register("_imp_trials", trials_df)
            con.register("_imp_mix", mix_df[["trial_id", "domain", "weight"]])
            con.register("_imp_ck", ck)
            con.register("_imp_vals", vals[["checkpoint_id", "name", "value"]])
            try:
                con.execute("INSERT INTO trials (trial_id, study_id, run_id, state, model_params, steps, tokens, "
                            "source, cost, reason) SELECT trial_id, study_id, run_id, state, model_params, steps, "
                            "tokens, source, cost, reason FROM _imp_trials")
                con.execute("INSERT INTO mixtures SELECT trial_id, domain, weight FROM _imp_mix")
                con.execute("INSERT INTO checkpoints (checkpoint_id, trial_id, steps, tokens, cost) "
                            "SELECT checkpoint_id, trial_id, steps, tokens, cost FROM _imp_ck")
                con.execute("INSERT INTO checkpoint_values SELECT checkpoint_id, name, value FROM _imp_vals")
            finally:
                for v in ("_imp_trials", "_imp_mix", "_imp_ck", "_imp_vals"):
                    con.unregister(v)
            self._event(con, sid, None, "import", actor, {
                "source": source, "runs": n, "checkpoints": len(table), "renormalised_rows": renormalised_rows})
            self._touch(con, sid)
        return ImportReport(study, n, len(table), created, renormalised_rows)

    # ---- run tables out ------------------------------------------------------------------
    def runs_frame(self, study: str, *, meta: bool = False, states: Sequence[TrialState] | None = None,
                   purpose: str | None = "fit") -> pd.DataFrame:
        """The study's checkpoints as a run table (one row per checkpoint, ordered by run and
        step). ``meta`` adds ``trial_id``, ``state``, ``checkpoint_id``, ``wall_s``, ``source``,
        ``strategy`` and ``purpose``. ``states`` keeps only trials in those states (default: all).
        ``purpose``: the runs models fit on (``"fit"``, the default: what every model, strategy,
        backtest and trajectory reads, so a validation run can never enter a fit by accident),
        ``"validation"`` (the held-out runs alone), or None (both)."""
        return self._runs_frame(study, meta=meta, states=states, latest=False, purpose=purpose)

    def _runs_frame(self, study: str, *, meta: bool, states: Sequence[TrialState] | None,
                    latest: bool, purpose: str | None = "fit") -> pd.DataFrame:
        """runs_frame; ``latest`` keeps only each run's last checkpoint (filtered in SQL, before
        the pivot of its values, so the app's runs page does not read every checkpoint)."""
        with self._read() as con:
            sid, _ = self._study_row(con, study)
            train = self._domains(con, sid, "train")
            evals = self._domains(con, sid, "eval")
            metrics = self._domains(con, sid, "metric")
            value_cols = [rt.LOSS_PREFIX + d for d in evals] + [rt.METRIC_PREFIX + m for m in metrics]
            w_sql = ", ".join(f"max(weight) FILTER (WHERE domain = {_lit(d)}) AS {_ident('w_' + d)}" for d in train)
            v_sql = ", ".join(f"max(value) FILTER (WHERE name = {_lit(c)}) AS {_ident(c)}" for c in value_cols)
            state_sql = _purpose_sql(purpose)
            if states:
                state_sql += " AND t.state IN (" + ", ".join(_lit(str(TrialState(s))) for s in states) + ")"
            # the study's checkpoints (only the last of each run when ``latest``): the reverse of
            # runs_frame's order, so it is the row runs_frame lists last for the run
            ck_cte = (f", ck AS (SELECT c.* FROM checkpoints c JOIN trials t USING (trial_id) "
                      f"WHERE t.study_id = {sid}"
                      + (" QUALIFY row_number() OVER (PARTITION BY c.trial_id ORDER BY c.steps DESC NULLS FIRST, "
                         "c.tokens DESC NULLS FIRST, c.checkpoint_id DESC) = 1" if latest else "")
                      + ")")
            vals_cte = (f", vals AS (SELECT v.checkpoint_id, {v_sql} FROM checkpoint_values v "
                        f"JOIN ck USING (checkpoint_id) GROUP BY v.checkpoint_id)") if value_cols else ""
            sel_vals = ", " + ", ".join(f"vals.{_ident(c)}" for c in value_cols) if value_cols else ""
            join_vals = " LEFT JOIN vals USING (checkpoint_id)" if value_cols else ""
            sql = (
                f"WITH mix AS (SELECT m.trial_id, {w_sql} FROM mixtures m JOIN trials t USING (trial_id) "
                f"WHERE t.study_id = {sid} GROUP BY m.trial_id){ck_cte}{vals_cte} "
                f"SELECT t.run_id, t.model_params, c.tokens, c.steps, "
                + ", ".join(f"mix.{_ident('w_' + d)}" for d in train)
                + f"{sel_vals}, c.cost, t.trial_id, t.state, c.checkpoint_id, c.wall_s, t.source, t.strategy, "
                f"t.purpose "
                f"FROM ck c JOIN trials t USING (trial_id) JOIN mix USING (trial_id){join_vals} "
                f"WHERE t.study_id = {sid}{state_sql} "
                f"ORDER BY t.trial_id, c.steps NULLS LAST, c.tokens NULLS LAST, c.checkpoint_id"
            )
            df = con.execute(sql).df()
        df["model_params"] = df["model_params"].astype("int64")
        df["steps"] = df["steps"].astype("Int64")
        df["tokens"] = df["tokens"].astype("float64")
        if not meta:
            df = df.drop(columns=["trial_id", "state", "checkpoint_id", "wall_s", "source", "strategy", "purpose"])
        return df.reset_index(drop=True)

    def export_frame(self, study: str) -> pd.DataFrame:
        """The run table to write to a file: contract columns only; all-empty optional columns
        (tokens, steps, cost) dropped, and so are all-empty loss_*/metric_* columns (an evaluation
        domain named by the config that no run measured): an empty loss column would make the
        file's re-import fail; integral token counts kept integral."""
        df = self.runs_frame(study)
        for c in ["tokens", "steps", "cost"] + rt.loss_columns(df) + rt.metric_columns(df):
            if c in df.columns and df[c].isna().all() and (len(df) or c in ("tokens", "steps", "cost")):
                df = df.drop(columns=[c])
        if "tokens" in df.columns and df["tokens"].notna().all():
            tok = df["tokens"].to_numpy(dtype=float)
            if np.all(np.isfinite(tok)) and np.all(tok == np.round(tok)) and np.all(np.abs(tok) < 2**62):
                df["tokens"] = tok.astype("int64")
        if "steps" in df.columns and df["steps"].notna().all():
            df["steps"] = df["steps"].astype("int64")
        return df

    def latest_checkpoints(self, study: str, *, purpose: str | None = "fit") -> pd.DataFrame:
        """One row per run: its last checkpoint (the app's runs table); ``purpose`` as in
        :meth:`runs_frame`."""
        return self._runs_frame(study, meta=True, states=None, latest=True, purpose=purpose)

    # ---- trials --------------------------------------------------------------------------
    def _trial_rows(self, con: duckdb.DuckDBPyConnection, where: str, params: list[Any], study: str) -> list[Trial]:
        rows = con.execute(f"SELECT {_TRIAL_COLUMNS} FROM trials t WHERE {where} ORDER BY trial_id", params).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        mix: dict[int, dict[str, float]] = {i: {} for i in ids}
        for tid, dom, w in con.execute(
            "SELECT trial_id, domain, weight FROM mixtures WHERE trial_id IN (SELECT trial_id FROM trials t "
            f"WHERE {where})", params
        ).fetchall():
            mix[tid][dom] = w
        # why rejected / cancelled trials were: the latest such event's reason and actor
        exits: dict[int, tuple[str | None, str]] = {}
        ended = [r[0] for r in rows if r[2] in (TrialState.REJECTED.value, TrialState.CANCELLED.value)]
        if ended:
            for tid, actor, detail in con.execute(
                "SELECT trial_id, actor, detail FROM events WHERE kind IN ('rejected', 'cancelled') AND trial_id IN ("
                + ", ".join("?" for _ in ended) + ") ORDER BY event_id", ended
            ).fetchall():
                exits[int(tid)] = ((json.loads(detail) if detail else {}).get("reason"), actor)
        out = []
        for r in rows:
            (tid, run_id, state, mp, steps, tokens, source, strategy, acq, pm, ps, cost, reason, seed, job,
             attempts, purpose) = r
            why, by = exits.get(int(tid), (None, None))
            out.append(Trial(int(tid), study, run_id, TrialState(state), mix[tid], int(mp),
                             None if steps is None else int(steps), tokens, source, strategy, acq, pm, ps,
                             cost, reason, seed, job, int(attempts or 0), why, by, purpose or "fit"))
        return out

    def trials(self, study: str, states: Iterable[TrialState | str] | None = None, *,
               purpose: str | None = "fit") -> list[Trial]:
        """The study's trials (all, or those in ``states``), oldest first. ``purpose`` as in
        :meth:`runs_frame`: by default the trials strategies and trajectories work with, not the
        held-out validation runs (None: every trial, e.g. for the dispatcher)."""
        with self._read() as con:
            sid, cfg = self._study_row(con, study)
            where, params = "t.study_id = ?" + _purpose_sql(purpose), [sid]
            if states is not None:
                st = [str(TrialState(s)) for s in states]
                if not st:
                    return []
                where += " AND t.state IN (" + ", ".join("?" for _ in st) + ")"
                params += st
            trials = self._trial_rows(con, where, params, study)
        order = list(cfg.domains)
        return [replace(t, weights={d: t.weights.get(d, 0.0) for d in order}) for t in trials]

    def get_trial(self, trial_id: int) -> Trial:
        """One trial by id."""
        with self._read() as con:
            row = _first(con.execute("SELECT s.name FROM trials t JOIN studies s USING (study_id) WHERE t.trial_id = ?",
                              [int(trial_id)]).fetchall())
            if row is None:
                raise NotFoundError(f"no trial with id {trial_id}. List trials with `mixplan propose --study S "
                                    "--json` or the app's Proposals page.")
            return self._trial_rows(con, "t.trial_id = ?", [int(trial_id)], row[0])[0]

    def trials_frame(self, study: str, *, purpose: str | None = "fit") -> pd.DataFrame:
        """Trials as a DataFrame (one row per trial, ``w_*`` columns) for tables and plots;
        ``purpose`` as in :meth:`trials`.

        Beside what the strategy predicted (``pred_mean``, ``pred_std``) it has what the run
        measured: ``observed`` (the study's objective at the trial's last checkpoint) and
        ``observed_steps`` / ``observed_tokens`` (where that checkpoint was), NaN for trials
        without results; and ``rejection_reason`` / ``rejected_by`` for rejected or cancelled
        trials (``reason`` stays the proposer's)."""
        from engine.runtable.schema import objective_values

        trials = self.trials(study, purpose=purpose)
        cfg = self.get_config(study)
        last = self.latest_checkpoints(study)
        seen: dict[int, tuple[float, Any, Any]] = {}
        if len(last):
            try:
                y = pd.to_numeric(objective_values(last, cfg.objective), errors="coerce").to_numpy(float)
            except KeyError:  # the objective was never measured
                y = np.full(len(last), np.nan)
            for tid, v, st, tok in zip(last["trial_id"], y, last["steps"], last["tokens"]):
                seen[int(tid)] = (float(v), _none(st), _none(tok))
        rows = []
        for t in trials:
            d = {k: getattr(t, k) for k in ("trial_id", "run_id", "model_params", "steps", "tokens", "source",
                                             "strategy", "acq_value", "pred_mean", "pred_std", "cost", "reason",
                                             "seed", "job_id", "attempts", "rejection_reason", "rejected_by",
                                             "purpose")}
            d["state"] = t.state.value
            d.update({f"w_{k}": t.weights.get(k) for k in cfg.domains})
            d["observed"], d["observed_steps"], d["observed_tokens"] = seen.get(t.trial_id, (None, None, None))
            rows.append(d)
        cols = ["trial_id", "run_id", "state", "model_params", "steps", "tokens"] + [f"w_{k}" for k in cfg.domains] + [
            "source", "strategy", "acq_value", "pred_mean", "pred_std", "observed", "observed_steps", "observed_tokens",
            "cost", "reason", "rejection_reason", "rejected_by", "seed", "job_id", "attempts", "purpose"]
        return pd.DataFrame(rows, columns=cols)

    def state_counts(self, study: str, *, purpose: str | None = "fit") -> tuple[int, dict[str, int]]:
        """(data_version, {state: number of trials}) in one short read: what a page polls to
        notice that trials changed state (cheaper than reading the trials themselves).
        ``purpose`` as in :meth:`trials`: the study's own trials, validation runs apart."""
        cond = _purpose_sql(purpose).replace(" AND ", " AND (", 1) + " OR t.trial_id IS NULL)" if purpose else ""
        with self._read() as con:
            rows = con.execute("SELECT s.data_version, t.state, count(t.trial_id) FROM studies s LEFT JOIN trials t "
                               "USING (study_id) WHERE s.name = ?" + cond + " GROUP BY s.data_version, t.state",
                               [study]).fetchall()
            if not rows:
                self._study_row(con, study)  # raises NotFoundError, naming the studies there are
        return int(rows[0][0]), {str(s): int(n) for _, s, n in rows if s is not None}

    def add_trials(self, study: str, proposals: Sequence[Proposal], *, actor: str = "user",
                   state: TrialState = TrialState.PROPOSED, purpose: str = "fit") -> list[Trial]:
        """Store proposals as new trials (state ``proposed`` unless told otherwise; ``approved``
        for a run a person typed in). Weights are validated against the study's domains and
        bounds; run ids default to ``t<trial_id>``. ``purpose="validation"`` marks held-out runs
        (:meth:`runs_frame`). All-or-nothing."""
        state = TrialState(state)
        _purpose_sql(purpose)  # checks the name
        if state not in (TrialState.PROPOSED, TrialState.APPROVED):
            raise StateError(f"new trials start as proposed or approved, not {state}.")
        with self._write() as con:
            sid, cfg = self._study_row(con, study)
            taken = {r[0] for r in con.execute("SELECT run_id FROM trials WHERE study_id = ?", [sid]).fetchall()}
            tid = self._next_id(con, "trials", "trial_id")
            ids = []
            for i, p in enumerate(proposals):
                w, steps, tokens, run_id = checked_proposal(p, cfg, f"proposal {i + 1}", f"t{tid:05d}", taken)
                cost = p.cost if p.cost is not None else cfg.cost(p.model_params, steps=steps, tokens=tokens)
                con.execute(
                    "INSERT INTO trials (trial_id, study_id, run_id, state, model_params, steps, tokens, source, "
                    "strategy, acq_value, pred_mean, pred_std, cost, reason, seed, attempts, purpose) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    [tid, sid, run_id, state.value, int(p.model_params),
                     None if steps is None else int(round(steps)), _none(tokens),
                     "manual" if p.strategy == "manual" else "strategy", p.strategy, _none(p.acq_value),
                     _none(p.pred_mean), _none(p.pred_std), _none(cost), p.reason, p.seed, purpose])
                con.executemany("INSERT INTO mixtures VALUES (?, ?, ?)", [[tid, d, v] for d, v in w.items()])
                self._event(con, sid, tid, state.value, actor,
                            {"strategy": p.strategy, "weights": w, "model_params": p.model_params,
                             "steps": steps, "acq_value": _none(p.acq_value), "pred_mean": _none(p.pred_mean),
                             "pred_std": _none(p.pred_std), "reason": p.reason,
                             **({"purpose": purpose} if purpose != "fit" else {})})
                ids.append(tid)
                tid += 1
            self._touch(con, sid)
        return [self.get_trial(i) for i in ids]

    def _transition(self, con: duckdb.DuckDBPyConnection, trial_id: int, to: TrialState, actor: str,
                    detail: dict[str, Any] | None = None, study_id: int | None = None) -> TrialState:
        row = _first(con.execute("SELECT state, study_id FROM trials WHERE trial_id = ?", [int(trial_id)]).fetchall())
        if row is None:
            raise NotFoundError(f"no trial with id {trial_id}.")
        cur, sid = TrialState(row[0]), int(row[1])
        if study_id is not None and sid != study_id:
            raise NotFoundError(f"trial {trial_id} does not belong to this study.")
        if to not in TRANSITIONS[cur]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[cur])) or "none (final state)"
            raise StateError(f"trial {trial_id} is {cur}; it cannot become {to} (from {cur}: {allowed}).")
        extra = ", attempts = attempts + 1" if to == TrialState.RUNNING else ""
        con.execute(f"UPDATE trials SET state = ?, updated_at = current_timestamp{extra} WHERE trial_id = ?",
                    [to.value, int(trial_id)])
        self._event(con, sid, int(trial_id), to.value, actor, detail or {})
        return cur

    def transition(self, trial_ids: Sequence[int], to: TrialState | str, *, actor: str = "user",
                   reason: str | None = None, study: str | None = None) -> None:
        """Move trials to state ``to``; every move must be legal or none happens."""
        to = TrialState(to)
        with self._write() as con:
            sid = self._study_row(con, study)[0] if study is not None else None
            sids = set()
            for tid in trial_ids:
                # the reason lives in the transition's event (Trial.rejection_reason reads it back):
                # the trial's own reason stays the proposer's
                self._transition(con, tid, to, actor, {"reason": reason} if reason else None, sid)
                sids.add(_first(con.execute("SELECT study_id FROM trials WHERE trial_id = ?",
                                            [int(tid)]).fetchall())[0])
            for s in sids:
                self._touch(con, s)

    def approve(self, study: str, trial_ids: Sequence[int] | None = None, *, actor: str = "user") -> list[int]:
        """Approve the given proposed trials, or all proposed ones; returns the ids approved."""
        if trial_ids is None:
            trial_ids = [t.trial_id for t in self.trials(study, [TrialState.PROPOSED])]
        self.transition(trial_ids, TrialState.APPROVED, actor=actor, study=study)
        return list(trial_ids)

    def reject(self, study: str, trial_ids: Sequence[int] | None = None, *, actor: str = "user",
               reason: str | None = None) -> list[int]:
        """Reject the given proposed/approved trials, or all proposed ones."""
        if trial_ids is None:
            trial_ids = [t.trial_id for t in self.trials(study, [TrialState.PROPOSED])]
        self.transition(trial_ids, TrialState.REJECTED, actor=actor, reason=reason, study=study)
        return list(trial_ids)

    def edit_trial(self, trial_id: int, *, weights: dict[str, float] | None = None, model_params: int | None = None,
                   steps: int | None = None, actor: str = "user") -> Trial:
        """Change a proposed/approved trial's mixture or fidelity (re-validated); logged as an edit."""
        with self._write() as con:
            row = self._trial_row(con, trial_id)
            state, sid = TrialState(row[0]), int(row[1])
            if state not in EDITABLE_STATES:
                raise StateError(f"trial {trial_id} is {state}; only proposed or approved trials can be edited.")
            cfg = self._config_of(con, sid)
            detail: dict[str, Any] = {}
            if weights is not None:
                w = validate_weights(weights, cfg.domains, cfg.bounds_array(), where=f"trial {trial_id}")
                con.execute("DELETE FROM mixtures WHERE trial_id = ?", [int(trial_id)])
                con.executemany("INSERT INTO mixtures VALUES (?, ?, ?)", [[int(trial_id), d, v] for d, v in w.items()])
                detail["weights"] = w
            mp = int(model_params) if model_params is not None else int(row[2])
            st = int(steps) if steps is not None else (None if row[3] is None else int(row[3]))
            if mp <= 0 or (st is not None and st <= 0):
                raise ValidationError(f"trial {trial_id}: model_params and steps must be > 0.")
            if model_params is not None or steps is not None:
                tokens = cfg.tokens_for(st) if steps is not None else row[4]
                con.execute("UPDATE trials SET model_params = ?, steps = ?, tokens = ?, cost = ? WHERE trial_id = ?",
                            [mp, st, tokens, cfg.cost(mp, steps=st, tokens=tokens), int(trial_id)])
                detail.update({"model_params": mp, "steps": st})
            self._event(con, sid, int(trial_id), "edited", actor, detail)
            self._touch(con, sid)
        return self.get_trial(trial_id)

    def set_job(self, trial_id: int, job_id: str | None, *, actor: str = "dispatch") -> None:
        """Remember the executor's job id (to re-attach after a restart)."""
        with self._write() as con:
            con.execute("UPDATE trials SET job_id = ? WHERE trial_id = ?", [job_id, int(trial_id)])

    def start_trial(self, trial_id: int, *, actor: str = "dispatch", job_id: str | None = None) -> None:
        """queued -> running (counts an attempt)."""
        with self._write() as con:
            self._transition(con, trial_id, TrialState.RUNNING, actor, {"job_id": job_id})
            if job_id is not None:
                con.execute("UPDATE trials SET job_id = ? WHERE trial_id = ?", [job_id, int(trial_id)])

    @staticmethod
    def _checkpoint_key(steps: Any, tokens: Any) -> tuple[str, int | float]:
        """What makes a checkpoint of a run the same checkpoint: its steps where it has them, else
        its tokens (the rule the run-table reader applies to (run_id, steps) / (run_id, tokens)).
        So a worker that reports steps = 100 once without and once with tokens stores it once."""
        if steps is not None and not pd.isna(steps):
            return ("steps", int(steps))
        return ("tokens", float(tokens))

    @staticmethod
    def _insert_checkpoints(con: duckdb.DuckDBPyConnection, trial_id: int, checkpoints: Sequence[Checkpoint],
                            *, replace: bool = False) -> int:
        """Insert the checkpoints not already stored (same steps, or same tokens where there are
        no steps: :meth:`_checkpoint_key`); returns how many. ``replace``: first delete every
        checkpoint the trial has (they came from an attempt that was superseded), so the trial
        holds exactly ``checkpoints``; returns how many of those were not stored before."""
        have = {Store._checkpoint_key(s, t) for s, t in con.execute(
            "SELECT steps, tokens FROM checkpoints WHERE trial_id = ?", [int(trial_id)]).fetchall()}
        # ids are taken before a delete, so a replacement never reuses the id of a deleted row
        cid = Store._next_id(con, "checkpoints", "checkpoint_id")
        before = set(have)
        if replace and have:
            con.execute("DELETE FROM checkpoint_values WHERE checkpoint_id IN "
                        "(SELECT checkpoint_id FROM checkpoints WHERE trial_id = ?)", [int(trial_id)])
            con.execute("DELETE FROM checkpoints WHERE trial_id = ?", [int(trial_id)])
            have = set()
        ck_rows: list[list[Any]] = []
        val_rows: list[list[Any]] = []
        for c in checkpoints:
            if c.steps is None and c.tokens is None:
                raise ValidationError(f"trial {trial_id}: a checkpoint needs steps or tokens.")
            key = Store._checkpoint_key(c.steps, c.tokens)
            if key in have:
                continue
            values = {rt.LOSS_PREFIX + k: v for k, v in c.losses.items()}
            values.update({rt.METRIC_PREFIX + k: v for k, v in c.metrics.items()})
            bad = {k: v for k, v in values.items() if v is None or not np.isfinite(float(v))}
            if bad:
                raise ValidationError(f"trial {trial_id}: checkpoint at steps={c.steps} has non-finite values {bad}.")
            if not c.losses:
                raise ValidationError(f"trial {trial_id}: checkpoint at steps={c.steps} has no losses.")
            ck_rows.append([cid, int(trial_id), None if c.steps is None else int(c.steps),
                            None if c.tokens is None else float(c.tokens), _none(c.cost), _none(c.wall_s)])
            val_rows.extend([cid, k, float(v)] for k, v in values.items())
            have.add(key)
            cid += 1
        if replace:
            new_keys = {Store._checkpoint_key(c.steps, c.tokens) for c in checkpoints}
            added = len(new_keys - before)
        # one multi-row INSERT per table: row-by-row inserts cost ~10 ms each in DuckDB
        for start in range(0, len(ck_rows), 500):
            chunk = ck_rows[start:start + 500]
            con.execute("INSERT INTO checkpoints (checkpoint_id, trial_id, steps, tokens, cost, wall_s) VALUES "
                        + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk)), [v for r in chunk for v in r])
        for start in range(0, len(val_rows), 1000):
            chunk = val_rows[start:start + 1000]
            con.execute("INSERT INTO checkpoint_values VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)),
                        [v for r in chunk for v in r])
        return added if replace else len(ck_rows)

    def _checked_results(self, con: duckdb.DuckDBPyConnection, trial_id: int, row: tuple,
                         checkpoints: Sequence[Checkpoint]) -> tuple[list[Checkpoint], list[dict[str, Any]]]:
        """A runner's checkpoints of a trial, checked before anything is stored, as an import
        checks a run table: the same value checks (:func:`engine.runtable.reader.validate_results`:
        names, finite and non-negative losses, steps within int64, no repeats), steps within the
        trial's length (tokens within twice its tokens where it has no steps: runners round up
        to whole steps), and the loss names the study's evaluation domains once they are known
        (metric names the study's metrics once it has any), as `import` requires of a table. Why:
        a new loss name would become an evaluation domain that every other run lacks, making
        their ``mean_loss`` undefined. Names not known are refused, or with the study's
        ``[runner] unknown_values = "keep"`` taken out of the checkpoints and returned apart
        (``[{"steps", "tokens", "losses", "metrics"}]``, kept in the trial's ``done`` event).
        Raises :class:`ValidationError` naming the trial, the checkpoint and the column."""
        from engine.runtable.reader import validate_results

        _, sid, model_params, t_steps, t_tokens = row
        sid = int(sid)
        # the same checkpoint twice is one checkpoint (the store's idempotent rule), not an error
        unique: dict[tuple[str, int | float], Checkpoint] = {}
        for c in checkpoints:
            if c.steps is not None or c.tokens is not None:
                unique.setdefault(self._checkpoint_key(c.steps, c.tokens), c)
        checkpoints = list(unique.values())
        if not checkpoints:
            raise ValidationError(f"trial {trial_id}: a checkpoint needs steps or tokens.")
        cfg = self._config_of(con, sid)
        run_id = _first(con.execute("SELECT run_id FROM trials WHERE trial_id = ?", [int(trial_id)]).fetchall())[0]
        weights = dict(con.execute("SELECT domain, weight FROM mixtures WHERE trial_id = ?", [int(trial_id)]).fetchall())
        source = f"the result of trial {trial_id} (run '{run_id}'; row N is its N-th checkpoint)"
        frame = pd.DataFrame([
            {"run_id": run_id, "model_params": int(model_params),
             **({"steps": c.steps} if any(k.steps is not None for k in checkpoints) else {}),
             **({"tokens": c.tokens} if any(k.tokens is not None for k in checkpoints) else {}),
             **{rt.WEIGHT_PREFIX + d: weights.get(d, 0.0) for d in cfg.domains},
             **{rt.LOSS_PREFIX + k: v for k, v in c.losses.items()},
             **{rt.METRIC_PREFIX + k: v for k, v in c.metrics.items()},
             **({"cost": c.cost} if any(k.cost is not None for k in checkpoints) else {})}
            for c in checkpoints])
        validate_results(frame, source)
        for i, c in enumerate(checkpoints):
            if t_steps is not None and c.steps is not None and int(c.steps) > int(t_steps):
                raise ValidationError(f"the checkpoint is at steps = {c.steps}, beyond the trial's {int(t_steps)} "
                                      "steps.", file=source, row=i + 1, column="steps",
                                      fix="report checkpoints up to the length the trial asks for.")
            if t_steps is None and t_tokens is not None and c.tokens is not None \
                    and float(c.tokens) > 2.0 * float(t_tokens):
                raise ValidationError(f"the checkpoint is at tokens = {c.tokens:g}, more than twice the trial's "
                                      f"{float(t_tokens):g} tokens.", file=source, row=i + 1, column="tokens",
                                      fix="report checkpoints up to the length the trial asks for.")
        keep = str(cfg.runner.options.get("unknown_values", "fail")) == "keep"
        known_eval = self._domains(con, sid, "eval")
        known_metrics = self._domains(con, sid, "metric")
        kept: list[dict[str, Any]] = []
        out: list[Checkpoint] = []
        for i, c in enumerate(checkpoints):
            extra_l = {k: v for k, v in c.losses.items() if known_eval and k not in known_eval}
            extra_m = {k: v for k, v in c.metrics.items() if known_metrics and k not in known_metrics}
            if (extra_l or extra_m) and not keep:
                name, what, have = ((next(iter(extra_l)), "loss", known_eval) if extra_l
                                    else (next(iter(extra_m)), "metric", known_metrics))
                kind = "evaluation domain" if what == "loss" else "metric"
                prefix = rt.LOSS_PREFIX if what == "loss" else rt.METRIC_PREFIX
                raise ValidationError(
                    f"the run reports {what} '{name}', which is not a{'n' if what == 'loss' else ''} {kind} of study "
                    f"'{cfg.name}' ({', '.join(have)}); nothing of this result was stored.", file=source,
                    row=i + 1, column=prefix + name,
                    fix=f"report {what}es for the study's {kind}s only (a new name would leave every other run "
                        "without it), or set unknown_values = \"keep\" under the study's [runner] to keep such "
                        "values apart." if what == "loss" else
                        f"report the study's metrics only, or set unknown_values = \"keep\" under the study's "
                        "[runner] to keep such values apart.")
            if extra_l or extra_m:
                kept.append({"steps": c.steps, "tokens": c.tokens, "losses": extra_l, "metrics": extra_m})
                c = replace(c, losses={k: v for k, v in c.losses.items() if k not in extra_l},
                            metrics={k: v for k, v in c.metrics.items() if k not in extra_m})
            lacking = [d for d in known_eval if d not in c.losses]
            if lacking:
                raise ValidationError(
                    f"the run reports no loss for '{lacking[0]}', an evaluation domain of study '{cfg.name}' "
                    f"({', '.join(known_eval)}); nothing of this result was stored.", file=source, row=i + 1,
                    column=rt.LOSS_PREFIX + lacking[0],
                    fix="report a loss for every evaluation domain of the study at every checkpoint.")
            out.append(c)
        return out, kept

    def _register_values(self, con: duckdb.DuckDBPyConnection, sid: int, checkpoints: Sequence[Checkpoint]) -> None:
        self._add_domains(con, sid, "eval", [k for c in checkpoints for k in c.losses])
        self._add_domains(con, sid, "metric", [k for c in checkpoints for k in c.metrics])

    def record_checkpoints(self, trial_id: int, checkpoints: Sequence[Checkpoint], *, actor: str = "worker",
                           replace: bool = False) -> int:
        """Store checkpoints of a running trial as they arrive. Idempotent: a checkpoint already
        stored (same steps; same tokens where it has no steps) is skipped, so a worker's results
        can be ingested twice. ``replace``: the trial's stored checkpoints are replaced by
        ``checkpoints`` in the same transaction (a retried attempt's measurements supersede the
        failed attempt's)."""
        with self._write() as con:
            row = self._trial_row(con, trial_id)
            if TrialState(row[0]) not in (TrialState.RUNNING, TrialState.QUEUED, TrialState.DONE):
                raise StateError(f"trial {trial_id} is {row[0]}; checkpoints are recorded for running trials.")
            # values kept apart are dropped here: the finished result carries them (complete_trial)
            checkpoints, _ = self._checked_results(con, trial_id, row, checkpoints)
            self._register_values(con, int(row[1]), checkpoints)
            added = self._insert_checkpoints(con, trial_id, checkpoints, replace=replace)
            if added or replace:
                self._touch(con, int(row[1]))
            return added

    def complete_trial(self, trial_id: int, result: RunResult, *, actor: str = "worker",
                       replace: bool = False) -> bool:
        """Store a finished run: its remaining checkpoints, cost and wall time, and mark it done,
        in one transaction. Idempotent: completing a done trial again changes nothing (False).
        ``replace``: the result's checkpoints become the trial's only ones (checkpoints stored
        earlier, e.g. streamed by a failed attempt, are dropped in the same transaction)."""
        with self._write() as con:
            row = self._trial_row(con, trial_id)
            state, sid = TrialState(row[0]), int(row[1])
            if state == TrialState.DONE:
                return False
            if not result.checkpoints:
                raise ValidationError(f"trial {trial_id}: the run reported no checkpoint.")
            checkpoints, kept_apart = self._checked_results(con, trial_id, row, result.checkpoints)
            # (``replace`` is this method's flag here, hence the module's name for the function)
            result = dataclasses.replace(result, checkpoints=checkpoints,
                                         info={**result.info, "kept_apart": kept_apart} if kept_apart else result.info)
            self._register_values(con, sid, result.checkpoints)
            self._insert_checkpoints(con, trial_id, result.checkpoints, replace=replace)
            cfg = self._config_of(con, sid)
            cost = result.cost
            if cost is None:
                ck_costs = [c.cost for c in result.checkpoints if c.cost is not None]
                cost = max(ck_costs) if ck_costs else cfg.cost(int(row[2]), steps=row[3], tokens=row[4])
            if state == TrialState.QUEUED:
                self._transition(con, trial_id, TrialState.RUNNING, actor)
            self._transition(con, trial_id, TrialState.DONE, actor,
                             {"cost": _none(cost), "wall_s": _none(result.wall_s),
                              "checkpoints": len(result.checkpoints), **({"info": result.info} if result.info else {})})
            con.execute("UPDATE trials SET cost = ?, wall_s = ? WHERE trial_id = ?",
                        [_none(cost), _none(result.wall_s), int(trial_id)])
            self._touch(con, sid)
            return True

    def fail_trial(self, trial_id: int, reason: str, *, log_tail: str = "", actor: str = "worker") -> None:
        """Mark a queued/running trial failed, keeping the reason and the log's tail. Checkpoints
        it already stored stay (they are real measurements)."""
        with self._write() as con:
            self._transition(con, trial_id, TrialState.FAILED, actor, {"reason": reason, "log_tail": log_tail[-4000:]})
            con.execute("UPDATE trials SET reason = ? WHERE trial_id = ?", [reason, int(trial_id)])
            sid = _first(con.execute("SELECT study_id FROM trials WHERE trial_id = ?", [int(trial_id)]).fetchall())[0]
            self._touch(con, int(sid))

    # ---- events --------------------------------------------------------------------------
    def log_event(self, study: str, kind: str, *, actor: str = "user", trial_id: int | None = None,
                  detail: dict[str, Any] | None = None) -> None:
        """Append a free-form event (e.g. an export) to the study's log."""
        with self._write() as con:
            sid, _ = self._study_row(con, study)
            self._event(con, sid, trial_id, kind, actor, detail)

    def save_strategy_state(self, study: str, key: str, state: dict[str, Any], *, actor: str = "strategy") -> None:
        """Save what a strategy keeps between asks (e.g. its GP's learned hyperparameters) as part
        of the study's state, so any process asking next starts from it (an event of kind
        ``strategy_state:<key>``; the latest one counts)."""
        with self._write() as con:
            sid, _ = self._study_row(con, study)
            self._event(con, sid, None, f"{STRATEGY_STATE}:{key}", actor, state)

    def strategy_states(self, study: str) -> dict[str, dict[str, Any]]:
        """The latest saved state of every strategy key of the study."""
        with self._read() as con:
            sid, _ = self._study_row(con, study)
            rows = con.execute(
                "SELECT kind, detail FROM events WHERE study_id = ? AND starts_with(kind, ?) "
                "QUALIFY row_number() OVER (PARTITION BY kind ORDER BY event_id DESC) = 1",
                [sid, STRATEGY_STATE + ":"]).fetchall()
        return {kind[len(STRATEGY_STATE) + 1:]: json.loads(detail) for kind, detail in rows}

    def events(self, study: str, *, limit: int | None = None, trial_id: int | None = None) -> pd.DataFrame:
        """The study's event log, newest first."""
        with self._read() as con:
            sid, _ = self._study_row(con, study)
            sql = "SELECT event_id, trial_id, kind, actor, detail, created_at FROM events WHERE study_id = ?"
            params: list[Any] = [sid]
            if trial_id is not None:
                sql += " AND trial_id = ?"
                params.append(int(trial_id))
            sql += " ORDER BY event_id DESC"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            df = con.execute(sql, params).df()
        # study-level events have no trial: None (not pd.NA, whose truth value raises)
        df["trial_id"] = df["trial_id"].astype(object).where(df["trial_id"].notna(), None)
        return df
