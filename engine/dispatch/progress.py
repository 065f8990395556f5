"""Live progress of a study's queued and running trials, read from what the workers write.

Nothing here is estimated from the trial alone; every figure comes from a file a worker or the
dispatcher wrote (see :mod:`engine.dispatch.spool`):

- the store: the trial's state, its length (``steps`` or ``tokens``), its job id, whose token
  names the submission's folders;
- the submission's spool: ``started.json`` (when the worker began: elapsed time),
  ``ck-NNNNNN.json`` (each checkpoint's steps and losses; the file's time is when it was
  measured: the rate, hence the ETA), ``heartbeat`` and ``final.json``;
- ``dispatch.json``: the dispatcher's pid, executor and workers, and when it handed each trial
  over (why a queued trial waits, and for how long);
- the run's log, ``<db dir>/mixplan-runs/<study>/<run_id>/<token>/run.log`` (its tail, on
  demand: :func:`run_log`).

Where a running trial's spool holds no checkpoint (a worker on a host whose files this machine
cannot see), the checkpoints the dispatcher stored stand in: steps and loss, no ETA.

>>> for p in study_progress(store, "demo"):
...     print(p.text())
trial 65 (r0065): step 300 / 500 (60%) · mean_loss 2.613 · running 12 s · ETA 8 s
trial 66 (r0066): queued 12 s · waiting for a free worker: 1 of 1 busy
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.dispatch.spool import Spool, is_same_process, read_dispatch_info
from engine.dispatch.task import STALE_AFTER_S
from engine.numbers import duration, human
from engine.records import Checkpoint, Trial, TrialState
from engine.runtable.schema import LOSS_PREFIX, METRIC_PREFIX, objective_values
from engine.store import Store

__all__ = ["TrialProgress", "objective_at", "run_log", "study_progress"]


@dataclass(frozen=True)
class TrialProgress:
    """Where one queued or running trial stands. ``done`` / ``total`` count ``axis`` (steps,
    or tokens for trials that have only tokens); None where unknown."""

    trial_id: int
    run_id: str
    state: str  # "queued" | "running"
    model_params: int
    axis: str | None
    done: float | None
    total: float | None
    checkpoints: int
    objective: str
    value: float | None  # the objective at the last checkpoint
    elapsed_s: float | None  # running: since its worker started; queued: since it was handed over
    eta_s: float | None
    note: str  # queued: why it waits; running: anything wrong (a silent worker), else ''
    log: str | None  # the run's log file, where there is one

    @property
    def fraction(self) -> float | None:
        """done / total in [0, 1] (None where either is unknown)."""
        if self.done is None or not self.total:
            return None
        return min(1.0, max(0.0, float(self.done) / float(self.total)))

    def text(self) -> str:
        """One line for a page or a terminal."""
        head = f"trial {self.trial_id} ({self.run_id}): "
        if self.state == TrialState.QUEUED.value:
            parts = ["queued" + (f" {duration(self.elapsed_s)}" if self.elapsed_s is not None else "")]
            return head + " · ".join(parts + ([self.note] if self.note else []))
        parts = []
        if self.done is not None:
            word = "step" if self.axis == "steps" else "tokens"
            done = f"{int(self.done):,}" if self.axis == "steps" else human(self.done)
            total = "" if self.total is None else (" / " + (f"{int(self.total):,}" if self.axis == "steps"
                                                          else human(self.total)))
            pct = f" ({self.fraction:.0%})" if self.fraction is not None else ""
            parts.append(f"{word} {done}{total}{pct}")
        else:
            parts.append("no checkpoint yet")
        if self.value is not None:
            parts.append(f"{self.objective} {self.value:.4g}")
        if self.elapsed_s is not None:
            parts.append(f"running {duration(self.elapsed_s)}")
        if self.eta_s is not None:
            parts.append("ETA " + ("any moment" if self.eta_s < 1 else duration(self.eta_s)))
        if self.note:
            parts.append(self.note)
        return head + " · ".join(parts)


def objective_at(checkpoint: Checkpoint, objective: str) -> float | None:
    """The study's objective at one checkpoint (``mean_loss``: the mean of all its losses, as
    :func:`engine.runtable.schema.objective_values` computes it for a run table)."""
    row = {LOSS_PREFIX + k: v for k, v in checkpoint.losses.items()}
    row.update({METRIC_PREFIX + k: v for k, v in checkpoint.metrics.items()})
    try:
        v = float(objective_values(pd.DataFrame([row]), objective).iloc[0])
    except (KeyError, ValueError, TypeError):
        return None
    return v if v == v else None


def _token(job_id: str | None) -> str | None:
    if not job_id or "#" not in job_id:
        return None
    return job_id.rsplit("#", 1)[1] or None


def _roots(store: Store, study: str) -> tuple[Path, Path]:
    from engine.dispatch.dispatcher import runs_root, spool_root

    return spool_root(store, study), runs_root(store, study)


def run_log(store: Store, study: str, trial: Trial) -> Path | None:
    """The log file of the trial's latest submission (None where it has none): the one its job
    id names, else the newest under ``<db dir>/mixplan-runs/<study>/<run_id>/``."""
    _, runs = _roots(store, study)
    folder = runs / trial.run_id
    token = _token(trial.job_id)
    if token and (folder / token / "run.log").exists():
        return folder / token / "run.log"
    try:
        logs = sorted(folder.glob("*/run.log"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    return logs[-1] if logs else None


def _length(trial: Trial) -> tuple[str | None, float | None]:
    if trial.steps is not None:
        return "steps", float(trial.steps)
    if trial.tokens is not None:
        return "tokens", float(trial.tokens)
    return None, None


def _eta(axis: str | None, total: float | None, points: list[tuple[float, float]], start: float | None,
         now: float) -> float | None:
    """Seconds left, from the rate between the first and last checkpoint of the attempt (or
    from the worker's start to the only checkpoint): (time, done) pairs in time order."""
    if axis is None or not total or not points:
        return None
    t_last, done_last = points[-1]
    if len(points) >= 2 and points[-1][1] > points[0][1] and t_last > points[0][0]:
        rate = (done_last - points[0][1]) / (t_last - points[0][0])
    elif start is not None and t_last > start and done_last > 0:
        rate = done_last / (t_last - start)
    else:
        return None
    if rate <= 0:
        return None
    return max(0.0, t_last + (float(total) - done_last) / rate - now)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def study_progress(store: Store, study: str, *, now: float | None = None, trials: list[Trial] | None = None,
                   objective: str | None = None) -> list[TrialProgress]:
    """Progress of every queued and running trial of ``study``, oldest first (see the module
    doc for where each figure comes from). ``trials`` (the study's queued and running trials)
    and ``objective`` spare a caller that has them two reads of the database."""
    now = time.time() if now is None else float(now)
    if trials is None:
        trials = store.trials(study, [TrialState.QUEUED, TrialState.RUNNING])
    trials = [t for t in trials if t.state in (TrialState.QUEUED, TrialState.RUNNING)]
    if not trials:
        return []
    if objective is None:
        objective = store.get_config(study).objective
    spool_dir, _ = _roots(store, study)
    info = read_dispatch_info(spool_dir)
    host = socket.gethostname()
    if info is not None and info.get("host") == host and not is_same_process(info):
        info = None  # a dispatcher killed outright left its file behind
    submitted = {int(k): float(v) for k, v in ((info or {}).get("submitted") or {}).items()}

    spools = {t.trial_id: Spool(spool_dir / str(t.trial_id) / tok) for t in trials if (tok := _token(t.job_id))}
    started = {tid: s.started() for tid, s in spools.items()}
    finals = {tid: (s.path / "final.json").exists() for tid, s in spools.items()}
    busy = sum(1 for t in trials if t.state == TrialState.RUNNING or (started.get(t.trial_id) and not finals[t.trial_id]))
    stored: pd.DataFrame | None = None
    out: list[TrialProgress] = []
    line = 0
    for t in trials:
        axis, total = _length(t)
        spool = spools.get(t.trial_id)
        st = started.get(t.trial_id)
        log = run_log(store, study, t)
        if t.state == TrialState.QUEUED and not st:
            line += 1
            since = submitted.get(t.trial_id)
            out.append(TrialProgress(t.trial_id, t.run_id, t.state.value, t.model_params, axis, None, total, 0,
                                     objective, None, None if since is None else max(0.0, now - since), None,
                                     _why_queued(t, info, busy, line, host), None if log is None else str(log)))
            continue
        # running (or queued, but its worker has begun: the dispatcher has not looked yet)
        points: list[tuple[float, float]] = []
        last: Checkpoint | None = None
        n = 0
        if spool is not None:
            spooled = spool.read_spooled()
            if spooled:
                attempt = max(x.attempt for x in spooled)
                cur = [x for x in spooled if x.attempt == attempt]
                n = len(cur)
                last = cur[-1].checkpoint
                if last.steps is None and t.tokens is not None:  # a runner that counts tokens only
                    axis, total = "tokens", float(t.tokens)
                for x in cur:
                    d = x.checkpoint.steps if axis == "steps" else x.checkpoint.tokens
                    try:
                        when = (spool.path / x.name).stat().st_mtime
                    except OSError:
                        continue
                    if d is not None:
                        points.append((when, float(d)))
        if last is None and spool is not None and not spool.path.exists() and t.state == TrialState.RUNNING:
            # its spool is gone: the dispatcher stored its end since the trials were read
            out.append(TrialProgress(t.trial_id, t.run_id, t.state.value, t.model_params, axis, None, total, 0,
                                     objective, None, None, None, "finished; its result is being stored",
                                     None if log is None else str(log)))
            continue
        if last is None:  # nothing in the spool: what the dispatcher stored, if anything
            if stored is None:
                stored = store.runs_frame(study, meta=True, states=[TrialState.RUNNING, TrialState.QUEUED])
            mine = stored[stored["trial_id"] == t.trial_id]
            if len(mine):
                n = len(mine)
                row = mine.iloc[-1]
                try:
                    value = float(objective_values(mine.tail(1), objective).iloc[0])
                except (KeyError, ValueError, TypeError):
                    value = float("nan")
                done = row.get(axis) if axis else None
                out.append(TrialProgress(t.trial_id, t.run_id, TrialState.RUNNING.value, t.model_params, axis,
                                         None if done is None or pd.isna(done) else float(done), total, n, objective,
                                         None if pd.isna(value) else float(value),
                                         _elapsed(st, now), None, _running_note(spool, finals.get(t.trial_id)),
                                         None if log is None else str(log)))
                continue
        done = None
        if last is not None:
            d = last.steps if axis == "steps" else last.tokens
            done = None if d is None else float(d)
        t0 = float(st["time"]) if st and st.get("time") is not None else None
        out.append(TrialProgress(
            t.trial_id, t.run_id, TrialState.RUNNING.value, t.model_params, axis, done, total, n, objective,
            None if last is None else objective_at(last, objective), _elapsed(st, now),
            _eta(axis, total, sorted(points), t0, now), _running_note(spool, finals.get(t.trial_id)),
            None if log is None else str(log)))
    return out


def _elapsed(started: dict | None, now: float) -> float | None:
    if not started or started.get("time") is None:
        return None
    return max(0.0, now - float(started["time"]))


def _running_note(spool: Spool | None, final: bool | None) -> str:
    if spool is None:
        return ""
    if final:
        return "finished; its result is being stored"
    age = spool.heartbeat_age()
    if age is not None and age > STALE_AFTER_S:
        return (f"no heartbeat for {duration(age)}: its worker may be gone (the dispatcher submits it again "
                "once it is sure)")
    return ""


def _why_queued(trial: Trial, info: dict | None, busy: int, line: int, host: str) -> str:
    """Why a queued trial has not started: no dispatcher, all workers busy, a scheduler."""
    job = trial.job_id or ""
    if info is None:
        return ("no dispatcher is running for this study (it ended or was stopped): Run approved, or "
                "`mixplan run --study " + trial.study + "`, picks it up again")
    if info.get("host") not in (None, host):
        return f"handed to the {info.get('executor', '?')} executor by a dispatcher on {info.get('host')}"
    executor = info.get("executor") or job.split(":", 1)[0]
    if executor == "local":
        workers = info.get("workers")
        if workers and busy >= int(workers):
            return (f"waiting for a free worker: {busy} of {workers} busy"
                    + (f" ({_ordinal(line)} in line)" if line > 1 else ""))
        return "starting on a worker (a fresh worker imports its libraries first)"
    if executor == "slurm":
        jid = job.split(":", 1)[1].split("#", 1)[0] if ":" in job else ""
        return f"waiting for SLURM to start job {jid}".rstrip() + " (the cluster's queue)"
    if executor == "ray":
        return "waiting for Ray to start its actor (the cluster's resources)"
    return f"waiting for the {executor} executor"
