"""engine.dispatch.progress: each queued / running trial's steps, loss, elapsed time, ETA and
why it waits, read from the files real workers and dispatchers write (the spool, dispatch.json,
run.log) in a real database; and a real dispatch watched while it runs."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from engine.dispatch import Spool, run_approved, study_progress
from engine.dispatch.dispatcher import runs_root, spool_root
from engine.dispatch.progress import objective_at, run_log
from engine.dispatch.spool import DISPATCH_FILE, process_start_time, write_dispatch_info
from engine.records import Checkpoint, TrialState
from engine.store import Store
from fixtures.dispatch_helpers import add_approved, command_study


def _submit(store: Store, study: str, tid: int, token: str, *, executor: str = "local", start: bool = False) -> Spool:
    """What a dispatcher does for one trial: queued, a job id naming the submission's token, its
    spool folder; ``start``: the worker began (started.json, heartbeat) and the dispatcher saw it."""
    store.transition([tid], TrialState.QUEUED, study=study)
    job = f"{executor}:{'1234' if executor == 'slurm' else 'pid1'}#{token}"
    store.set_job(tid, job)
    spool = Spool(spool_root(store, study) / str(tid) / token)
    spool.path.mkdir(parents=True)
    if start:
        spool.mark_started(token=token, trial_id=tid)
        store.start_trial(tid, job_id=job)
    return spool


def _at(path: Path, t: float) -> None:
    os.utime(path, (t, t))


def _dispatcher_here(store: Store, study: str, *, workers: int | None = 1, executor: str = "local",
                     submitted: dict[int, float] | None = None, pid_start: int | None = None) -> None:
    """dispatch.json as a live dispatcher (this very process) writes it."""
    write_dispatch_info(spool_root(store, study), {
        "pid": os.getpid(), "pid_start": process_start_time(os.getpid()) if pid_start is None else pid_start,
        "host": socket.gethostname(), "executor": executor, "workers": workers, "started": time.time(),
        "submitted": {str(k): v for k, v in (submitted or {}).items()}})


def test_running_and_queued_trials_from_their_spool(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    a, b, c = add_approved(store, "cmd", ["a", "b", "c"], steps=500)
    spool = _submit(store, "cmd", a, "tok-a", start=True)
    t0 = float(spool.started()["time"])
    for steps, when in ((100, t0 + 10), (200, t0 + 20)):  # two checkpoints, 10 s apart
        spool.write_checkpoint(Checkpoint(steps=steps, tokens=steps * 2048.0,
                                          losses={"code": 3.0 - steps / 1000, "books": 3.1, "web": 3.2}))
        _at(spool.checkpoint_files()[-1], when)
    log = runs_root(store, "cmd") / "a" / "tok-a" / "run.log"
    log.parent.mkdir(parents=True)
    log.write_text("checkpoint 2/5 at step 200\n")
    _submit(store, "cmd", b, "tok-b")
    _submit(store, "cmd", c, "tok-c")
    _dispatcher_here(store, "cmd", submitted={b: t0 + 5, c: t0 + 5})

    ps = {p.run_id: p for p in study_progress(store, "cmd", now=t0 + 25)}
    run = ps["a"]
    assert run.state == "running" and run.axis == "steps" and (run.done, run.total) == (200, 500)
    assert run.fraction == pytest.approx(0.4) and run.checkpoints == 2
    assert run.value == pytest.approx((2.8 + 3.1 + 3.2) / 3)  # mean_loss of the last checkpoint
    assert run.elapsed_s == pytest.approx(25, abs=0.01)
    # 100 steps in 10 s: 300 steps to go from t0 + 20 -> t0 + 50, i.e. 25 s after now
    assert run.eta_s == pytest.approx(25, abs=0.01)
    assert run.log == str(log) and run_log(store, "cmd", store.get_trial(a)) == log
    assert run.text() == "trial 1 (a): step 200 / 500 (40%) · mean_loss 3.033 · running 25 s · ETA 25 s"
    assert ps["b"].state == "queued" and ps["b"].elapsed_s == pytest.approx(20)
    assert ps["b"].note == "waiting for a free worker: 1 of 1 busy"
    assert ps["c"].note == "waiting for a free worker: 1 of 1 busy (2nd in line)"
    assert ps["b"].text() == "trial 2 (b): queued 20 s · waiting for a free worker: 1 of 1 busy"

    _dispatcher_here(store, "cmd", workers=2)  # a worker is free: the trial is being started
    assert study_progress(store, "cmd")[1].note.startswith("starting on a worker")
    _dispatcher_here(store, "cmd", pid_start=1)  # this pid, another process: that dispatcher is gone
    assert study_progress(store, "cmd")[1].note.startswith("no dispatcher is running for this study")
    (spool_root(store, "cmd") / DISPATCH_FILE).unlink()
    assert study_progress(store, "cmd")[1].note.startswith("no dispatcher is running for this study")

    _at(spool.path / "heartbeat", time.time() - 60)  # a silent worker
    assert "no heartbeat for 1 min" in study_progress(store, "cmd")[0].note
    (spool.path / "final.json").write_text(json.dumps({"status": "done", "result": {"checkpoints": []}}))
    assert study_progress(store, "cmd")[0].note == "finished; its result is being stored"


def test_queued_on_a_cluster_and_tokens_only_trials(tmp_path):
    from engine.records import Proposal

    store = command_study(tmp_path / "runs.duckdb")
    (a,) = add_approved(store, "cmd", ["a"])
    (b,) = [t.trial_id for t in store.add_trials("cmd", [Proposal({"code": 0.5, "books": 0.3, "web": 0.2}, 100_000,
                                                                  tokens=1e6, run_id="b")], state=TrialState.APPROVED)]
    _submit(store, "cmd", a, "tok", executor="slurm")
    spool = _submit(store, "cmd", b, "tok-b", executor="slurm", start=True)
    spool.write_checkpoint(Checkpoint(None, 2.5e5, {"code": 2.0, "books": 2.0, "web": 2.0}))
    _dispatcher_here(store, "cmd", executor="slurm", workers=None)
    queued, running = study_progress(store, "cmd")
    assert queued.note == "waiting for SLURM to start job 1234 (the cluster's queue)" and queued.done is None
    assert (running.axis, running.done, running.total, running.fraction) == ("tokens", 2.5e5, 1e6, 0.25)
    assert "tokens 250K / 1M (25%)" in running.text()


def test_a_running_trial_without_spool_reads_the_store(tmp_path):
    """A worker whose spool this machine cannot see: the checkpoints the dispatcher stored."""
    store = command_study(tmp_path / "runs.duckdb")
    (a,) = add_approved(store, "cmd", ["a"], steps=60)
    store.transition([a], TrialState.QUEUED, study="cmd")
    store.start_trial(a, job_id="ray:actor")  # no token: no spool to read
    store.record_checkpoints(a, [Checkpoint(30, 30 * 2048.0, {"code": 2.0, "books": 2.5, "web": 3.0})])
    (p,) = study_progress(store, "cmd")
    assert (p.state, p.done, p.total, p.checkpoints) == ("running", 30, 60, 1)
    assert p.value == pytest.approx(2.5) and p.eta_s is None


def test_objective_at_a_checkpoint():
    ck = Checkpoint(10, None, {"code": 2.0, "web": 3.0}, {"acc": 0.4})
    assert objective_at(ck, "mean_loss") == pytest.approx(2.5)
    assert objective_at(ck, "loss_web") == 3.0 and objective_at(ck, "metric_acc") == 0.4
    assert objective_at(ck, "loss_books") is None


def test_state_counts_in_one_read(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    ids = add_approved(store, "cmd", ["a", "b", "c"])
    v, counts = store.state_counts("cmd")
    assert counts == {"approved": 3} and v == store.data_version("cmd")
    store.transition(ids[:1], TrialState.QUEUED, study="cmd")
    assert store.state_counts("cmd")[1] == {"approved": 2, "queued": 1}
    assert store.state_counts("cmd")[0] > v
    from engine.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no study named 'nope'"):
        store.state_counts("nope")


@pytest.mark.slow
def test_progress_follows_a_real_dispatch(tmp_path):
    """`run_approved` with one worker and two trials of a trainer streaming a checkpoint every
    0.8 s: the first trial's steps move and have a loss and an ETA, the second says it waits for
    the busy worker; at the end nothing is left to report and dispatch.json is gone."""
    store = command_study(tmp_path / "runs.duckdb", extra=("--checkpoints", "5", "--sleep", "0.8"))
    first, second = add_approved(store, "cmd", ["a", "b"], steps=60)
    th = threading.Thread(target=run_approved, args=(store, "cmd"), kwargs={"workers": 1, "poll_s": 0.2},
                          daemon=True)
    th.start()
    steps, waits, etas, logs = set(), [], [], []
    deadline = time.time() + 120
    while th.is_alive() and time.time() < deadline:
        for p in study_progress(store, "cmd"):
            if p.trial_id == first and p.done is not None:
                steps.add(p.done)
                assert p.value is not None and p.value > 0 and p.elapsed_s is not None
                etas += [p.eta_s] if p.eta_s is not None else []
                logs += [p.log] if p.log else []
            if p.trial_id == second and p.state == "queued":
                waits.append(p.note)
        time.sleep(0.3)
    th.join(timeout=5)
    assert not th.is_alive()
    assert len(steps) >= 2, steps
    assert etas and "waiting for a free worker: 1 of 1 busy" in waits
    assert logs and "checkpoint" in Path(logs[-1]).read_text()
    assert study_progress(store, "cmd") == []
    assert not (spool_root(store, "cmd") / DISPATCH_FILE).exists()
    assert {t.state.value for t in store.trials("cmd")} == {"done"}
