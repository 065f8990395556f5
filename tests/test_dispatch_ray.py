"""The Ray executor on a local Ray cluster (``ray.init(num_cpus=2)``): detached actors, one per
submission, re-attached by name."""

from __future__ import annotations

import pytest

from engine.dispatch import run_approved
from engine.dispatch.ray_exec import RayExecutor
from fixtures.dispatch_helpers import DOMAINS, add_approved, checkpoint_counts, command_study, states

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, namespace="mixplan", log_to_driver=False)
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
