"""Dispatch on the local executor: end to end through `mixplan run`, faults, re-attach after
`kill -9` of the dispatcher, idempotent ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.dispatch import Spool, run_approved
from engine.dispatch.dispatcher import Dispatcher, _StudyLock, spool_root
from engine.dispatch.local import LocalExecutor
from engine.errors import StateError
from engine.records import Checkpoint, RunResult, TrialState
from engine.store import Store
from fixtures.dispatch_helpers import (
    DOMAINS, DyingRunner, StubbornRunner, add_approved, checkpoint_counts, command_study, fake_argv, states,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mixplan_run_end_to_end_with_a_command_runner(tmp_path):
    """Create a study (runner = a script writing result.json), approve two trials, `mixplan run`:
    both done, per-domain losses at every checkpoint, a cost."""
    db = tmp_path / "runs.duckdb"
    toml = tmp_path / "study.toml"
    argv = ", ".join(json.dumps(a) for a in fake_argv("--checkpoints", "3"))
    toml.write_text(f'name = "cmd"\ndomains = ["code", "books", "web"]\ntokens_per_step = 2048\n'
                    f'[[scales]]\nmodel_params = 100000\nsteps = [30, 60]\n'
                    f'[runner]\nkind = "command"\nargv = [{argv}]\ntimeout_s = 60\n')
    cli = CliRunner()
    res = cli.invoke(app, ["study", "create", "--config", str(toml), "--db", str(db)])
    assert res.exit_code == 0, res.output
    store = Store(db)
    ids = add_approved(store, "cmd", ["a", "b"], steps=30)
    res = cli.invoke(app, ["run", "--study", "cmd", "--db", str(db), "--workers", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert sorted(summary["done"]) == sorted(ids) and summary["failed"] == {}
    assert states(store, "cmd") == {"a": "done", "b": "done"}
    df = store.runs_frame("cmd", meta=True)
    assert checkpoint_counts(store, "cmd") == {"a": 3, "b": 3}
    assert sorted(df["steps"].tolist()) == [10, 10, 20, 20, 30, 30]
    for d in DOMAINS:
        assert df[f"loss_{d}"].notna().all()
    assert df["metric_acc"].notna().all()
    for t in store.trials("cmd"):
        assert t.cost and t.cost > 0 and t.attempts == 1 and t.job_id.startswith("local:")
    # spool cleaned up, logs kept
    assert not any(p.is_dir() for p in spool_root(store, "cmd").iterdir())
    assert len(list((tmp_path / "mixplan-runs" / "cmd").glob("*/*/run.log"))) == 2
    # nothing left to run: says so
    res = cli.invoke(app, ["run", "--study", "cmd", "--db", str(db)])
    assert res.exit_code == 0 and "nothing to run" in res.output


@pytest.mark.slow
def test_faults_fail_only_their_trial_and_keep_stored_results(tmp_path):
    store = command_study(tmp_path / "runs.duckdb", extra=("--checkpoints", "3"), timeout_s=2.0)
    add_approved(store, "cmd", ["ok-0"])
    assert run_approved(store, "cmd", workers=2, poll_s=0.1).done
    before = store.runs_frame("cmd")
    add_approved(store, "cmd", ["crash-1", "hang-1", "ok-1", "malformed-1", "garbage-1", "ok-2"])
    t0 = time.monotonic()
    summary = run_approved(store, "cmd", workers=2, poll_s=0.1)
    assert time.monotonic() - t0 < 60
    assert states(store, "cmd") == {"ok-0": "done", "crash-1": "failed", "hang-1": "failed", "ok-1": "done",
                                    "malformed-1": "failed", "garbage-1": "failed", "ok-2": "done"}
    by_run = {t.run_id: t for t in store.trials("cmd")}
    assert "exited with status 3" in by_run["crash-1"].reason
    assert "timed out after 2 s" in by_run["hang-1"].reason
    assert "malformed result" in by_run["malformed-1"].reason and "finite" in by_run["malformed-1"].reason
    assert "not valid JSON" in by_run["garbage-1"].reason
    assert len(summary.failed) == 4 and len(summary.done) == 2
    # the log tail is kept with the failure
    ev = store.events("cmd", trial_id=by_run["crash-1"].trial_id)
    failed = json.loads(ev[ev["kind"] == "failed"]["detail"].iloc[0])
    assert "simulated crash" in failed["log_tail"]
    # stored results intact; the crashed run's first checkpoint (streamed before the crash) kept
    after = store.runs_frame("cmd")
    import pandas as pd

    pd.testing.assert_frame_equal(after[after.run_id == "ok-0"].reset_index(drop=True), before)
    counts = checkpoint_counts(store, "cmd")
    assert counts["ok-0"] == counts["ok-1"] == counts["ok-2"] == 3
    assert counts.get("crash-1") == 1 and "hang-1" not in counts


@pytest.mark.slow
def test_a_dead_worker_fails_its_trial_and_is_replaced(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    add_approved(store, "cmd", ["die-1", "ok-1", "ok-2"])
    summary = run_approved(store, "cmd", workers=1, poll_s=0.1, runner=DyingRunner())
    assert states(store, "cmd") == {"die-1": "failed", "ok-1": "done", "ok-2": "done"}
    reason = next(iter(summary.failed.values()))
    assert "worker process died" in reason and "exit status 7" in reason


@pytest.mark.slow
def test_a_runner_that_ignores_its_timeout_is_killed_at_the_hard_limit(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    add_approved(store, "cmd", ["stubborn-1", "ok-1"])
    d = Dispatcher(store, "cmd", LocalExecutor(2, kill_grace_s=1.0), runner=StubbornRunner(), poll_s=0.1,
                   hard_timeout_s=2.0, kill_grace_s=1.0)
    t0 = time.monotonic()
    summary = d.run()
    assert time.monotonic() - t0 < 30
    assert states(store, "cmd") == {"stubborn-1": "failed", "ok-1": "done"}
    assert "hard limit of 2 s" in next(iter(summary.failed.values()))


@pytest.mark.slow
def test_cancelling_a_running_trial_stops_its_job(tmp_path):
    import threading

    store = command_study(tmp_path / "runs.duckdb")
    (tid,) = add_approved(store, "cmd", ["stubborn-1"])
    d = Dispatcher(store, "cmd", LocalExecutor(1, kill_grace_s=1.0), runner=StubbornRunner(), poll_s=0.1,
                   state_check_s=0.3)
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("summary", d.run()))
    th.start()
    deadline = time.monotonic() + 30
    while store.get_trial(tid).state != TrialState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    store.transition([tid], TrialState.CANCELLED, actor="test", reason="changed my mind")
    th.join(30)
    assert not th.is_alive()
    assert out["summary"].cancelled == [tid] and store.get_trial(tid).state == TrialState.CANCELLED


@pytest.mark.slow
def test_a_retry_replaces_the_failed_attempts_checkpoints(tmp_path):
    """Attempt 1 streams two checkpoints (stored while it runs) and dies; attempt 2 runs from
    scratch. The trial ends with attempt 2's three checkpoints only, never a mix."""
    import math

    store = command_study(tmp_path / "runs.duckdb", retries=1, extra=(
        "--checkpoints", "3", "--sleep", "0.8", "--state", str(tmp_path / "late.state")))
    (tid,) = add_approved(store, "cmd", ["late-1"])
    stored_losses: list[float] = []

    def watch(p) -> None:  # what the store held while the run went on
        df = store.runs_frame("cmd")
        if len(df):
            stored_losses.extend(df["loss_code"].tolist())

    summary = run_approved(store, "cmd", workers=1, poll_s=0.1, progress=watch)
    assert summary.done == [tid]
    clean = {s: 2.0 + 1.0 / math.log(10 + s) - 0.5 * 0.6 + 0.1 for s in (10, 20, 30)}
    assert any(v == pytest.approx(clean[10] + 0.5, abs=1e-5) for v in stored_losses), \
        "attempt 1's checkpoints were never stored: the test shows nothing"
    df = store.runs_frame("cmd").sort_values("steps")
    assert df["steps"].tolist() == [10, 20, 30]
    assert df["loss_code"].tolist() == pytest.approx([clean[s] for s in (10, 20, 30)], abs=1e-5)
    log = next((tmp_path / "mixplan-runs" / "cmd").glob("late-1/*/run.log")).read_text()
    assert "attempt 2/2" in log and "failing the first attempt" in log


def test_only_one_dispatcher_per_study(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    add_approved(store, "cmd", ["ok-1"])
    root = spool_root(store, "cmd")
    root.mkdir(parents=True)
    with _StudyLock(root / ".dispatch.lock", "cmd"):
        with pytest.raises(StateError, match="already dispatching"):
            run_approved(store, "cmd", workers=1)
    assert states(store, "cmd") == {"ok-1": "approved"}


@pytest.mark.slow
def test_trial_subset_and_unknown_ids(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    a, b = add_approved(store, "cmd", ["ok-1", "ok-2"])
    with pytest.raises(StateError, match="not approved"):
        run_approved(store, "cmd", trial_ids=[999])
    run_approved(store, "cmd", workers=1, trial_ids=[b], poll_s=0.1)
    assert states(store, "cmd") == {"ok-1": "approved", "ok-2": "done"}


def test_reingest_after_a_crash_between_writes_stores_nothing_twice(tmp_path):
    """A dispatcher killed after storing some checkpoints but before completing the trial: the
    next one finds the spool (checkpoints + final) and stores the rest exactly once."""
    store = command_study(tmp_path / "runs.duckdb")
    (tid,) = add_approved(store, "cmd", ["ok-1"])
    store.transition([tid], TrialState.QUEUED, actor="test")
    store.start_trial(tid, job_id="local:pid1#tok123")
    cks = [Checkpoint(steps=s, tokens=s * 2048.0, losses={d: 3.0 - s / 100 for d in DOMAINS}) for s in (10, 20, 30)]
    store.record_checkpoints(tid, cks[:2])  # what the dead dispatcher had stored
    spool = Spool(spool_root(store, "cmd") / str(tid) / "tok123")
    for c in cks:
        spool.write_checkpoint(c)
    spool.write_done(RunResult(cks, cost=5.0))
    summary = run_approved(store, "cmd", workers=1, poll_s=0.1)
    assert summary.done == [tid]
    assert checkpoint_counts(store, "cmd") == {"ok-1": 3}
    assert store.get_trial(tid).cost == 5.0 and store.get_trial(tid).attempts == 1
    assert not spool.path.exists()


@pytest.mark.slow
def test_a_lost_queued_job_is_submitted_again(tmp_path):
    """Queued with a job id whose worker never started (it died with its dispatcher)."""
    store = command_study(tmp_path / "runs.duckdb")
    (tid,) = add_approved(store, "cmd", ["ok-1"])
    store.transition([tid], TrialState.QUEUED, actor="test")
    store.set_job(tid, "local:pid1#deadbeef")
    (spool_root(store, "cmd") / str(tid) / "deadbeef").mkdir(parents=True)
    summary = run_approved(store, "cmd", workers=1, poll_s=0.1)
    assert summary.done == [tid] and summary.resubmitted == [tid]
    assert checkpoint_counts(store, "cmd") == {"ok-1": 3}
    assert "resubmitted" in store.events("cmd", trial_id=tid)["kind"].tolist()


@pytest.mark.slow
def test_kill_9_of_the_dispatcher_then_restart_loses_and_duplicates_nothing(tmp_path):
    db = tmp_path / "runs.duckdb"
    store = command_study(db, extra=("--checkpoints", "4", "--sleep", "1.5"))
    add_approved(store, "cmd", ["ok-1", "ok-2", "ok-3"])
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--study", "cmd", "--db", str(db),
                             "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    root = spool_root(store, "cmd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(root.glob("*/*/ck-000001.json")):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    assert list(root.glob("*/*/ck-000001.json")), "no checkpoint spooled in time"
    time.sleep(0.3)  # let it ingest something, then kill it in the middle of the run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    mid = states(store, "cmd")
    assert "running" in mid.values() and "done" not in mid.values(), mid
    stored_mid = checkpoint_counts(store, "cmd")
    assert sum(stored_mid.values()) >= 1
    orphans = [json.loads(p.read_text())["pid"] for p in root.glob("*/*/started.json")]
    assert orphans  # workers of the dead dispatcher, still in the middle of their trial
    summary = run_approved(store, "cmd", workers=2, poll_s=0.1)
    assert states(store, "cmd") == {"ok-1": "done", "ok-2": "done", "ok-3": "done"}
    assert checkpoint_counts(store, "cmd") == {"ok-1": 4, "ok-2": 4, "ok-3": 4}
    # the orphans' trials were re-attached (heartbeat) or, if they ended meanwhile, ingested from
    # their spool -- their work was used, not redone; the never-started trial was submitted again
    used = set(summary.reattached) | set(summary.recovered)
    assert used and used | set(summary.resubmitted) == {t.trial_id for t in store.trials("cmd")}, summary
    df = store.runs_frame("cmd")
    assert not df.duplicated(["run_id", "steps"]).any()
    assert not [p for p in root.iterdir() if p.is_dir()]  # every spool removed after ingest
    # the orphaned workers finished their trial and exited (no leftover processes)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in orphans)


def _start_orphan(tmp_path: Path, db: Path, study: str = "cmd") -> tuple[int, Path]:
    """A dispatcher (subprocess) running a trial that ignores cancellation, killed by SIGKILL
    once its worker started: returns the orphaned worker's pid and the submission's spool."""
    script = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from engine.store import Store; from engine.dispatch.dispatcher import Dispatcher; "
              "from engine.dispatch.local import LocalExecutor; from fixtures.dispatch_helpers import StubbornRunner; "
              "Dispatcher(Store(sys.argv[2]), sys.argv[3], LocalExecutor(1), runner=StubbornRunner(), poll_s=0.1).run()")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", script, str(REPO / "tests"), str(db), study], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = spool_root(Store(db), study)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(root.glob("*/*/heartbeat")):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    started = next(root.glob("*/*/started.json"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pid = json.loads(started.read_text())["pid"]
    assert _alive(pid)
    return pid, started.parent


@pytest.mark.slow
def test_resubmitting_stops_the_old_job_even_a_previous_dispatchers_orphan(tmp_path):
    """A restarted dispatcher that gives a submission up (here: its heartbeat counts as stale)
    cancels the old job before submitting again: the orphaned worker of the killed
    dispatcher -- which ignores the spool's cancel request -- is killed, not left running
    beside the new submission."""
    db = tmp_path / "runs.duckdb"
    store = command_study(db)
    (tid,) = add_approved(store, "cmd", ["stubborn-1"])
    orphan, _ = _start_orphan(tmp_path, db)
    # the new dispatcher's runner finishes at once; a 0.5 s staleness makes it resubmit
    try:
        d = Dispatcher(store, "cmd", LocalExecutor(1, kill_grace_s=1.0), runner=DyingRunner(), poll_s=0.1,
                       stale_after_s=0.5)
        summary = d.run()
        assert summary.done == [tid] and summary.resubmitted == [tid]
        deadline = time.monotonic() + 10
        while _alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(orphan), "the old job was left running beside the new one"
    finally:
        _kill_if_alive(orphan)


@pytest.mark.slow
def test_cancelling_a_trial_kills_a_previous_dispatchers_worker(tmp_path):
    """After a kill -9 of the dispatcher, the next one re-attaches to the orphaned worker by
    its heartbeat; cancelling the trial then kills that worker (same host, same pid and start
    time as its started.json), although the executor never started it."""
    import threading

    db = tmp_path / "runs.duckdb"
    store = command_study(db)
    (tid,) = add_approved(store, "cmd", ["stubborn-1"])
    orphan, _ = _start_orphan(tmp_path, db)
    try:
        d = Dispatcher(store, "cmd", LocalExecutor(1, kill_grace_s=1.0), runner=StubbornRunner(), poll_s=0.1,
                       state_check_s=0.3)
        out = {}
        th = threading.Thread(target=lambda: out.setdefault("summary", d.run()))
        th.start()
        deadline = time.monotonic() + 30
        while not d.subs and time.monotonic() < deadline:
            time.sleep(0.05)
        store.transition([tid], TrialState.CANCELLED, actor="test", reason="changed my mind")
        th.join(30)
        assert not th.is_alive() and out["summary"].reattached == [tid] and out["summary"].cancelled == [tid]
        deadline = time.monotonic() + 10
        while _alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(orphan), "the orphaned worker of the killed dispatcher is still running"
    finally:
        _kill_if_alive(orphan)


def test_a_recycled_pid_is_never_killed(tmp_path):
    """started.json names a pid now held by another process (its start time differs): cancel
    leaves that process alone."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        spool = Spool(tmp_path / "spool")
        spool.mark_started(token="t", trial_id=1)
        st = json.loads((spool.path / "started.json").read_text())
        st.update(pid=other.pid)  # same host, fresh heartbeat, but the start time is this process's
        (spool.path / "started.json").write_text(json.dumps(st))
        ex = LocalExecutor(1, kill_grace_s=0.5)
        assert not ex.kill_orphan(spool)
        ex.cancel("local:pid1#t", spool=spool)
        time.sleep(0.3)
        assert other.poll() is None
        st.pop("pid_start")  # and without a recorded start time nothing is vouched for
        (spool.path / "started.json").write_text(json.dumps(st))
        assert not ex.kill_orphan(spool) and other.poll() is None
    finally:
        other.kill()
        other.wait()


def _kill_if_alive(pid: int) -> None:
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_stops_the_workers_and_the_next_run_resumes(tmp_path, sig):
    """Ctrl-C, and SIGTERM (`kill`, how a `nohup` run or a scheduler stops it), stop the workers
    and leave the trials to the next run; the exit status is 128 + the signal."""
    db = tmp_path / "runs.duckdb"
    store = command_study(db, extra=("--checkpoints", "4", "--sleep", "1.5"))
    add_approved(store, "cmd", ["ok-1", "ok-2"])
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # as from a terminal: SIGINT at its default even where pytest runs as a background job (which
    # starts with it ignored, and so would `mixplan run`: it then rightly ignores the signal)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--study", "cmd", "--db", str(db),
                             "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    root = spool_root(store, "cmd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(root.glob("*/*/started.json"))) < 2:
        time.sleep(0.05)
    workers = [json.loads(p.read_text())["pid"] for p in root.glob("*/*/started.json")]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (out, err)
    assert "picked up again by the next" in err
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)
    assert set(states(store, "cmd").values()) <= {"queued", "running"}
    summary = run_approved(store, "cmd", workers=2, poll_s=0.1)
    assert states(store, "cmd") == {"ok-1": "done", "ok-2": "done"} and summary.resubmitted
    assert checkpoint_counts(store, "cmd") == {"ok-1": 4, "ok-2": 4}


def test_a_ctrl_c_swallowed_on_its_way_up_is_still_seen(tmp_path):
    """DuckDB runs the signal check inside a query and clears the KeyboardInterrupt (or turns
    it into a RuntimeError): Ctrl-C on `mixplan run` was sometimes lost. The dispatcher's guard
    remembers the key press, so its loop raises it anyway."""
    import duckdb

    from engine.dispatch.interrupt import Terminated, ctrl_c_guard

    con = duckdb.connect()
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with ctrl_c_guard() as ctrl_c:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                con.execute("select sum(i) from range(1000) t(i)").fetchall()
                time.sleep(0.05)
            except BaseException:  # noqa: BLE001 - what a library that swallows it does
                pass
            assert ctrl_c.pressed
            with pytest.raises(KeyboardInterrupt):
                ctrl_c.check()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        # started with SIGINT ignored (nohup, a background job): it stays ignored, as Python has it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with ctrl_c_guard() as ctrl_c:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert not ctrl_c.pressed
            ctrl_c.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        # SIGTERM, swallowed the same way, comes out as Terminated (a KeyboardInterrupt)
        with ctrl_c_guard() as ctrl_c:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                con.execute("select sum(i) from range(1000) t(i)").fetchall()
                time.sleep(0.05)
            except BaseException:  # noqa: BLE001
                pass
            with pytest.raises(Terminated):
                ctrl_c.check()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before)
