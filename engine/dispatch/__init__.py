"""Dispatch: approved trials become training jobs on this machine, SLURM or Ray.

>>> from engine.dispatch import run_approved
>>> summary = run_approved(store, "my-study", executor="local", workers=2)

- :mod:`engine.dispatch.dispatcher` -- ``run_approved`` / :class:`Dispatcher`: the one process
  that writes the database; re-attaches after a restart.
- :mod:`engine.dispatch.base` -- the :class:`Executor` interface (submit, poll, cancel).
- :mod:`engine.dispatch.local`, :mod:`engine.dispatch.slurm`, :mod:`engine.dispatch.ray_exec`.
- :mod:`engine.dispatch.spool` -- how results travel back (atomic files, idempotent ingest).
- :mod:`engine.dispatch.task` -- what a worker runs.
- :mod:`engine.dispatch.progress` -- ``study_progress``: each queued / running trial's steps,
  loss, elapsed time, ETA and why it waits, from the files the workers write.

Names are imported lazily: a worker process imports :mod:`engine.dispatch.task` without
pulling in the store (pandas, DuckDB), which it never uses.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Executor": "engine.dispatch.base", "JobState": "engine.dispatch.base", "JobStatus": "engine.dispatch.base",
    "DispatchSummary": "engine.dispatch.dispatcher", "Dispatcher": "engine.dispatch.dispatcher",
    "Progress": "engine.dispatch.dispatcher", "run_approved": "engine.dispatch.dispatcher",
    "EXECUTORS": "engine.dispatch.executors", "make_executor": "engine.dispatch.executors",
    "Spool": "engine.dispatch.spool", "Task": "engine.dispatch.task", "execute_task": "engine.dispatch.task",
    "TrialProgress": "engine.dispatch.progress", "study_progress": "engine.dispatch.progress",
    "run_log": "engine.dispatch.progress",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'engine.dispatch' has no attribute {name!r}")
