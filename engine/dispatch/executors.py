"""``make_executor``: an executor by name, configured from the study and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import EXECUTOR_KEYS, StudyConfig
from engine.dispatch.base import Executor
from engine.errors import ValidationError
from engine.runners.base import Runner

EXECUTORS = tuple(EXECUTOR_KEYS)


def make_executor(name: str, *, store, study: str, config: StudyConfig, workers: int | None = None,
                  runner: Runner | None = None, options: dict[str, Any] | None = None) -> Executor:
    """``local`` (default), ``slurm`` (submitit) or ``ray``. Options come from the study's
    ``[runner]`` table, overridden by ``options`` (the command line's)."""
    if name not in EXECUTORS:
        raise ValidationError(f"unknown executor {name!r}.", fix=f"use one of {', '.join(EXECUTORS)}.")
    opts = {k: v for k, v in config.runner.options.items()
            if k in EXECUTOR_KEYS[name] or (name == "slurm" and k.startswith("slurm_"))}
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    if workers is None and opts.get("workers") is not None:
        workers = int(opts["workers"])
    if workers is not None and workers < 1:
        raise ValidationError(f"--workers must be >= 1, got {workers}.")
    if name == "local":
        from engine.dispatch.local import LocalExecutor

        preload = tuple(getattr(runner, "preload", ()) or ())
        return LocalExecutor(workers, threads_per_worker=int(opts.get("threads_per_worker", 1)), preload=preload)
    if name == "slurm":
        from engine.dispatch.dispatcher import hard_timeout_for, spool_root
        from engine.dispatch.slurm import SlurmExecutor

        folder = Path(opts.pop("folder", None) or spool_root(store, study) / "submitit")
        cluster = opts.pop("cluster", None)
        # the job must outlive every attempt the runner may make (and its back-offs), not one
        return SlurmExecutor(folder, cluster=cluster, timeout_s=hard_timeout_for(runner, config), options=opts)
    from engine.dispatch.ray_exec import RayExecutor

    return RayExecutor(study=study, workers=workers, address=opts.get("address"),
                       num_cpus=float(opts.get("num_cpus", 1)), num_gpus=float(opts.get("num_gpus", 0)),
                       threads_per_worker=int(opts.get("threads_per_worker", 1)), runtime_env=opts.get("runtime_env"))
