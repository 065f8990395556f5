"""The Ray executor (``pip install 'mixplan[cluster]'``).

Each submission runs in a **detached, named** Ray actor (``mixplan-<study>-<token>`` in the
``mixplan`` namespace): detached, so the job outlives a dispatcher that dies, and named, so a
restarted dispatcher re-attaches with :func:`ray.get_actor` and asks it how it is doing.

That holds on a cluster the dispatcher does not own (``address``: one started with ``ray start
--head``, or a remote one). Without ``address`` the dispatcher starts a local Ray inside its
own process (``ray.init``), and Ray fate-shares such a cluster with its driver: if the
dispatcher is killed (``kill -9``, OOM), the cluster and its detached actors die with it
(verified with Ray 2.60). The next ``mixplan run`` then finds the workers gone and submits
those trials again -- nothing stored is lost or duplicated, but their work so far is redone.
To keep jobs running through a dispatcher crash, start the cluster yourself
(``ray start --head --num-cpus N``) and pass ``--address 127.0.0.1:6379``. The
actor runs :func:`engine.dispatch.task.execute_task`, which writes the spool; the spool
directory must therefore be on a filesystem the Ray workers share with the dispatcher (always
true on a single machine; on a cluster put the database on shared storage). The actor is
killed once its end has been seen.

Options: ``address`` (a running cluster, e.g. ``127.0.0.1:6379``, ``ray://head:10001`` or
``auto``; default: start a local cluster with ``workers`` CPUs that lives only as long as the
dispatcher), ``num_cpus`` / ``num_gpus`` per trial (default 1 / 0),
``threads_per_worker`` (default 1), ``runtime_env`` (a table, passed to the actors).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from engine.dispatch.base import Executor, JobState, JobStatus
from engine.dispatch.local import THREAD_VARS
from engine.dispatch.task import Task, execute_task
from engine.errors import NotAvailableError

NAMESPACE = "mixplan"


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise NotAvailableError("the ray executor needs Ray: pip install 'mixplan[cluster]' "
                                "(or pip install 'ray[default]==2.60.0').") from exc
    return ray


class _TrialActor:  # pragma: no cover - runs inside Ray workers
    """One submission. ``max_concurrency=2`` lets ``status``/``stop`` answer while ``run`` runs."""

    def __init__(self, threads: int) -> None:
        for var in THREAD_VARS:
            os.environ[var] = str(threads)
        self.threads = threads
        self.state = "idle"

    def run(self, task: Task) -> str:
        self.state = "running"
        try:
            import sys

            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(self.threads)
            status = execute_task(task)
        finally:
            self.state = "ended"
        return status

    def status(self) -> str:
        return self.state

    def stop(self) -> None:
        from engine.runners.command import kill_active_children

        kill_active_children(signal.SIGKILL)
        os._exit(0)


class RayExecutor(Executor):
    """Trials as detached Ray actors, on a local or remote cluster."""

    name = "ray"
    reattaches = True

    def __init__(self, *, study: str, workers: int | None = None, address: str | None = None,
                 num_cpus: float = 1.0, num_gpus: float = 0.0, threads_per_worker: int = 1,
                 runtime_env: dict[str, Any] | None = None) -> None:
        self.study = study
        self.workers = workers
        self.address = address
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.threads = max(1, int(threads_per_worker))
        self.runtime_env = runtime_env
        self._refs: dict[str, Any] = {}
        self._actors: dict[str, Any] = {}
        self._ended: dict[str, str] = {}
        self._we_started = False
        self._cls = None

    def start(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"namespace": NAMESPACE, "include_dashboard": False,
                                      "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                # "local": always a fresh cluster of our own, never one a `ray start` on this
                # machine left behind (or its stale address file); that one needs --address
                ray.init(address="local", num_cpus=self.workers or os.cpu_count() or 1, **kwargs)
                self._we_started = True
        if self._cls is None:
            self._cls = ray.remote(max_concurrency=2)(_TrialActor)

    def _actor_name(self, token: str) -> str:
        return f"mixplan-{self.study}-{token}"

    def job_id_for(self, task: Task) -> str:
        return f"{self.name}:{self._actor_name(task.token)}#{task.token}"

    def submit(self, task: Task) -> str:
        self.start()
        name = self._actor_name(task.token)
        opts: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "lifetime": "detached",
                                "num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "max_restarts": 0}
        if self.runtime_env:
            opts["runtime_env"] = self.runtime_env
        actor = self._cls.options(**opts).remote(self.threads)
        job_id = self.job_id_for(task)
        self._actors[job_id] = actor
        self._refs[job_id] = actor.run.remote(task)
        return job_id

    def _actor(self, job_id: str):
        actor = self._actors.get(job_id)
        if actor is None:
            ray = _ray()
            self.start()
            name = job_id[len(self.name) + 1:].split("#", 1)[0]
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                return None
            self._actors[job_id] = actor
        return actor

    def _release(self, job_id: str, detail: str) -> JobStatus:
        actor = self._actors.pop(job_id, None)
        self._refs.pop(job_id, None)
        if actor is not None:
            try:
                _ray().kill(actor)
            except Exception:  # noqa: BLE001
                pass
        self._ended[job_id] = detail
        return JobStatus(JobState.ENDED, detail)

    def poll(self, job_id: str) -> JobStatus:
        if job_id in self._ended:
            return JobStatus(JobState.ENDED, self._ended[job_id])
        ray = _ray()
        ref = self._refs.get(job_id)
        if ref is not None:
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                return JobStatus(JobState.RUNNING)
            try:
                detail = f"finished ({ray.get(ref)})"
            except Exception as exc:  # noqa: BLE001 -- the actor died
                detail = f"the Ray actor died: {type(exc).__name__}: {str(exc)[:300]}"
            return self._release(job_id, detail)
        actor = self._actor(job_id)
        if actor is None:
            return JobStatus(JobState.UNKNOWN, "no such Ray actor")
        try:
            state = ray.get(actor.status.remote(), timeout=30)
        except Exception as exc:  # noqa: BLE001
            return self._release(job_id, f"the Ray actor is unreachable: {type(exc).__name__}")
        if state == "ended":
            return self._release(job_id, "finished")
        return JobStatus(JobState.RUNNING if state == "running" else JobState.PENDING)

    def cancel(self, job_id: str, *, spool=None) -> None:
        actor = self._actor(job_id)
        if actor is not None:
            try:
                actor.stop.remote()
            except Exception:  # noqa: BLE001
                pass
        self._release(job_id, "cancelled")

    def shutdown(self, *, wait: bool = True) -> None:
        ray = _ray()
        if wait:
            for job_id in list(self._actors):
                self._release(job_id, "shut down")
        self._actors.clear()
        self._refs.clear()
        if self._we_started and ray.is_initialized():
            if wait or not self.address:
                ray.shutdown()
            self._we_started = False
