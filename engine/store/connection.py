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

Between processes, DuckDB's own file lock was seen to let a read-only reader open the file in
the instant a writer was closing it, and the reader then failed with a short read
("Could not read enough bytes"). So every mixplan connection also holds an advisory
``flock`` on ``<db>.lock`` from before it opens the database until after it has closed it:
shared for readers (many at once), exclusive for the writer. DuckDB's lock stays the guard
against other programs.
"""

from __future__ import annotations

import fcntl
import os
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


def _busy(path: Path, busy_timeout_s: float) -> StoreBusyError:
    return StoreBusyError(
        f"the database {path} stayed locked by another process for {busy_timeout_s:.0f} s. Another "
        "mixplan process is writing (or hung); wait for it to finish, or stop it, and try again.")


@contextmanager
def _file_lock(path: Path, *, write: bool, deadline: float, busy_timeout_s: float) -> Iterator[None]:
    """Hold ``flock`` on ``<db>.lock`` (shared to read, exclusive to write) while inside."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a read-only folder: nobody can write there, so there is nothing to fence
        yield
        return
    mode = (fcntl.LOCK_EX if write else fcntl.LOCK_SH) | fcntl.LOCK_NB
    delay = 0.002
    try:
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(path, busy_timeout_s) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def connect(path: Path, *, write: bool, busy_timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``path`` (read-only unless ``write``), retrying while another process holds it."""
    lock = _process_lock(path)
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.005
    with lock, _file_lock(path, write=write, deadline=deadline, busy_timeout_s=busy_timeout_s):
        while True:
            try:
                con = duckdb.connect(str(path), read_only=not write)
                break
            except duckdb.Error as exc:
                if not is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise _busy(path, busy_timeout_s) from exc
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
