"""The executor interface: submit, poll, cancel, re-attach.

An executor only moves :class:`~engine.dispatch.task.Task` objects to workers and reports
whether a job is still alive. Results never travel through it: the worker writes them to the
submission's spool and the dispatcher reads them from there (see :mod:`engine.dispatch.spool`),
so an executor may forget everything -- the dispatcher process may be killed -- and no result
is lost.

Job ids are strings prefixed with the executor's name (``local:<token>``, ``slurm:<id>``,
``ray:<actor>``) and are stored with the trial (``trials.job_id``), so a restarted dispatcher
can ask the executor about them again (:meth:`Executor.poll` answers ``UNKNOWN`` when it
cannot tell; the dispatcher then judges by the spool's heartbeat, after the executor's
``unknown_grace_s`` for a job that never beat). Before a job is resubmitted, the old one is
cancelled (:meth:`Executor.cancel`), so a trial never runs twice at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from engine.dispatch.spool import Spool
from engine.dispatch.task import Task

if TYPE_CHECKING:  # pragma: no cover
    from engine.config import StudyConfig
    from engine.runners.base import Runner


class JobState(str, Enum):
    """What an executor knows about a job."""

    PENDING = "pending"  # accepted, not started (queued in the pool / on the cluster)
    RUNNING = "running"
    ENDED = "ended"  # the worker is gone (finished, crashed or killed); the spool says how it went
    UNKNOWN = "unknown"  # this executor cannot tell (e.g. a local job of a previous dispatcher)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    detail: str = ""


class Executor(ABC):
    """Runs tasks somewhere. Subclasses set ``name`` (the job id prefix)."""

    name: ClassVar[str]
    #: True when jobs of a previous dispatcher process can still be asked about.
    reattaches: ClassVar[bool] = False
    #: True when the local pool's workers are this process's children (see execute_task).
    local_children: ClassVar[bool] = False
    #: Seconds a job that never started (no heartbeat) is taken as pending while ``poll``
    #: answers ``UNKNOWN`` (a scheduler query that failed), before it is given up and resubmitted.
    unknown_grace_s: float = 0.0

    def start(self) -> None:
        """Bring up whatever the executor needs (pool, connection). Idempotent."""

    @abstractmethod
    def submit(self, task: Task) -> str:
        """Hand ``task`` to a worker; returns the job id."""

    def job_id_for(self, task: Task) -> str | None:
        """The job id ``submit`` will return, where it is known beforehand (saves the
        dispatcher a database write per trial); None where the scheduler assigns it."""
        return None

    @abstractmethod
    def poll(self, job_id: str) -> JobStatus:
        """Is the job pending, running, ended -- or unknown to this executor?"""

    @abstractmethod
    def cancel(self, job_id: str, *, spool: Spool | None = None) -> None:
        """Stop the job now (the dispatcher first asks politely through the spool). ``spool``:
        the submission's spool, for executors that find a previous dispatcher's job there
        (the local pool kills the worker that ``started.json`` names)."""

    def pump(self) -> None:
        """Called every tick of the dispatcher (a local pool hands out queued tasks here)."""

    def shutdown(self, *, wait: bool = True) -> None:
        """Release resources; ``wait=False`` (interrupted) leaves cluster jobs running."""

    def owns(self, job_id: str | None) -> bool:
        return bool(job_id) and job_id.startswith(self.name + ":")

    def __enter__(self) -> "Executor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown(wait=exc[0] is None)


def hard_timeout_for(runner: "Runner", config: "StudyConfig", margin_s: float = 120.0) -> float:
    """The dispatcher's own limit on one submission: the runner's set-up allowance
    (``setup_s``, e.g. preparing a corpus), every attempt it may make, its back-offs, and a
    margin (the runner enforces ``timeout_s`` itself; this is the backstop). Runners without
    ``retry_backoff_s`` are charged the command runner's default back-off (5 s)."""
    timeout = float(getattr(runner, "timeout_s", config.runner.timeout_s))
    retries = int(getattr(runner, "retries", config.runner.retries))
    backoff = float(getattr(runner, "retry_backoff_s", config.runner.options.get("retry_backoff_s", 5.0)))
    setup = float(getattr(runner, "setup_s", 0.0))
    return setup + timeout * (retries + 1) + backoff * (2 ** retries - 1) + margin_s


