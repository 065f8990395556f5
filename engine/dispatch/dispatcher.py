"""``run_approved``: approved trials -> queued -> running -> done | failed, on any executor.

The dispatcher is the one process that writes the database for a study's runs. Its loop:

1. **Lock.** One dispatcher per study (an ``flock`` on the study's spool directory, released
   by the kernel if the process dies, even by ``kill -9``).
2. **Re-attach.** Trials left ``queued``/``running`` by an earlier dispatcher are picked up
   again: their spool is ingested; a job the executor (or a fresh heartbeat) says is alive is
   watched to its end; a job that is gone without a result is submitted again.
3. **Submit.** Approved trials go to ``queued``; each gets a fresh submission token, its job
   id (``<executor>:<id>#<token>``) is stored before and after the hand-over.
4. **Ingest.** Every ``poll_s``: spooled checkpoints -> :meth:`Store.record_checkpoints`, a
   spooled end -> :meth:`Store.complete_trial` / :meth:`Store.fail_trial`. All idempotent,
   so a crash between any two steps loses nothing and duplicates nothing; a submission's spool
   is deleted only after its trial's end is committed.

A failing trial (crash, timeout, malformed result, lost worker, a result the store rejects)
is marked ``failed`` with the reason and the log's tail (its last lines end the reason too,
where the run itself failed); the queue goes on.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.dispatch.base import Executor, JobState, hard_timeout_for
from engine.dispatch.interrupt import ctrl_c_guard
from engine.dispatch.spool import (
    Spool,
    process_start_time,
    remove_dispatch_info,
    runs_root,
    spool_root,
    write_dispatch_info,
)
from engine.dispatch.task import STALE_AFTER_S, Task
from engine.errors import MixplanError, StateError, ValidationError
from engine.records import Trial, TrialState
from engine.runners.base import Runner, reason_with_log
from engine.runners.command import log_tail
from engine.runtable.schema import RUN_ID_FIX, run_id_problem
from engine.store import Store

ACTIVE = (TrialState.QUEUED, TrialState.RUNNING)


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress bars: counts over the trials this run handles."""

    total: int
    done: int
    failed: int
    running: int
    queued: int
    checkpoints: int
    message: str = ""

    @property
    def finished(self) -> int:
        return self.done + self.failed


@dataclass
class DispatchSummary:
    """What ``run_approved`` did."""

    study: str
    executor: str
    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    reattached: list[int] = field(default_factory=list)
    resubmitted: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)  # ended while no dispatcher watched; ingested from the spool
    checkpoints: int = 0
    wall_s: float = 0.0
    cancelled: list[int] = field(default_factory=list)
    logs: dict[int, str] = field(default_factory=dict)  # failed trial -> its run's log file
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "executor": self.executor, "done": self.done,
                "failed": {str(k): v for k, v in self.failed.items()}, "reattached": self.reattached,
                "resubmitted": self.resubmitted, "recovered": self.recovered, "cancelled": self.cancelled,
                "logs": {str(k): v for k, v in self.logs.items()}, "checkpoints": self.checkpoints, "wall_s": round(self.wall_s, 3),
                "interrupted": self.interrupted}


@dataclass
class _Sub:
    """A submission the dispatcher watches."""

    trial: Trial
    token: str
    job_id: str
    spool: Spool
    out_dir: Path
    state: TrialState
    ingested: set[str] = field(default_factory=set)
    #: the runner attempt whose checkpoints the store holds for this submission (None: not
    #: known yet -- the first checkpoints ingested then replace whatever the trial holds)
    attempt: int | None = None
    started_at: float | None = None  # monotonic, when the worker said it started
    heartbeat_only: bool = False  # a previous dispatcher's job the executor cannot see
    cancel_requested_at: float | None = None
    unknown_since: float | None = None  # monotonic: since when the executor cannot say (grace)


def _pid_alive(pid: int) -> bool:
    """A live (non-zombie) Python process with this pid on this machine."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return state != "Z" and b"python" in cmd


def worker_gone(spool: Spool) -> bool:
    """True when the submission's worker ran on this machine and its process is gone (no need
    to wait for its heartbeat to go stale). False when unknown (another host, not started)."""
    st = spool.started()
    if not st or st.get("host") != socket.gethostname() or "pid" not in st:
        return False
    if st.get("pid_start") is not None and process_start_time(int(st["pid"])) != int(st["pid_start"]):
        return True  # gone, and its pid taken by another process since
    return not _pid_alive(st["pid"])


def token_of(job_id: str | None) -> str | None:
    if not job_id or "#" not in job_id:
        return None
    return job_id.rsplit("#", 1)[1] or None


class _StudyLock:
    def __init__(self, path: Path, study: str) -> None:
        self.path, self.study, self.fd = path, study, None

    def __enter__(self) -> "_StudyLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise StateError(f"another `mixplan run` (pid {other}) is already dispatching study '{self.study}'. "
                             "Wait for it to finish, or stop it; a new run re-attaches to its trials.") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class Dispatcher:
    """Runs one study's approved trials on an executor (see the module doc)."""

    def __init__(self, store: Store, study: str, executor: Executor, *, runner: Runner | None = None,
                 timeout_s: float | None = None, progress: Callable[[Progress], None] | None = None,
                 poll_s: float = 0.5, max_resubmits: int = 2, stale_after_s: float = STALE_AFTER_S,
                 kill_grace_s: float = 15.0, runs_dir: Path | None = None, hard_timeout_s: float | None = None,
                 state_check_s: float = 5.0) -> None:
        self.store, self.study, self.executor = store, study, executor
        config = store.get_config(study)
        from engine.runners.safety import check_runner_allowed, dispatch_allowed

        # a dispatcher the app started without --allow-commands re-checks what the app checked
        check_runner_allowed(config, allowed=dispatch_allowed(), action="dispatch the trials of")
        if timeout_s is not None:
            if timeout_s <= 0:
                raise ValidationError(f"--timeout must be > 0 seconds, got {timeout_s:g}.")
            config = replace(config, runner=replace(config.runner, timeout_s=float(timeout_s)))
        self.config = config
        if runner is None:
            from engine.runners.registry import make_runner

            runner = make_runner(config)
        self.runner = runner
        self.hard_timeout_s = hard_timeout_s if hard_timeout_s is not None else hard_timeout_for(runner, config)
        self.state_check_s = state_check_s
        self.progress = progress
        self.poll_s = poll_s
        self.max_resubmits = max_resubmits
        self.stale_after_s = stale_after_s
        self.kill_grace_s = kill_grace_s
        self.root = spool_root(store, study)
        self.runs = Path(runs_dir) / study if runs_dir else runs_root(store, study)
        self.subs: dict[int, _Sub] = {}
        self.summary = DispatchSummary(study, executor.name)
        self._resubmits: dict[int, int] = {}
        self._total = 0
        self._message = ""
        self._info: dict[str, Any] = {}

    # ---- helpers -------------------------------------------------------------------------
    def _report(self, message: str = "") -> None:
        if message:
            self._message = message
        if self.progress is None:
            return
        running = sum(1 for s in self.subs.values() if s.state == TrialState.RUNNING)
        queued = sum(1 for s in self.subs.values() if s.state == TrialState.QUEUED)
        self.progress(Progress(self._total, len(self.summary.done), len(self.summary.failed), running, queued,
                               self.summary.checkpoints, self._message))

    def _publish(self, **changes: Any) -> None:
        """Rewrite ``dispatch.json`` (who dispatches, on what, when each trial was handed over)."""
        self._info.update(changes)
        try:
            write_dispatch_info(self.root, self._info)
        except OSError:
            pass  # advisory: a page says less about queued trials, nothing else depends on it

    def _new_submission(self, trial: Trial) -> _Sub:
        problem = run_id_problem(trial.run_id)
        if problem:  # the store refuses such ids; one stored before it did must not name a path
            raise ValidationError(f"run_id {trial.run_id!r} {problem}; its files would land outside "
                                  f"{self.runs}, so it is not run.", fix=RUN_ID_FIX)
        token = uuid.uuid4().hex[:12]
        spool = Spool(self.root / str(trial.trial_id) / token)
        out_dir = self.runs / trial.run_id / token
        out_dir.mkdir(parents=True, exist_ok=True)
        spool.path.mkdir(parents=True, exist_ok=True)
        task = Task(self.study, trial, self.runner, str(out_dir), str(spool.path), token)
        # the job id (with its token) is stored before the hand-over, so that a dispatcher killed
        # right after it still finds the submission's spool
        known = self.executor.job_id_for(task)
        self.store.set_job(trial.trial_id, known or f"{self.executor.name}:#{token}")
        job_id = self.executor.submit(task)
        if job_id != known:
            self.store.set_job(trial.trial_id, job_id)
        self._info.setdefault("submitted", {})[str(trial.trial_id)] = time.time()
        self._publish()
        return _Sub(trial, token, job_id, spool, out_dir, trial.state)

    def _resubmit(self, sub: _Sub, why: str) -> None:
        tid = sub.trial.trial_id
        n = self._resubmits.get(tid, 0)
        if n >= self.max_resubmits:
            self._fail(sub, f"{why}; gave up after {n + 1} submissions")
            return
        self._resubmits[tid] = n + 1
        # the old job may still be alive (a scheduler that could not answer, a worker whose
        # heartbeat stalled): stop it first, so the trial never runs twice at once
        self._cancel_job(sub)
        self.store.log_event(self.study, "resubmitted", actor="dispatch", trial_id=tid,
                             detail={"reason": why, "old_job_id": sub.job_id})
        new = self._new_submission(sub.trial)
        new.state = sub.state
        new.ingested = set()
        new.attempt = None  # its first checkpoint replaces those of the old submission
        self.subs[tid] = new
        sub.spool.remove()
        if tid not in self.summary.resubmitted:
            self.summary.resubmitted.append(tid)
        self._report(f"{sub.trial.run_id}: {why}; submitted again")

    def _ensure_running(self, sub: _Sub) -> None:
        if sub.state == TrialState.QUEUED:
            self.store.start_trial(sub.trial.trial_id, actor="dispatch", job_id=sub.job_id)
            sub.state = TrialState.RUNNING

    def _finish(self, sub: _Sub) -> None:
        sub.spool.remove()
        try:
            sub.spool.path.parent.rmdir()  # the trial's directory, once no submission is left in it
        except OSError:
            pass
        self.subs.pop(sub.trial.trial_id, None)

    def _fail(self, sub: _Sub, reason: str, tail: str = "", *, with_log: bool = True) -> None:
        """Mark the submission's trial failed. ``with_log``: the reason ends with the log's last
        lines (a failure of the run itself; not a result the store refused)."""
        tid = sub.trial.trial_id
        if not tail:
            tail = log_tail(sub.out_dir / "run.log")
        if with_log:
            reason = reason_with_log(reason, tail)
        try:
            self.store.fail_trial(tid, reason, log_tail=tail, actor="dispatch")
        except StateError:
            pass  # cancelled meanwhile (e.g. from the app): its state stands
        self.summary.failed[tid] = reason
        self.summary.logs[tid] = str(sub.out_dir / "run.log")
        self._finish(sub)
        self._report(f"{sub.trial.run_id} failed: {reason}")

    # ---- one submission, one tick --------------------------------------------------------
    def _ingest(self, sub: _Sub) -> bool:
        """Ingest what the spool holds; True when the submission is over. Few writes: a run
        that ended between two looks is stored by one ``complete_trial``."""
        tid = sub.trial.trial_id
        started = sub.spool.started()
        if started is not None and sub.started_at is None:
            age = max(0.0, time.time() - float(started.get("time", time.time())))
            sub.started_at = time.monotonic() - age
        final = sub.spool.final()
        spooled = sub.spool.read_spooled(skip=sub.ingested)
        try:
            if final is not None and final.status == "done":
                # the result's checkpoints, plus any the same attempt streamed but left out of
                # it, become the trial's only ones: nothing of a failed earlier attempt or
                # submission stays mixed in
                every = sub.spool.read_spooled()
                attempt = final.attempt if final.attempt is not None else max((x.attempt for x in every), default=0)
                result = final.result
                have = {(c.steps, c.tokens) for c in result.checkpoints}
                extra = [x.checkpoint for x in every if x.attempt == attempt
                         and (x.checkpoint.steps, x.checkpoint.tokens) not in have]
                if extra:
                    result = replace(result, checkpoints=sorted(
                        [*result.checkpoints, *extra], key=lambda c: (c.steps or 0, c.tokens or 0.0)))
                stored = self.store.complete_trial(tid, result, actor="dispatch", replace=True)
                if stored:
                    held = len(sub.ingested) if sub.attempt == attempt else 0
                    self.summary.checkpoints += max(0, len(result.checkpoints) - held)
                self.summary.done.append(tid)
                self._finish(sub)
                size = result.info.get("size_used") or result.info.get("size") or ""
                self._report(f"{sub.trial.run_id} done" + (f" ({size})" if size else ""))
                return True
            if started is not None and (final is not None or spooled):
                self._ensure_running(sub)
            if spooled:
                latest = max(x.attempt for x in spooled)
                if sub.attempt is None or latest > sub.attempt:
                    # a new attempt (or a submission whose store state is unknown): its
                    # checkpoints replace what the trial holds, in one transaction
                    cur = [x for x in sub.spool.read_spooled() if x.attempt == latest]
                    added = self.store.record_checkpoints(tid, [x.checkpoint for x in cur], actor="dispatch",
                                                          replace=True)
                    sub.attempt = latest
                else:
                    cur = [x for x in spooled if x.attempt == sub.attempt]  # older attempts' are void
                    added = self.store.record_checkpoints(tid, [x.checkpoint for x in cur], actor="dispatch") \
                        if cur else 0
                sub.ingested.update(x.name for x in spooled)
                self.summary.checkpoints += added
                if added and cur:
                    self._report(f"{sub.trial.run_id}: checkpoint at step {cur[-1].checkpoint.steps}")
            elif started is not None:
                self._ensure_running(sub)
        except (ValidationError, StateError) as exc:
            self._cancel_job(sub)
            self._fail(sub, f"could not store the result: {exc}", with_log=False)
            return True
        if final is None:
            return False
        self._fail(sub, final.reason, final.log_tail)
        return True

    def _cancel_job(self, sub: _Sub) -> None:
        sub.spool.request_cancel()
        if self.executor.owns(sub.job_id):
            try:
                self.executor.cancel(sub.job_id, spool=sub.spool)
            except Exception:  # noqa: BLE001 -- best effort: the trial fails either way
                pass

    def _tick(self, sub: _Sub) -> None:
        # ask the executor first: a job that ended had written its spool before it ended
        status = self.executor.poll(sub.job_id) if self.executor.owns(sub.job_id) and not sub.heartbeat_only \
            else None
        if self._ingest(sub):
            return
        now = time.monotonic()
        if sub.started_at is not None and now - sub.started_at > self.hard_timeout_s:
            if sub.cancel_requested_at is None:
                sub.spool.request_cancel()
                sub.cancel_requested_at = now
                self._report(f"{sub.trial.run_id}: past the hard limit of {self.hard_timeout_s:g} s, stopping it")
            elif now - sub.cancel_requested_at > self.kill_grace_s:
                self._cancel_job(sub)
                self._fail(sub, f"timed out: still running after the dispatcher's hard limit of "
                                f"{self.hard_timeout_s:g} s")
            return
        if status is not None and status.state == JobState.ENDED:
            if not self._ingest(sub):
                self._fail(sub, f"the job ended without a result: {status.detail}")
            return
        if status is not None and status.state != JobState.UNKNOWN:
            sub.unknown_since = None
        if status is None or status.state == JobState.UNKNOWN:
            age = sub.spool.heartbeat_age()
            gone = worker_gone(sub.spool)
            if status is not None and age is None and not gone and self._in_unknown_grace(sub, now):
                return  # e.g. one failed sacct call: a job that never started is taken as pending
            if gone or age is None or age > self.stale_after_s:
                if sub.spool.final() is None:  # last look before giving the job up
                    self._resubmit(sub, "its worker process is gone" if gone else "its worker is gone (no heartbeat "
                                   f"for {'ever' if age is None else f'{age:.0f} s'})")
                else:
                    self._ingest(sub)

    def _in_unknown_grace(self, sub: _Sub, now: float) -> bool:
        """Whether a job the executor cannot see (and that never beat) is still given the
        benefit of the doubt: the executor's ``unknown_grace_s`` since the first such answer."""
        grace = float(getattr(self.executor, "unknown_grace_s", 0.0) or 0.0)
        if grace <= 0:
            return False
        if sub.unknown_since is None:
            sub.unknown_since = now
            self._report(f"{sub.trial.run_id}: the {self.executor.name} executor cannot tell its job's state; "
                         f"taken as pending for up to {grace:g} s")
        return now - sub.unknown_since < grace

    def _check_cancelled(self) -> None:
        """Stop the jobs of trials someone cancelled meanwhile (the app, `mixplan` elsewhere)."""
        gone = {t.trial_id for t in self.store.trials(self.study, [TrialState.CANCELLED], purpose=None)}
        for tid in [t for t in self.subs if t in gone]:
            sub = self.subs[tid]
            self._cancel_job(sub)  # what it stored stays; its spool is dropped
            self.summary.cancelled.append(tid)
            self._finish(sub)
            self._report(f"{sub.trial.run_id}: cancelled, its job stopped")

    # ---- the run -------------------------------------------------------------------------
    def _recover(self, trials: list[Trial]) -> None:
        """Pick up trials an earlier dispatcher left queued/running."""
        for t in trials:
            token = token_of(t.job_id)
            if token is None or not (self.root / str(t.trial_id) / token).is_dir():
                try:
                    sub = self._new_submission(t)
                except ValidationError as exc:
                    self.store.fail_trial(t.trial_id, str(exc), actor="dispatch")
                    self.summary.failed[t.trial_id] = str(exc)
                    continue
                self.subs[t.trial_id] = sub
                self.summary.resubmitted.append(t.trial_id)
                continue
            sub = _Sub(t, token, t.job_id or "", Spool(self.root / str(t.trial_id) / token),
                       self.runs / t.run_id / token, t.state)
            self.subs[t.trial_id] = sub
            if self._ingest(sub):
                self.summary.recovered.append(t.trial_id)
                continue
            status = self.executor.poll(sub.job_id) if self.executor.owns(sub.job_id) else None
            if status is not None and status.state in (JobState.PENDING, JobState.RUNNING):
                self.summary.reattached.append(t.trial_id)
                continue
            if status is not None and status.state == JobState.ENDED:
                continue  # the next tick fails it (after a last look at the spool)
            age = sub.spool.heartbeat_age()
            if status is not None and age is None and not worker_gone(sub.spool) \
                    and self._in_unknown_grace(sub, time.monotonic()):
                self.summary.reattached.append(t.trial_id)
                continue  # not started and the executor cannot tell: the ticks decide after the grace
            if age is not None and age <= self.stale_after_s and not worker_gone(sub.spool):
                sub.heartbeat_only = True
                self.summary.reattached.append(t.trial_id)
                self._report(f"{t.run_id}: re-attached to its running worker")
            else:
                self._resubmit(sub, "its job was lost with the previous dispatcher")

    def _clean_spool(self, keep: dict[int, str]) -> None:
        """Remove spool directories of trials that are over, and stale tokens of active ones."""
        if not self.root.is_dir():
            return
        for d in self.root.iterdir():
            if not d.is_dir() or not d.name.isdigit():
                continue
            tid = int(d.name)
            if tid not in keep:
                shutil.rmtree(d, ignore_errors=True)
                continue
            for tok in d.iterdir():
                if tok.name != keep[tid]:
                    shutil.rmtree(tok, ignore_errors=True)

    def run(self, trial_ids: Sequence[int] | None = None) -> DispatchSummary:
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        with _StudyLock(self.root / ".dispatch.lock", self.study):
            self.executor.start()
            workers = getattr(self.executor, "workers", None)
            self._publish(pid=os.getpid(), pid_start=process_start_time(os.getpid()), host=socket.gethostname(),
                          executor=self.executor.name, workers=int(workers) if workers else None,
                          started=time.time(), submitted={})
            # every purpose: validation runs are trained like any other run
            active = self.store.trials(self.study, ACTIVE, purpose=None)
            approved = self.store.trials(self.study, [TrialState.APPROVED], purpose=None)
            if trial_ids is not None:
                wanted = {int(i) for i in trial_ids}
                known = {t.trial_id for t in approved} | {t.trial_id for t in active}
                missing = wanted - known
                if missing:
                    raise StateError(f"trial(s) {sorted(missing)} are not approved (nor queued/running) in study "
                                     f"'{self.study}'. Approve them first: `mixplan approve --study {self.study} ID`.")
                approved = [t for t in approved if t.trial_id in wanted]
            self._total = len(active) + len(approved)
            self._report(f"{len(approved)} approved, {len(active)} to re-attach")
            try:
                self._recover(active)
                self._clean_spool({tid: s.token for tid, s in self.subs.items()})
                if approved:
                    ids = [t.trial_id for t in approved]
                    self.store.transition(ids, TrialState.QUEUED, actor="dispatch", study=self.study)
                    for t in approved:
                        t = replace(t, state=TrialState.QUEUED)
                        try:
                            self.subs[t.trial_id] = self._new_submission(t)
                        except ValidationError as exc:
                            self.store.fail_trial(t.trial_id, str(exc), actor="dispatch")
                            self.summary.failed[t.trial_id] = str(exc)
                self._report(f"{len(self.subs)} trial(s) on the {self.executor.name} executor")
                last_check = time.monotonic()
                with ctrl_c_guard() as ctrl_c:
                    try:
                        while self.subs:
                            ctrl_c.check()  # a Ctrl-C a store call swallowed
                            self.executor.pump()
                            if time.monotonic() - last_check > self.state_check_s:
                                self._check_cancelled()
                                last_check = time.monotonic()
                            for sub in list(self.subs.values()):
                                try:
                                    self._tick(sub)
                                except MixplanError:
                                    raise
                                except Exception as exc:  # noqa: BLE001 -- a broken spool costs one trial
                                    ctrl_c.check()  # a Ctrl-C inside a store call arrives as its error
                                    self._cancel_job(sub)
                                    self._fail(sub, "the dispatcher could not read its results: "
                                                    f"{type(exc).__name__}: {exc}", with_log=False)
                            if self.subs:
                                time.sleep(self.poll_s)
                    except Exception:
                        ctrl_c.check()  # the error is how a store call reported the Ctrl-C
                        raise
            except KeyboardInterrupt:
                self.summary.interrupted = True
                self.executor.shutdown(wait=False)
                raise
            finally:
                self.summary.wall_s = time.monotonic() - t0
                remove_dispatch_info(self.root)
            self.executor.shutdown(wait=True)
        self._report("finished")
        return self.summary


def run_approved(store: Store, study: str, executor: str | Executor = "local", *, workers: int | None = None,
                 timeout_s: float | None = None, progress: Callable[[Progress], None] | None = None,
                 trial_ids: Sequence[int] | None = None, poll_s: float = 0.5,
                 executor_options: dict[str, Any] | None = None, runner: Runner | None = None,
                 runs_dir: Path | None = None) -> DispatchSummary:
    """Run the study's approved trials (or ``trial_ids`` of them) to done/failed on an executor
    (``local`` | ``slurm`` | ``ray``, or an :class:`Executor`), first re-attaching to trials a
    previous dispatcher left queued or running. Blocks until every trial is over; returns a
    :class:`DispatchSummary`. ``executor_options`` override the study's ``[runner]`` options
    for the executor (e.g. ``partition``, ``address``)."""
    from engine.dispatch.executors import make_executor

    config = store.get_config(study)
    if isinstance(executor, str):
        if runner is None:
            from engine.runners.registry import make_runner

            cfg = config if timeout_s is None else replace(config, runner=replace(config.runner,
                                                                                   timeout_s=float(timeout_s)))
            runner = make_runner(cfg)
        executor = make_executor(executor, store=store, study=study, config=config, workers=workers,
                                 runner=runner, options=executor_options)
    d = Dispatcher(store, study, executor, runner=runner, timeout_s=timeout_s, progress=progress, poll_s=poll_s,
                   runs_dir=runs_dir)
    return d.run(trial_ids)
