"""The local executor: a pool of long-lived worker processes on this machine (the default).

Why its own pool rather than :class:`concurrent.futures.ProcessPoolExecutor`: a worker that
dies (a segfault, the OOM killer, a hard timeout) must cost only its own trial -- a
``ProcessPoolExecutor`` breaks entirely -- and a stuck worker must be killable on its own.

- **Long-lived workers.** ``import torch`` costs 3-6 s per process (FACTS.md), so each worker
  is started once (a fresh ``python -m engine.dispatch.worker``), optionally imports heavy modules up front (``preload``, e.g.
  torch for the built-in trainer, all workers in parallel), and runs trial after trial.
- **One thread each.** ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (and torch's thread count)
  are set to ``threads_per_worker`` (default 1): two single-threaded runs side by side beat
  one two-threaded run, and an oversubscribed two-thread PyTorch collapses 10-17x.
- **Own session.** Each worker runs in its own session, so Ctrl-C reaches
  only the dispatcher, which then stops the pool deliberately. A worker told to stop
  (SIGTERM) first kills the process groups of the programs its command runner started.
- **Survives the dispatcher.** If the dispatcher is killed, a worker in the middle of a trial
  finishes it and spools the result (the restarted dispatcher re-attaches through the spool's
  heartbeat), then exits instead of waiting for work that will never come. Such an orphan can
  still be stopped (a cancellation, the hard limit, a resubmission): :meth:`LocalExecutor.kill_orphan`
  kills the process ``started.json`` names once its pid and start time show it is that worker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.dispatch.base import Executor, JobState, JobStatus
from engine.dispatch.spool import Spool, is_same_process
from engine.dispatch.task import Task

#: a previous dispatcher's worker is only killed while it still beats on the submission's spool
ORPHAN_BEAT_S = 60.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@dataclass
class _Worker:
    proc: Any
    conn: Any
    job: str | None = None
    started: float = field(default_factory=time.monotonic)


class LocalExecutor(Executor):
    """``workers`` processes (default: CPU cores / ``threads_per_worker``)."""

    name = "local"
    local_children = True

    def __init__(self, workers: int | None = None, *, threads_per_worker: int = 1,
                 preload: tuple[str, ...] | list[str] = (), kill_grace_s: float = 10.0) -> None:
        cores = os.cpu_count() or 1
        self.threads_per_worker = max(1, int(threads_per_worker))
        self.workers = max(1, int(workers) if workers else cores // self.threads_per_worker)
        self.preload = tuple(preload)
        self.kill_grace_s = float(kill_grace_s)
        self._pool: list[_Worker] = []
        self._queue: deque[tuple[str, Task]] = deque()
        self._ended: dict[str, str] = {}  # job id -> detail
        self._running: dict[str, _Worker] = {}
        self._started = False

    # ---- pool ----------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        for var in THREAD_VARS:
            env[var] = str(self.threads_per_worker)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        argv = [sys.executable, "-m", "engine.dispatch.worker", "--fd", str(theirs.fileno()),
                "--threads", str(self.threads_per_worker)]
        for mod in self.preload:
            argv += ["--preload", mod]
        proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        theirs.close()
        conn = Connection(ours.detach())
        conn.send({"sys_path": [p for p in sys.path if p]})
        return _Worker(proc, conn)

    def start(self) -> None:
        """Workers are spawned on the first submission (a run that only re-attaches, or has
        nothing to do, starts none)."""

    def _ensure_pool(self) -> None:
        if not self._started:
            self._pool = [self._spawn() for _ in range(self.workers)]
            self._started = True

    def _stop_worker(self, w: _Worker) -> None:
        """SIGTERM the worker's process group (its command children die with it), then SIGKILL."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace_s), (signal.SIGKILL, 10.0)):
            if w.proc.poll() is not None:
                break
            try:
                os.killpg(w.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                w.proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        try:
            w.conn.close()
        except OSError:
            pass

    def pump(self) -> None:
        if not self._started:
            if not self._queue:
                return
            self._ensure_pool()
        for i, w in enumerate(self._pool):
            try:
                while w.conn.poll():
                    msg = w.conn.recv()
                    if msg[0] == "done" and msg[1] == w.job:
                        self._ended[w.job] = f"finished ({msg[2]})"
                        self._running.pop(w.job, None)
                        w.job = None
            except (EOFError, OSError):
                pass
            if w.proc.poll() is not None:
                if w.job is not None:
                    code = w.proc.returncode
                    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                    self._ended[w.job] = f"its worker process died ({how})"
                    self._running.pop(w.job, None)
                try:
                    w.conn.close()
                except OSError:
                    pass
                self._pool[i] = w = self._spawn()
            if w.job is None and self._queue:
                job_id, task = self._queue.popleft()
                try:
                    w.conn.send((job_id, task))
                except (BrokenPipeError, OSError):
                    self._queue.appendleft((job_id, task))
                    continue
                w.job = job_id
                self._running[job_id] = w

    # ---- the interface -------------------------------------------------------------------
    def job_id_for(self, task: Task) -> str:
        return f"{self.name}:pid{os.getpid()}#{task.token}"

    def submit(self, task: Task) -> str:
        job_id = self.job_id_for(task)
        self._queue.append((job_id, task))
        self.pump()
        return job_id

    def poll(self, job_id: str) -> JobStatus:
        if job_id in self._ended:
            return JobStatus(JobState.ENDED, self._ended[job_id])
        if job_id in self._running:
            return JobStatus(JobState.RUNNING)
        if any(j == job_id for j, _ in self._queue):
            return JobStatus(JobState.PENDING)
        return JobStatus(JobState.UNKNOWN)

    def cancel(self, job_id: str, *, spool: Spool | None = None) -> None:
        if job_id in self._ended:
            return  # it ended here: nothing to stop (its worker may already run another job)
        for item in list(self._queue):
            if item[0] == job_id:
                self._queue.remove(item)
                self._ended[job_id] = "cancelled before it started"
                return
        w = self._running.pop(job_id, None)
        if w is not None:
            self._stop_worker(w)
            w.job = None
            self._ended[job_id] = "cancelled"
            return
        if spool is not None and self.kill_orphan(spool):
            self._ended[job_id] = "cancelled (a previous dispatcher's worker, killed)"

    def kill_orphan(self, spool: Spool) -> bool:
        """Stop the worker of a previous dispatcher that runs ``spool``'s submission: the
        process ``started.json`` names, if it is on this host and is still that very process
        (same pid *and* start time, so a recycled pid is never hit). Its process group gets
        SIGTERM (the worker then kills its command's programs), SIGKILL after the grace period.
        True if such a process was found."""
        st = spool.started()
        if not is_same_process(st):
            return False
        age = spool.heartbeat_age()
        if age is None or age > ORPHAN_BEAT_S:
            return False  # that worker no longer runs this submission (it would still beat)
        pid = int(st["pid"])
        try:
            group = os.getpgid(pid) == pid  # a pool worker leads its own session and group
        except ProcessLookupError:
            return False
        for sig, wait in ((signal.SIGTERM, self.kill_grace_s), (signal.SIGKILL, 10.0)):
            try:
                if group:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and is_same_process(st) and not _zombie(pid):
                time.sleep(0.05)
            if not is_same_process(st) or _zombie(pid):
                break
        return True

    def shutdown(self, *, wait: bool = True) -> None:
        for w in self._pool:
            if wait and w.job is None and w.proc.poll() is None:
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        deadline = time.monotonic() + (0.5 if wait else 0.0)  # idle workers exit on their own
        for w in self._pool:
            if wait and w.job is None:
                try:
                    w.proc.wait(max(0.01, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    continue  # told to stop; it will
            self._stop_worker(w)
        self._pool = []
        self._queue.clear()
        self._running.clear()
        self._started = False
