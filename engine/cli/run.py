"""`mixplan run`: train the approved trials on an executor, results into the database."""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Optional

import typer

from engine.cli.common import (DEFAULT_DB, DbOption, JsonFlag, StudyOption, console, console_err, esc, open_store,
                               print_json)


def run(
    study: StudyOption,
    executor: Annotated[str, typer.Option("--executor", "-e", help="local (a worker pool here), slurm (submitit) "
                                          "or ray.")] = "local",
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", help="Local worker processes (default: one "
                                                    "per core) or Ray CPUs for a local Ray cluster.")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds per attempt of a trial "
                                                      "(overrides the study's runner.timeout_s).")] = None,
    trial: Annotated[Optional[list[int]], typer.Option("--trial", "-t", help="Only these approved trials "
                                                        "(repeatable; default: all approved).")] = None,
    partition: Annotated[Optional[str], typer.Option("--partition", help="slurm: partition.")] = None,
    time_min: Annotated[Optional[int], typer.Option("--time-min", help="slurm: job time limit in minutes.")] = None,
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="slurm: GPUs per node; ray: GPUs per trial.")] = None,
    cpus: Annotated[Optional[int], typer.Option("--cpus", help="slurm: CPUs per task; ray: CPUs per trial.")] = None,
    mem_gb: Annotated[Optional[float], typer.Option("--mem-gb", help="slurm: memory per job.")] = None,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="slurm: slurm (default), or submitit's "
                                                    "local / debug executors.")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="ray: cluster address, e.g. 127.0.0.1:6379 "
                                                    "(default: a local cluster that lives only as long as this run; "
                                                    "use a cluster started with `ray start --head` to re-attach "
                                                    "after a crash).")] = None,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Run the study's approved trials (approved -> queued -> running -> done/failed).

    Trials left queued or running by an earlier `mixplan run` that was stopped or killed are
    re-attached (or submitted again) first; nothing already stored is lost or stored twice.
    A failing trial is marked failed with its reason, which ends with its log's tail; the others go on.
    Each run's files (run.log, weights.json, result.json) are kept under
    <db dir>/mixplan-runs/<study>/<run_id>/<token>/ (one folder per submission). Ctrl-C stops the local workers; the
    interrupted trials are picked up by the next `mixplan run`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.dispatch import run_approved

    store = open_store(db)
    store.get_config(study)  # a missing study is an error before any progress bar is drawn
    options = {}
    if executor == "slurm":
        options = {"partition": partition, "time_min": time_min, "gpus_per_node": gpus, "cpus_per_task": cpus,
                   "mem_gb": mem_gb, "cluster": cluster}
    elif executor == "ray":
        options = {"address": address, "num_gpus": gpus, "num_cpus": cpus}
    # the message names runs and failure reasons: printed as text, never read as markup
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                   TextColumn("{task.fields[msg]}", markup=False),
                   console=console_err, transient=False, disable=as_json)
    task_id = bar.add_task(f"{esc(study)} on {esc(executor)}", total=None, counts="", msg="")

    def progress(p) -> None:
        counts = f"done {p.done} failed {p.failed} running {p.running} queued {p.queued} ckpts {p.checkpoints}"
        bar.update(task_id, total=p.total or None, completed=p.finished, counts=counts, msg=p.message[:60])

    try:
        with bar:
            summary = run_approved(store, study, executor, workers=workers, timeout_s=timeout, progress=progress,
                                   trial_ids=trial or None, executor_options=options)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (engine.dispatch.interrupt.Terminated)
        console_err.print("[yellow]interrupted[/]: trials still queued or running are picked up again by the next "
                          f"`mixplan run --study {esc(study)}`.")
        # 128 + the signal, as a shell reports it (typer.Exit's code is lost under standalone_mode=False)
        sys.exit(128 + int(getattr(exc, "signum", signal.SIGINT)))
    if as_json:
        print_json(summary.to_dict())
        return
    if not (summary.done or summary.failed or summary.reattached or summary.cancelled):
        console.print(f"nothing to run in study [bold]{esc(study)}[/]: approve trials first "
                      f"(`mixplan approve --study {esc(study)} --all`).")
        return
    console.print(f"[bold]{esc(study)}[/]: {len(summary.done)} done, {len(summary.failed)} failed, "
                  f"{summary.checkpoints} checkpoint(s) stored in {summary.wall_s:.1f} s"
                  + (f"; re-attached {len(summary.reattached)}" if summary.reattached else "")
                  + (f"; resubmitted {len(summary.resubmitted)}" if summary.resubmitted else "")
                  + (f"; cancelled {len(summary.cancelled)}" if summary.cancelled else ""))
    for tid, reason in summary.failed.items():
        log = summary.logs.get(tid)
        console.print(f"  [red]trial {tid} failed[/]: {esc(reason)}" + (f"\n    log: {esc(log)}" if log else ""),
                      highlight=False)
    if summary.failed:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
