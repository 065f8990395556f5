"""The built-in trainer as a runner: in-process in long-lived workers, nearest ladder size
reported, timeouts and cancellation inside the training loop, `mixplan run` end to end."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.records import Proposal, Trial, TrialState
from engine.runners import RunFailed, make_runner
from engine.runners.builtin import BuiltinRunner
from engine.store import Store

DOMAINS = ["code", "docstrings", "unicode"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """The trainer engineer's offline three-domain corpus, tiny."""
    from engine.data import build_local_corpus

    root = tmp_path_factory.mktemp("corpus")
    build_local_corpus(root, max_bytes_per_domain=100_000, max_val_bytes=20_000)
    return root


def trial(steps: int = 30, weights: dict | None = None, run_id: str = "r1") -> Trial:
    return Trial(1, "s", run_id, TrialState.RUNNING, weights or {"code": 0.6, "docstrings": 0.3, "unicode": 0.1},
                 100_000, steps, None, "manual", None, None, None, None, None, None, 3)


def config(corpus_dir: Path, **runner) -> dict:
    return {"name": "tiny", "domains": DOMAINS, "tokens_per_step": 16 * 64,
            "scales": [{"model_params": 100_000, "steps": [30]}],
            "runner": {"kind": "builtin", "corpus": str(corpus_dir), "context": 64, "checkpoints": 3,
                       "eval_batches": 1, "timeout_s": 120, **runner}}


def test_from_config_reads_options_and_rejects_unknown_ones(tmp_path):
    r = make_runner(config_from_dict(config(tmp_path, batch_size=8, threads=1)))
    assert isinstance(r, BuiltinRunner)
    assert (r.batch_size, r.context, r.checkpoints, r.eval_domains, r.timeout_s) == (8, 64, 3, tuple(DOMAINS), 120)
    assert "torch" in r.preload
    # a typo is refused when the config is read, before any runner is made
    with pytest.raises(ConfigError, match="unknown key for a builtin runner.*did you mean 'batch_size'"):
        config_from_dict(config(tmp_path, bach_size=8))
    # domain_sizes (the natural model's token counts) is a key of every runner kind
    sized = make_runner(config_from_dict(config(tmp_path, domain_sizes={d: 1000 for d in DOMAINS})))
    assert isinstance(sized, BuiltinRunner)


def test_checkpoint_steps_and_token_budgets():
    r = BuiltinRunner(batch_size=16, context=64, checkpoints=4)
    assert r.eval_steps(100) == [25, 50, 75, 100]
    assert r.eval_steps(2) == [1, 2]
    t = trial()
    assert r.steps_for(t) == 30
    from dataclasses import replace

    assert r.steps_for(replace(t, steps=None, tokens=16 * 64 * 10 + 1)) == 11


@pytest.mark.slow
def test_runs_in_process_and_says_which_size_it_used(corpus_dir, tmp_path):
    r = BuiltinRunner(corpus=str(corpus_dir), eval_domains=DOMAINS, context=64, checkpoints=3, eval_batches=1)
    seen = []
    res = r.run(trial(30), tmp_path, on_checkpoint=seen.append)
    assert [c.steps for c in res.checkpoints] == [10, 20, 30] == [c.steps for c in seen]
    for c in res.checkpoints:
        assert set(c.losses) == set(DOMAINS) and all(2.0 < v < 7.0 for v in c.losses.values())
    # no study: cost in FLOPs with the requested size (the study's convention); the real FLOPs
    # of the rung trained (98,624 non-embedding parameters) and the wall time are in info
    assert res.cost == 6 * 100_000 * 30 * 16 * 64
    assert [c.cost for c in res.checkpoints] == [6 * 100_000 * s * 16 * 64 for s in (10, 20, 30)]
    assert res.info["flops"] == 6 * res.info["model_params"] * 30 * 16 * 64 != res.cost
    assert res.info["wall_s"] == res.wall_s > 0 and "FLOPs" in res.info["cost_unit"]
    assert res.info["size"] == "0.1M" and res.info["requested_params"] == 100_000
    # provenance: which corpus, which package and version of each domain, the recipe key
    prov = res.info["corpus"]
    assert prov["root"] == str(corpus_dir) and set(prov["domains"]) == set(DOMAINS)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())["domains"]
    for d in DOMAINS:
        for k in ("name", "package", "version", "key"):
            assert prov["domains"][d][k] == manifest[d][k] and prov["domains"][d][k]
    assert "ladder rung 0.1M" in res.info["size_used"] and "98,624" in res.info["size_used"]
    assert "checkpoint at step 30" in (tmp_path / "run.log").read_text()


@pytest.mark.slow
def test_timeout_and_cancel_stop_the_training_loop(corpus_dir, tmp_path):
    r = BuiltinRunner(corpus=str(corpus_dir), eval_domains=["code"], context=64, checkpoints=1, eval_batches=1,
                      timeout_s=1.5)
    r.run(trial(2), tmp_path / "warm")  # torch imported, corpus cached
    t0 = time.monotonic()
    with pytest.raises(RunFailed, match="timed out after 1.5 s"):
        r.run(trial(100_000), tmp_path / "a")
    assert time.monotonic() - t0 < 5
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(RunFailed, match="cancelled"):
        BuiltinRunner(corpus=str(corpus_dir), eval_domains=["code"], context=64, checkpoints=1).run(
            trial(100_000), tmp_path / "b", cancel=cancel)
    assert time.monotonic() - t0 < 5


@pytest.mark.slow
def test_cost_is_in_the_unit_proposals_are_priced_in(corpus_dir, tmp_path):
    """A study whose scale has cost_per_step: the built-in run reports cost_per_step x steps
    (what propose priced it at), so autopilot's budget holds exactly two runs."""
    from engine.autopilot import autopilot

    cfg = config(corpus_dir)
    cfg["scales"] = [{"model_params": 100_000, "steps": [30], "cost_per_step": 0.5}]
    study = config_from_dict(cfg)
    store = Store(tmp_path / "runs.duckdb")
    store.create_study(study)
    runner = make_runner(study)
    res = autopilot(store, "tiny", "random", budget=30.0, runner=runner, seed=0, runs_dir=tmp_path / "runs")
    assert len(res.done) == 2 and res.spent == pytest.approx(30.0) and "budget" in res.stopped, res
    for t in store.trials("tiny", [TrialState.DONE]):
        assert t.cost == pytest.approx(study.cost(100_000, steps=30)) == pytest.approx(15.0)
        ev = store.events("tiny", trial_id=t.trial_id)
        info = json.loads(ev[ev["kind"] == "done"]["detail"].iloc[0])["info"]
        assert info["flops"] == 6 * info["model_params"] * 30 * 16 * 64 and info["wall_s"] > 0
        assert "cost_per_step" in info["cost_unit"]
    df = store.runs_frame("tiny", meta=True)
    assert sorted(set(df["cost"])) == [5.0, 10.0, 15.0]  # checkpoints: cost so far, same unit
    # and without cost_per_step: FLOPs with the requested size and the study's tokens_per_step,
    # which is what config.cost prices the proposal at
    flops = make_runner(config_from_dict(config(corpus_dir)))
    assert flops.cost(100_000, 30) == config_from_dict(config(corpus_dir)).cost(100_000, steps=30) == 6 * 100_000 * 30 * 16 * 64


@pytest.mark.slow
def test_the_timeout_clock_starts_after_corpus_preparation(tmp_path):
    """Preparing a missing built-in domain (seconds here) does not count against timeout_s:
    a 1 s timeout is enough for 5 steps even when the corpus must be built first."""
    r = BuiltinRunner(corpus=str(tmp_path / "fresh"), eval_domains=["docstrings"], context=64, checkpoints=1,
                      eval_batches=1, timeout_s=1.0)
    t0 = time.monotonic()
    res = r.run(trial(5, weights={"docstrings": 1.0}), tmp_path / "out")  # parsing the stdlib: seconds
    took = time.monotonic() - t0
    assert "preparing domain(s) ['docstrings']" in (tmp_path / "out" / "run.log").read_text()
    assert res.info["train_s"] < 1.0 and [c.steps for c in res.checkpoints] == [5]
    if took <= 1.0:
        pytest.skip(f"the corpus was prepared in {took:.2f} s, within the timeout: nothing shown")


@pytest.mark.slow
def test_each_retry_is_announced_to_the_checkpoint_sink(corpus_dir, tmp_path):
    """A retry trains from scratch; the sink is told before each attempt (the dispatcher then
    replaces the failed attempt's checkpoints instead of mixing them in)."""

    class Sink(list):
        def __init__(self):
            super().__init__()
            self.attempts = []

        def __call__(self, checkpoint):
            self.append(checkpoint)

        def begin_attempt(self, attempt):
            self.attempts.append((attempt, len(self)))

    r = BuiltinRunner(corpus=str(corpus_dir), eval_domains=["code"], context=64, eval_every=3, eval_batches=1,
                      timeout_s=1.5, retries=1, retry_backoff_s=0.0)
    r.run(trial(2), tmp_path / "warm")  # torch imported, corpus cached
    sink = Sink()
    with pytest.raises(RunFailed, match="timed out"):
        r.run(trial(100_000), tmp_path / "a", on_checkpoint=sink)
    assert [a for a, _ in sink.attempts] == [0, 1]
    first_of_second = sink.attempts[1][1]
    assert first_of_second > 0, "attempt 1 streamed no checkpoint before its timeout"
    assert sink[0].steps == 3 and sink[first_of_second].steps == 3  # attempt 2 starts over


@pytest.mark.slow
def test_unknown_domain_fails_with_the_fix(corpus_dir, tmp_path):
    r = BuiltinRunner(corpus=str(corpus_dir), eval_domains=["code"], context=64)
    with pytest.raises(RunFailed, match="neither in the corpus"):
        r.run(trial(5, weights={"code": 0.5, "mystery": 0.5}), tmp_path)


@pytest.mark.slow
def test_mixplan_run_end_to_end_with_the_builtin_trainer(corpus_dir, tmp_path):
    """Create a study with the built-in trainer (tiny model, a few dozen steps), approve two
    trials, `mixplan run`: both done with per-domain losses at every checkpoint and a cost."""
    from engine.cli import app

    db = tmp_path / "runs.duckdb"
    store = Store(db)
    store.create_study(config_from_dict(config(corpus_dir)))
    trials = store.add_trials("tiny", [
        Proposal({"code": 0.8, "docstrings": 0.1, "unicode": 0.1}, 100_000, steps=30),
        Proposal({"code": 0.1, "docstrings": 0.1, "unicode": 0.8}, 100_000, steps=30)])
    res = CliRunner().invoke(app, ["approve", "--study", "tiny", "--all", "--db", str(db)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["run", "--study", "tiny", "--db", str(db), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "2 done, 0 failed" in res.output
    assert {t.state for t in store.trials("tiny")} == {TrialState.DONE}
    df = store.runs_frame("tiny", meta=True)
    assert df.groupby("run_id").size().to_dict() == {t.run_id: 3 for t in trials}
    assert df[[f"loss_{d}" for d in DOMAINS]].notna().all().all()
    assert (df["cost"] > 0).all()
    for t in store.trials("tiny"):
        assert t.cost > 0
        ev = store.events("tiny", trial_id=t.trial_id)
        detail = json.loads(ev[ev["kind"] == "done"]["detail"].iloc[0])
        assert detail["info"]["size"] == "0.1M" and "ladder rung 0.1M" in detail["info"]["size_used"]
        assert detail["info"]["corpus"]["domains"]["code"]["key"]  # provenance kept with the run
    # the mixture shows: more code in the mix -> lower code loss at the end
    last = df[df["steps"] == 30].set_index("run_id")
    a, b = (t.run_id for t in trials)
    assert last.loc[a, "loss_code"] < last.loc[b, "loss_code"]
    assert last.loc[a, "loss_unicode"] > last.loc[b, "loss_unicode"]


@pytest.mark.slow
def test_isolated_mode_runs_cli_train_per_trial(corpus_dir, tmp_path):
    r = BuiltinRunner(corpus=str(corpus_dir), context=64, checkpoints=2, eval_batches=1, isolate=True)
    seen = []
    res = r.run(trial(10), tmp_path, on_checkpoint=seen.append)
    assert [c.steps for c in res.checkpoints] == [5, 10] and sorted(c.steps for c in seen) == [5, 10]
    assert res.info["isolated"] and res.info["size"] == "0.1M"
    assert (tmp_path / "result.json").exists() and (tmp_path / "run.log").exists()
