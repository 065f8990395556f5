"""The Ray executor on a local Ray cluster (``ray.init(num_cpus=2)``): detached actors, one per
submission, re-attached by name; and on a cluster started apart (``ray start --head``), where
a dispatcher killed by SIGKILL is replaced by one that re-attaches to the running actors."""

from __future__ import annotations

import pytest

from engine.dispatch import run_approved
from engine.dispatch.ray_exec import RayExecutor
from fixtures.dispatch_helpers import (
    DOMAINS, add_approved, builtin_study, check_builtin_done, checkpoint_counts, command_study, states, tiny_corpus,
)

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="mixplan", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.cluster
def test_ray_local_cluster_end_to_end_with_a_failure_and_reattach(tmp_path, ray_cluster):
    store = command_study(tmp_path / "runs.duckdb", extra=("--checkpoints", "3"))
    ids = add_approved(store, "cmd", ["ok-1", "ok-2", "crash-1"])
    summary = run_approved(store, "cmd", "ray", poll_s=0.2)
    assert states(store, "cmd") == {"ok-1": "done", "ok-2": "done", "crash-1": "failed"}
    assert sorted(summary.done) == sorted(ids[:2])
    assert checkpoint_counts(store, "cmd") == {"ok-1": 3, "ok-2": 3, "crash-1": 1}
    df = store.runs_frame("cmd")
    assert df[[f"loss_{d}" for d in DOMAINS]].notna().all().all()
    for t in store.trials("cmd"):
        assert t.job_id.startswith("ray:mixplan-cmd-")
    # actors are killed once their end is seen
    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)} if hasattr(ray.util, "list_named_actors") else set()
    assert not any(n.startswith("mixplan-cmd-") for n in names)


@pytest.mark.slow
@pytest.mark.cluster
def test_mixplan_run_on_ray_with_the_builtin_trainer(tmp_path, ray_cluster):
    """The built-in trainer (tiny model, 30 steps, two trials) through `mixplan run --executor
    ray` on the local Ray cluster: both done, per-domain losses at every checkpoint, a cost."""
    from typer.testing import CliRunner

    from engine.cli import app

    db = tmp_path / "runs.duckdb"
    store = builtin_study(db, tiny_corpus(tmp_path / "corpus"))
    res = CliRunner().invoke(app, ["run", "--study", "tiny", "--db", str(db), "--executor", "ray"])
    assert res.exit_code == 0, res.output
    assert "2 done, 0 failed" in res.output
    check_builtin_done(store)
    for t in store.trials("tiny"):
        assert t.job_id.startswith("ray:mixplan-tiny-")


@pytest.mark.slow
@pytest.mark.cluster
def test_ray_reattaches_to_a_detached_actor_by_name(tmp_path, ray_cluster):
    """A second executor (as after a dispatcher restart) finds a running actor by its job id."""
    from engine.dispatch.task import Task
    from engine.runners import make_runner

    store = command_study(tmp_path / "runs.duckdb", extra=("--sleep", "1", "--checkpoints", "2"))
    (tid,) = add_approved(store, "cmd", ["ok-1"])
    trial = store.get_trial(tid)
    first = RayExecutor(study="cmd")
    task = Task("cmd", trial, make_runner(store.get_config("cmd")), str(tmp_path / "out"), str(tmp_path / "spool"),
                "tok1")
    job = first.submit(task)
    second = RayExecutor(study="cmd")
    import time

    deadline = time.monotonic() + 60
    state = second.poll(job)
    while state.state.value != "ended" and time.monotonic() < deadline:
        assert state.state.value in ("pending", "running"), state
        time.sleep(0.3)
        state = second.poll(job)
    assert state.state.value == "ended"
    assert (tmp_path / "spool" / "final.json").exists()
    assert second.poll("ray:mixplan-cmd-nosuch#nosuch").state.value == "unknown"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head started apart from any dispatcher (``ray start --head --block``, its own
    session), as a user would for a cluster; stopped (its process group) at the end."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("ray")
    exe = str(exe) if exe.exists() else shutil.which("ray")
    if not exe:
        pytest.skip("the `ray` command is not installed")
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled")  # a throw-away cluster on 127.0.0.1
    log = open(tmp_path / "ray-head.log", "w")
    head = subprocess.Popen([exe, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                             "--disable-usage-stats"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        # `ray start` recorded this cluster as the machine's current one; `ray stop` would
        # remove that record but also stop every other Ray here, so drop just our record
        current = Path("/tmp/ray/ray_current_cluster")
        try:
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()
        except OSError:
            pass
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_kill_9_of_the_dispatcher_on_a_ray_cluster_then_restart_reattaches(tmp_path, ray_head):
    """`mixplan run --executor ray --address A` killed by SIGKILL mid-run: the detached actors
    live on in the cluster, the next `mixplan run` re-attaches to them by name and stores each
    checkpoint exactly once."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from engine.dispatch.dispatcher import spool_root

    address, env = ray_head
    repo = Path(__file__).resolve().parents[1]
    env = dict(env, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    db = tmp_path / "runs.duckdb"
    store = command_study(db, extra=("--checkpoints", "4", "--sleep", "2"), timeout_s=120)
    add_approved(store, "cmd", ["ok-1", "ok-2"])
    argv = [sys.executable, "-m", "engine.cli", "run", "--study", "cmd", "--db", str(db), "--executor", "ray",
            "--address", address, "--json"]
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = spool_root(store, "cmd")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(root.glob("*/*/ck-000000.json"))) < 2:
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        time.sleep(0.1)
    assert len(list(root.glob("*/*/ck-000000.json"))) == 2, "the actors spooled no checkpoint in time"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert set(states(store, "cmd").values()) <= {"queued", "running"}
    second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout[second.stdout.index("{"):])
    assert states(store, "cmd") == {"ok-1": "done", "ok-2": "done"}
    assert checkpoint_counts(store, "cmd") == {"ok-1": 4, "ok-2": 4}
    assert not store.runs_frame("cmd").duplicated(["run_id", "steps"]).any()
    # the actors' work was used (re-attached by name, or ingested after they ended), not redone
    assert sorted(summary["reattached"] + summary["recovered"]) == sorted(t.trial_id for t in store.trials("cmd"))
    assert summary["resubmitted"] == []


@pytest.mark.slow
@pytest.mark.cluster
def test_the_local_cluster_ignores_a_cluster_recorded_by_ray_start(tmp_path):
    """Without --address the executor starts its own local Ray even where `ray start` left a
    record of a (here: dead) cluster; ray.init(num_cpus=...) would try to join that one."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import shutil
    import tempfile

    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # Ray's socket paths must stay short
    try:
        (ray_tmp / "ray").mkdir()
        for d in (ray_tmp, ray_tmp / "ray"):  # wherever this Ray version looks for the record
            (d / "ray_current_cluster").write_text(f"127.0.0.1:{_free_port()}")
        repo = Path(__file__).resolve().parents[1]
        env = dict(os.environ, RAY_TMPDIR=str(ray_tmp),
                   PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        code = ("import ray; from engine.dispatch.ray_exec import RayExecutor; ex = RayExecutor(study='s', workers=1); "
                "ex.start(); print('CPU', ray.cluster_resources().get('CPU')); ex.shutdown()")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "CPU 1.0" in proc.stdout
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
