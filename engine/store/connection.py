"""Short-lived DuckDB connections that wait politely for the file lock.

DuckDB lets one process hold a read-write connection to a file, and while it does no other
process can open the file at all, not even read-only. mixplan is used from the app, the CLI
and worker processes at once, so no process keeps the file open: every operation opens a
connection, runs one short transaction and closes it. A lock held by another process is
answered by retrying with jittered exponential back-off until ``busy_timeout_s``; only then
does the caller see :class:`~engine.errors.StoreBusyError`.

Within one process, DuckDB refuses to open the same file twice with different settings
(read-only vs read-write), and threads (Streamlit, the local dispatcher) would race; a
per-file re-entrant lock serialises this process's connections.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from engine.errors import StoreBusyError

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> threading.RLock:
    key = str(path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


def is_lock_error(exc: BaseException) -> bool:
    """True for DuckDB's 'the file is locked by another process' errors."""
    text = str(exc).lower()
    return isinstance(exc, (duckdb.IOException, duckdb.Error)) and (
        "lock" in text or "resource temporarily unavailable" in text
    )


@contextmanager
def connect(path: Path, *, write: bool, busy_timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``path`` (read-only unless ``write``), retrying while another process holds it."""
    lock = _process_lock(path)
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.005
    with lock:
        while True:
            try:
                con = duckdb.connect(str(path), read_only=not write)
                break
            except duckdb.Error as exc:
                if not is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"the database {path} stayed locked by another process for "
                        f"{busy_timeout_s:.0f} s. Another mixplan process is writing (or hung); "
                        "wait for it to finish, or stop it, and try again."
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)
        try:
            yield con
        finally:
            con.close()


@contextmanager
def transaction(path: Path, *, busy_timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection inside BEGIN ... COMMIT; any exception rolls back everything."""
    with connect(path, write=True, busy_timeout_s=busy_timeout_s) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
