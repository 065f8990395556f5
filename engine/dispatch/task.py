"""What travels to a worker, and what a worker does with it (on any executor).

A :class:`Task` is one submission of one trial: the trial, its runner, where the runner may
write (``out_dir``) and the submission's :class:`~engine.dispatch.spool.Spool`. It is plain and
picklable, so the same object goes into a local worker's pipe, a SLURM job (submitit pickles
it) or a Ray actor call. :func:`execute_task` is the whole worker side: it never touches the
database, and it always ends by writing ``final.json`` (done or failed) unless the process is
killed outright -- which the dispatcher notices from the heartbeat or the executor.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from engine.dispatch.spool import Spool, SpoolSink
from engine.records import Trial
from engine.runners.base import Runner, RunFailed

#: Seconds between heartbeats; a heartbeat older than :data:`STALE_AFTER_S` means the worker died.
HEARTBEAT_S = 2.0
STALE_AFTER_S = 20.0


@dataclass(frozen=True)
class Task:
    """One submission of a trial."""

    study: str
    trial: Trial
    runner: Runner
    out_dir: str
    spool_dir: str
    token: str

    @property
    def spool(self) -> Spool:
        return Spool(self.spool_dir)


def execute_task(task: Task, *, heartbeat_s: float = HEARTBEAT_S, parent_pid: int | None = None) -> str:
    """Run ``task`` in this process, spooling its checkpoints and its end. Returns the final
    status ("done" / "failed"). ``parent_pid``: skip the task if that process (the dispatcher
    of a local pool) is already gone -- its successor will submit the trial again."""
    spool = task.spool
    if parent_pid is not None and os.getppid() != parent_pid:
        return "skipped"
    final = spool.final()
    if final is not None:  # a retried delivery of a task that already ran
        return final.status
    cancel = threading.Event()
    stop = threading.Event()
    spool.mark_started(token=task.token, trial_id=task.trial.trial_id)

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                spool.beat()
                if spool.cancel_requested():
                    cancel.set()
            except OSError:
                pass

    hb = threading.Thread(target=beat, name="mixplan-heartbeat", daemon=True)
    hb.start()
    t0 = time.monotonic()
    try:
        if spool.cancel_requested():
            raise RunFailed("cancelled")
        sink = SpoolSink(spool)
        result = task.runner.run(task.trial, Path(task.out_dir), cancel=cancel, on_checkpoint=sink)
        if not result.checkpoints:
            raise RunFailed("the runner reported no checkpoint")
        if result.wall_s is None:
            from dataclasses import replace

            result = replace(result, wall_s=time.monotonic() - t0)
        spool.write_done(result, attempt=sink.attempt)
        return "done"
    except RunFailed as exc:
        spool.write_failed(exc.reason, exc.log_tail)
        return "failed"
    except BaseException as exc:  # noqa: BLE001 -- any crash of the runner is the trial's failure
        spool.write_failed(f"the runner crashed: {type(exc).__name__}: {exc}", traceback.format_exc())
        if not isinstance(exc, Exception):
            raise
        return "failed"
    finally:
        stop.set()
