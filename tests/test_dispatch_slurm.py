"""The SLURM executor through submitit: its local and debug executors run the real code path
(pickled task, job folder, job state polling); a real cluster only changes ``cluster``."""

from __future__ import annotations

import math

import pytest

from engine.dispatch import run_approved
from engine.dispatch.executors import make_executor
from engine.dispatch.slurm import SlurmExecutor
from fixtures.dispatch_helpers import (
    DOMAINS, add_approved, builtin_study, check_builtin_done, checkpoint_counts, command_study, states, tiny_corpus,
)

pytest.importorskip("submitit")


def test_options_map_to_submitit_parameters(tmp_path):
    ex = SlurmExecutor(tmp_path, timeout_s=3000, options={
        "partition": "gpu", "gpus_per_node": 8, "cpus_per_task": 16, "mem_gb": 200, "account": "lm",
        "setup": "module load cuda", "slurm_exclusive": True})
    p = ex.parameters()
    assert p["timeout_min"] == 60  # 50 min of runner timeout + 10
    assert (p["slurm_partition"], p["gpus_per_node"], p["cpus_per_task"], p["mem_gb"]) == ("gpu", 8, 16, 200)
    assert p["slurm_account"] == "lm" and p["slurm_setup"] == ["module load cuda"] and p["slurm_exclusive"] is True


def test_study_options_and_cli_flags_reach_the_executor(tmp_path):
    store = command_study(tmp_path / "runs.duckdb", runner={
        "kind": "command", "argv": ["x", "{out_dir}"], "partition": "small", "time_min": 30, "gpus_per_node": 1})
    cfg = store.get_config("cmd")
    ex = make_executor("slurm", store=store, study="cmd", config=cfg, options={"partition": "big", "mem_gb": None})
    p = ex.parameters()
    assert (p["slurm_partition"], p["timeout_min"], p["gpus_per_node"]) == ("big", 30, 1)
    assert "mem_gb" not in p


def test_the_job_time_limit_covers_every_retry_and_back_off(tmp_path):
    """time_min defaults to the submission's hard limit (all attempts, back-offs, margin) + 10
    minutes, not one attempt's timeout."""
    from engine.dispatch.dispatcher import hard_timeout_for
    from engine.runners.builtin import BuiltinRunner

    store = command_study(tmp_path / "runs.duckdb", runner={
        "kind": "command", "argv": ["x", "{out_dir}"], "timeout_s": 600, "retries": 2, "retry_backoff_s": 10})
    cfg = store.get_config("cmd")
    from engine.runners import make_runner

    runner = make_runner(cfg)
    hard = hard_timeout_for(runner, cfg)
    assert hard == 600 * 3 + 10 * (1 + 2) + 120
    ex = make_executor("slurm", store=store, study="cmd", config=cfg, runner=runner)
    assert ex.parameters()["timeout_min"] == math.ceil(hard / 60) + 10 == 43  # not 600 s / 60 + 10 = 20
    # the built-in runner's back-off and corpus set-up count too
    b = BuiltinRunner(timeout_s=100, retries=2, retry_backoff_s=7)
    assert hard_timeout_for(b, cfg) == b.setup_s + 100 * 3 + 7 * 3 + 120


@pytest.mark.cluster
def test_submitit_debug_executor_end_to_end(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    add_approved(store, "cmd", ["ok-1", "crash-1"])
    summary = run_approved(store, "cmd", "slurm", executor_options={"cluster": "debug"}, poll_s=0.1)
    assert states(store, "cmd") == {"ok-1": "done", "crash-1": "failed"}
    assert "exited with status 3" in summary.failed[store.trials("cmd")[1].trial_id]


@pytest.mark.slow
@pytest.mark.cluster
def test_submitit_local_executor_end_to_end(tmp_path):
    store = command_study(tmp_path / "runs.duckdb", extra=("--checkpoints", "3"))
    ids = add_approved(store, "cmd", ["ok-1", "ok-2"])
    summary = run_approved(store, "cmd", "slurm", executor_options={"cluster": "local"}, poll_s=0.2)
    assert sorted(summary.done) == sorted(ids), summary
    assert states(store, "cmd") == {"ok-1": "done", "ok-2": "done"}
    assert checkpoint_counts(store, "cmd") == {"ok-1": 3, "ok-2": 3}
    df = store.runs_frame("cmd")
    assert df[[f"loss_{d}" for d in DOMAINS]].notna().all().all()
    for t in store.trials("cmd"):
        assert t.job_id.startswith("slurm:") and t.cost > 0
    # submitit's job folder holds the pickled task and the job's own logs
    assert list((tmp_path / ".mixplan-spool" / "cmd" / "submitit").glob("*_submitted.pkl"))


@pytest.mark.slow
@pytest.mark.cluster
def test_an_unknown_job_that_never_started_gets_a_grace_period_then_is_resubmitted(tmp_path):
    """A restarted dispatcher finds a queued trial whose job this executor cannot see (on
    SLURM: sacct failed) and that never beat: taken as pending for unknown_grace_s, not
    resubmitted at once; then resubmitted on the submitit local executor and done."""
    import time

    from engine.dispatch.dispatcher import spool_root
    from engine.records import TrialState

    store = command_study(tmp_path / "runs.duckdb")
    (tid,) = add_approved(store, "cmd", ["ok-1"])
    store.transition([tid], TrialState.QUEUED, actor="test")
    store.set_job(tid, "slurm:4242#deadbeef")
    (spool_root(store, "cmd") / str(tid) / "deadbeef").mkdir(parents=True)
    said: list[tuple[float, str]] = []
    t0 = time.monotonic()
    summary = run_approved(store, "cmd", "slurm", executor_options={"cluster": "local", "unknown_grace_s": 3},
                           poll_s=0.2, progress=lambda p: said.append((time.monotonic() - t0, p.message)))
    assert summary.done == [tid] and summary.resubmitted == [tid]
    again = [t for t, m in said if "submitted again" in m]
    assert again and again[0] >= 3.0, said
    assert any("taken as pending" in m for _, m in said)


@pytest.mark.slow
@pytest.mark.cluster
def test_mixplan_run_on_submitit_local_with_the_builtin_trainer(tmp_path):
    """The built-in trainer (tiny model, 30 steps, two trials) through `mixplan run --executor
    slurm --cluster local`, one submitit job per trial: both done, per-domain losses at every
    checkpoint, a cost."""
    from typer.testing import CliRunner

    from engine.cli import app

    db = tmp_path / "runs.duckdb"
    store = builtin_study(db, tiny_corpus(tmp_path / "corpus"))
    res = CliRunner().invoke(app, ["run", "--study", "tiny", "--db", str(db), "--executor", "slurm",
                                   "--cluster", "local"])
    assert res.exit_code == 0, res.output
    assert "2 done, 0 failed" in res.output
    check_builtin_done(store)
    for t in store.trials("tiny"):
        assert t.job_id.startswith("slurm:")
