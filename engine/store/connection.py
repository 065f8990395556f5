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

``flock`` is not fair: readers that overlap one another (the app's pages, dashboards polling)
can keep the shared lock held without a gap, and a writer waiting for it exclusively would
wait for ever. So a writer first takes a second lock, the gate ``<db>.gate``, exclusively, and
holds it while it waits for ``<db>.lock``; a reader passes through the gate (takes it shared and
lets go at once) before it takes ``<db>.lock``. Once a writer is waiting no new reader gets in,
the readers inside finish their short transactions, and the writer gets the lock; it lets the
gate go as soon as it holds the lock.
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


def _open_lock_file(path: Path) -> int | None:
    """A descriptor of a lock file, or None in a read-only folder (nobody can write there, so
    there is nothing to fence)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return None


def _flock(fd: int, mode: int, *, path: Path, deadline: float, busy_timeout_s: float, max_delay: float) -> None:
    """Take ``flock(mode)`` on ``fd``, polling with jittered back-off until ``deadline``."""
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _busy(path, busy_timeout_s) from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, max_delay)


@contextmanager
def _file_lock(path: Path, *, write: bool, deadline: float, busy_timeout_s: float) -> Iterator[None]:
    """Hold ``flock`` on ``<db>.lock`` (shared to read, exclusive to write) while inside, having
    passed the writer-intent gate ``<db>.gate`` first (see the module's docstring)."""
    fd = _open_lock_file(path.with_name(path.name + ".lock"))
    if fd is None:
        yield
        return
    try:
        gate = _open_lock_file(path.with_name(path.name + ".gate"))
        try:
            if gate is not None:
                # a writer keeps the gate shut while it waits; a reader only passes through it.
                # The writer polls the gate briskly: readers hold it for two system calls.
                _flock(gate, fcntl.LOCK_EX if write else fcntl.LOCK_SH, path=path, deadline=deadline,
                       busy_timeout_s=busy_timeout_s, max_delay=0.01 if write else 0.05)
                if not write:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            _flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH, path=path, deadline=deadline,
                   busy_timeout_s=busy_timeout_s, max_delay=0.1)
        finally:
            if gate is not None:
                os.close(gate)  # releases the gate (the writer holds the main lock now)
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
