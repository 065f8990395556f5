"""The SLURM executor, through submitit (``pip install 'mixplan[cluster]'``).

Each submission is one SLURM job running :func:`engine.dispatch.task.execute_task`; submitit
pickles the task into its folder (``<db dir>/.mixplan-spool/<study>/submitit`` by default,
which, like the spool, must be on a filesystem the compute nodes share). The job writes the
spool; the dispatcher only asks SLURM whether the job still exists, so a restarted dispatcher
re-attaches by job id (``sacct``/``squeue`` through :class:`submitit.SlurmJob`).

Options (the study's ``[runner]`` table, or ``mixplan run`` flags): ``partition``,
``time_min`` (default: the submission's hard limit -- every attempt the runner may make, its
back-offs and set-up, :func:`engine.dispatch.dispatcher.hard_timeout_for` -- plus 10 minutes), ``gpus_per_node``,
``cpus_per_task``, ``mem_gb``, ``account``, ``qos``, ``constraint``, ``setup`` (shell lines
run before the job, e.g. ``module load``), ``slurm_*`` (passed to submitit as is),
``cluster`` (``slurm`` | ``local`` | ``debug``: submitit's own executors, for tests and
laptops; ``local`` runs each job as a subprocess here, ``debug`` runs it inside the dispatcher),
``unknown_grace_s`` (default 300 on SLURM, else 0: how long a job that has not started is
taken as pending while SLURM cannot be asked about it; then it is cancelled and resubmitted).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.dispatch.base import Executor, JobState, JobStatus
from engine.dispatch.task import Task, execute_task
from engine.errors import ConfigError, NotAvailableError

_PASS = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
         "constraint": "slurm_constraint"}
_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
          "DEADLINE", "FINISHED", "INTERRUPTED", "DONE", "REVOKED"}
_PENDING = {"PENDING", "QUEUED", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED"}


def _submitit():
    try:
        import submitit
    except ImportError as exc:
        raise NotAvailableError("the slurm executor needs submitit: pip install 'mixplan[cluster]' "
                                "(or pip install submitit==1.5.4).") from exc
    return submitit


class SlurmExecutor(Executor):
    """Jobs on SLURM (or submitit's local/debug executors)."""

    name = "slurm"
    reattaches = True

    def __init__(self, folder: str | Path, *, cluster: str | None = None, timeout_s: float = 3600.0,
                 options: dict[str, Any] | None = None) -> None:
        """``timeout_s``: the longest a submission may run, all attempts of its runner together
        (the default ``time_min`` is that plus 10 minutes)."""
        self.folder = Path(folder)
        self.cluster = cluster or "slurm"
        if self.cluster not in ("slurm", "local", "debug"):
            raise ConfigError(f"slurm executor: cluster must be slurm, local or debug, got {self.cluster!r}.")
        self.options = dict(options or {})
        self.timeout_s = float(timeout_s)
        # sacct/squeue can fail for a while (a busy or restarting controller): a job that has
        # not started yet is taken as pending that long before it is resubmitted
        self.unknown_grace_s = float(self.options.pop("unknown_grace_s", 300.0 if self.cluster == "slurm" else 0.0))
        self._jobs: dict[str, Any] = {}
        self._executor = None

    def parameters(self) -> dict[str, Any]:
        """The submitit parameters these options give (``update_parameters`` keywords)."""
        o = self.options
        time_min = o.get("time_min", o.get("timeout_min"))
        if time_min is None:
            time_min = math.ceil(self.timeout_s / 60.0) + 10
        p: dict[str, Any] = {"timeout_min": int(time_min), "name": str(o.get("job_name", "mixplan"))}
        for key in ("gpus_per_node", "cpus_per_task", "mem_gb", "nodes", "tasks_per_node"):
            if o.get(key) is not None:
                p[key] = o[key]
        if self.cluster == "slurm":
            for key, name in _PASS.items():
                if o.get(key) is not None:
                    p[name] = o[key]
            if o.get("setup"):
                setup = o["setup"]
                p["slurm_setup"] = [setup] if isinstance(setup, str) else list(setup)
            p.update({k: v for k, v in o.items() if k.startswith("slurm_")})
        elif self.cluster == "local" and o.get("setup"):
            setup = o["setup"]
            p["local_setup"] = [setup] if isinstance(setup, str) else list(setup)
        return p

    def start(self) -> None:
        if self._executor is not None:
            return
        submitit = _submitit()
        self.folder.mkdir(parents=True, exist_ok=True)
        ex = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        params = self.parameters()
        if self.cluster == "debug":
            params = {}  # the debug executor takes no scheduling parameters
        try:
            ex.update_parameters(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"slurm executor: bad option ({exc}).",
                              fix="see `mixplan run --help` for the executor options.") from exc
        self._executor = ex

    def submit(self, task: Task) -> str:
        self.start()
        job = self._executor.submit(execute_task, task)
        job_id = f"{self.name}:{job.job_id}#{task.token}"
        self._jobs[job_id] = job
        return job_id

    def _job(self, job_id: str):
        job = self._jobs.get(job_id)
        if job is None and self.cluster == "slurm":
            native = job_id[len(self.name) + 1:].split("#", 1)[0]
            if native:
                job = _submitit().SlurmJob(folder=str(self.folder), job_id=native)
                self._jobs[job_id] = job
        return job

    def poll(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        if job is None:
            return JobStatus(JobState.UNKNOWN)
        if self.cluster == "debug":
            job.done()  # the debug executor runs the job here, now
            return JobStatus(JobState.ENDED, "finished (debug executor)")
        try:
            state = str(job.state).upper()
        except Exception as exc:  # noqa: BLE001 -- sacct hiccups: ask again next tick
            return JobStatus(JobState.UNKNOWN, str(exc))
        head = state.split()[0] if state else ""
        if head in _ENDED:
            return JobStatus(JobState.ENDED, f"{self.cluster} job {job.job_id} is {state}")
        if head in _PENDING or head == "UNKNOWN" and self.cluster == "slurm":
            return JobStatus(JobState.PENDING)
        if head == "RUNNING" or head.startswith("COMPLETING"):
            return JobStatus(JobState.RUNNING)
        return JobStatus(JobState.UNKNOWN, state)

    def cancel(self, job_id: str, *, spool=None) -> None:
        job = self._job(job_id)
        if job is not None:
            job.cancel(check=False)

    def shutdown(self, *, wait: bool = True) -> None:
        self._jobs.clear()
