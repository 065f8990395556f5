"""``make_executor``: an executor by name, configured from the study and the command line.

Executors are registered by name (``engine.registry``): ``local``, ``slurm`` (submitit) and
``ray`` are built in; :func:`register_executor` adds one, a factory called with the store,
the study, its config, the worker count, the runner and the executor's options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import EXECUTOR_KEYS, StudyConfig, register_executor_keys
from engine.dispatch.base import Executor
from engine.errors import ValidationError
from engine.registry import Registry
from engine.runners.base import Runner


def _local(*, store, study: str, config: StudyConfig, workers: int | None, runner: Runner | None,
           options: dict[str, Any]) -> Executor:
    from engine.dispatch.local import LocalExecutor

    preload = tuple(getattr(runner, "preload", ()) or ())
    return LocalExecutor(workers, threads_per_worker=int(options.get("threads_per_worker", 1)), preload=preload)


def _slurm(*, store, study: str, config: StudyConfig, workers: int | None, runner: Runner | None,
           options: dict[str, Any]) -> Executor:
    from engine.dispatch.base import hard_timeout_for
    from engine.dispatch.slurm import SlurmExecutor
    from engine.dispatch.spool import spool_root

    folder = Path(options.pop("folder", None) or spool_root(store, study) / "submitit")
    cluster = options.pop("cluster", None)
    # the job must outlive every attempt the runner may make (and its back-offs), not one
    return SlurmExecutor(folder, cluster=cluster, timeout_s=hard_timeout_for(runner, config), options=options)


def _ray(*, store, study: str, config: StudyConfig, workers: int | None, runner: Runner | None,
         options: dict[str, Any]) -> Executor:
    from engine.dispatch.ray_exec import RayExecutor

    o = options
    return RayExecutor(study=study, workers=workers, address=o.get("address"), num_cpus=float(o.get("num_cpus", 1)),
                       num_gpus=float(o.get("num_gpus", 0)), threads_per_worker=int(o.get("threads_per_worker", 1)),
                       runtime_env=o.get("runtime_env"))


#: the executors by name
REGISTRY = Registry("executor", {"local": _local, "slurm": _slurm, "ray": _ray})
EXECUTORS = tuple(REGISTRY.names())


def register_executor(name: str, factory, *, keys=()) -> None:
    """Make ``mixplan run --executor <name>`` use ``factory(store=, study=, config=, workers=,
    runner=, options=) -> Executor``; ``keys``: the ``[runner]`` options it reads."""
    global EXECUTORS
    REGISTRY.register(name, factory)
    register_executor_keys(name, keys)
    EXECUTORS = tuple(REGISTRY.names())


def make_executor(name: str, *, store, study: str, config: StudyConfig, workers: int | None = None,
                  runner: Runner | None = None, options: dict[str, Any] | None = None) -> Executor:
    """``local`` (default), ``slurm`` (submitit), ``ray``, or a registered one. Options come from
    the study's ``[runner]`` table, overridden by ``options`` (the command line's)."""
    if name not in REGISTRY:
        raise ValidationError(f"unknown executor {name!r}.", fix=f"use one of {', '.join(REGISTRY.names())}.")
    keys = EXECUTOR_KEYS.get(name, frozenset())
    opts = {k: v for k, v in config.runner.options.items()
            if k in keys or (name == "slurm" and k.startswith("slurm_"))}
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    if workers is None and opts.get("workers") is not None:
        workers = int(opts["workers"])
    if workers is not None and workers < 1:
        raise ValidationError(f"--workers must be >= 1, got {workers}.")
    return REGISTRY.get(name)(store=store, study=study, config=config, workers=workers, runner=runner, options=opts)
