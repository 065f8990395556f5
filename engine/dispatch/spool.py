"""The spool: how results travel from a worker to the one process that writes the database.

Workers (local processes, SLURM jobs, Ray actors) never open the database. Each submission of
a trial gets a directory ``<root>/<study>/<trial_id>/<token>/`` into which its worker writes,
every file atomically (temporary file + ``os.replace``, so a reader sees a whole file or none):

==================  ==============================================================
``started.json``    the worker began: host, pid, the process's start time, time
``heartbeat``       touched every few seconds while the worker lives (its mtime)
``ck-NNNNNN.json``  one finished checkpoint each, numbered in order, tagged with the
                    runner's attempt (0-based) that measured it
``final.json``      the end: ``{"status": "done", "attempt": k, "result": {...}}`` or
                    ``{"status": "failed", "reason": .., "log_tail": ..}``
``cancel``          written by the dispatcher: asks the worker to stop
==================  ==============================================================

The dispatcher ingests checkpoints and the final result into the store idempotently (the
store skips a checkpoint it already holds), so reading a spool twice -- e.g. after the
dispatcher was killed between two writes -- stores nothing twice. Checkpoints of an attempt
the runner gave up on are superseded by the next attempt's: the dispatcher ingests only the
latest attempt's and replaces what the store holds when a new attempt's first checkpoint
arrives, and the final result's set replaces all of them (see :class:`SpoolSink`). A submission's directory
is removed only after its trial reached ``done``/``failed`` in the store.

Beside the trials' directories, ``<root>/<study>/dispatch.json`` says who dispatches the study
while a dispatcher runs (pid, host, executor, workers, when each trial was handed over): what
the app reads to say why a queued trial waits (:mod:`engine.dispatch.progress`). It is
advisory: a dispatcher killed outright leaves it behind, and readers check that its pid is
still that process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.outfile import write_atomic
from engine.records import Checkpoint, RunResult

SPOOL_DIRNAME = ".mixplan-spool"
RUNS_DIRNAME = "mixplan-runs"
DISPATCH_FILE = "dispatch.json"


def checkpoint_to_dict(c: Checkpoint) -> dict[str, Any]:
    return {"steps": c.steps, "tokens": c.tokens, "losses": dict(c.losses), "metrics": dict(c.metrics),
            "cost": c.cost, "wall_s": c.wall_s}


def checkpoint_from_dict(d: dict[str, Any]) -> Checkpoint:
    return Checkpoint(steps=d.get("steps"), tokens=d.get("tokens"), losses=dict(d["losses"]),
                      metrics=dict(d.get("metrics") or {}), cost=d.get("cost"), wall_s=d.get("wall_s"))


def result_to_dict(r: RunResult) -> dict[str, Any]:
    return {"checkpoints": [checkpoint_to_dict(c) for c in r.checkpoints], "cost": r.cost, "wall_s": r.wall_s,
            "info": r.info}


def result_from_dict(d: dict[str, Any]) -> RunResult:
    return RunResult([checkpoint_from_dict(c) for c in d["checkpoints"]], d.get("cost"), d.get("wall_s"),
                     dict(d.get("info") or {}))


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22);
    None where there is no such process or no ``/proc``. Together with the pid it names one
    process: a recycled pid has a different start time."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def is_same_process(started: dict[str, Any] | None) -> bool:
    """True when the process a ``started.json`` names is alive on this host and is the same
    process (its recorded start time matches), not a later one that got its pid."""
    if not started or started.get("host") != socket.gethostname() or "pid" not in started:
        return False
    recorded = started.get("pid_start")
    if recorded is None:
        return False  # cannot tell: never act on a pid we cannot vouch for
    return process_start_time(int(started["pid"])) == int(recorded)


def write_dispatch_info(study_root: Path, info: dict[str, Any]) -> None:
    """Publish the running dispatcher's facts in ``<study_root>/dispatch.json`` (atomic rename;
    no fsync: advisory, rewritten at each submission)."""
    study_root.mkdir(parents=True, exist_ok=True)
    write_atomic(study_root / DISPATCH_FILE, json.dumps(info, default=str))


def read_dispatch_info(study_root: Path) -> dict[str, Any] | None:
    """What the study's dispatcher published (None: none, or unreadable). Check
    :func:`is_same_process` on it before trusting that a dispatcher runs."""
    try:
        d = json.loads((Path(study_root) / DISPATCH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def remove_dispatch_info(study_root: Path) -> None:
    """Called by the dispatcher as it ends (only its own file: the pid must match)."""
    path = Path(study_root) / DISPATCH_FILE
    info = read_dispatch_info(study_root)
    if info is not None and info.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def spool_root(store, study: str) -> Path:
    """Where a study's spools live: ``<database folder>/<SPOOL_DIRNAME>/<study>``."""
    return store.path.resolve().parent / SPOOL_DIRNAME / study


def runs_root(store, study: str) -> Path:
    """Where a study's run folders live: ``<database folder>/<RUNS_DIRNAME>/<study>``."""
    return store.path.resolve().parent / RUNS_DIRNAME / study


@dataclass(frozen=True)
class Final:
    """The end of a submission as its worker wrote it."""

    status: str  # "done" | "failed"
    result: RunResult | None = None
    reason: str = ""
    log_tail: str = ""
    attempt: int | None = None  # the runner's attempt that produced ``result`` (None: not said)


@dataclass(frozen=True)
class Spooled:
    """One spooled checkpoint: its file name, the attempt that measured it, the checkpoint."""

    name: str
    attempt: int
    checkpoint: Checkpoint


class Spool:
    """One submission's spool directory. Cheap, picklable (a path), shared by worker and dispatcher."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r})"

    def __reduce__(self):
        return (Spool, (str(self.path),))

    # ---- worker side ---------------------------------------------------------------------
    def _json(self, name: str, obj: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / name, json.dumps(obj, default=str), durable=True)

    def mark_started(self, **info: Any) -> None:
        self._json("started.json", {"host": socket.gethostname(), "pid": os.getpid(),
                                    "pid_start": process_start_time(os.getpid()), "time": time.time(), **info})
        self.beat()

    def beat(self) -> None:
        """Touch the heartbeat (its mtime says the worker is alive)."""
        self.path.mkdir(parents=True, exist_ok=True)
        hb = self.path / "heartbeat"
        try:
            os.utime(hb)
        except FileNotFoundError:
            hb.touch()

    def write_checkpoint(self, c: Checkpoint, *, attempt: int = 0) -> None:
        """Spool one checkpoint of attempt ``attempt`` (numbered after those already there)."""
        self.path.mkdir(parents=True, exist_ok=True)
        n = len(self.checkpoint_files())
        self._json(f"ck-{n:06d}.json", {**checkpoint_to_dict(c), "attempt": int(attempt)})

    def write_done(self, result: RunResult, *, attempt: int | None = None) -> None:
        self._json("final.json", {"status": "done", "result": result_to_dict(result),
                                  **({} if attempt is None else {"attempt": int(attempt)})})

    def write_failed(self, reason: str, log_tail: str = "") -> None:
        self._json("final.json", {"status": "failed", "reason": reason, "log_tail": log_tail[-4000:]})

    def cancel_requested(self) -> bool:
        return (self.path / "cancel").exists()

    # ---- dispatcher side -----------------------------------------------------------------
    def request_cancel(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / "cancel", b"", durable=True)

    def started(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / "started.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def heartbeat_age(self) -> float | None:
        """Seconds since the worker's last heartbeat (None if it never beat)."""
        try:
            return max(0.0, time.time() - (self.path / "heartbeat").stat().st_mtime)
        except OSError:
            return None

    def checkpoint_files(self) -> list[Path]:
        try:
            return sorted(p for p in self.path.iterdir() if p.name.startswith("ck-") and p.name.endswith(".json"))
        except FileNotFoundError:
            return []

    def read_spooled(self, skip: set[str] | None = None) -> list[Spooled]:
        """Every spooled checkpoint whose file is not in ``skip``, with its attempt."""
        out = []
        for p in self.checkpoint_files():
            if skip and p.name in skip:
                continue
            d = json.loads(p.read_text(encoding="utf-8"))
            out.append(Spooled(p.name, int(d.get("attempt") or 0), checkpoint_from_dict(d)))
        return out

    def read_checkpoints(self, skip: set[str] | None = None) -> list[tuple[str, Checkpoint]]:
        """(file name, checkpoint) of every spooled checkpoint not in ``skip`` (any attempt)."""
        return [(s.name, s.checkpoint) for s in self.read_spooled(skip)]

    def final(self) -> Final | None:
        try:
            d = json.loads((self.path / "final.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if d.get("status") == "done":
            attempt = d.get("attempt")
            return Final("done", result_from_dict(d["result"]), attempt=None if attempt is None else int(attempt))
        return Final("failed", None, str(d.get("reason", "failed")), str(d.get("log_tail", "")))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class SpoolSink:
    """What a worker hands its runner as ``on_checkpoint``: spools each checkpoint tagged with
    the current attempt; :func:`engine.runners.base.begin_attempt` moves to the next one."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.attempt = 0

    def __call__(self, c: Checkpoint) -> None:
        self.spool.write_checkpoint(c, attempt=self.attempt)

    def begin_attempt(self, attempt: int) -> None:
        self.attempt = int(attempt)
