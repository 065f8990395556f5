"""The command runner (DESIGN.md contract 3): argv templates, result.json, timeouts, retries,
cancellation, log capture."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.records import Trial, TrialState
from engine.runners import CommandRunner, RunFailed, make_runner, parse_result
from engine.runners.command import check_template, render_argv
from fixtures.dispatch_helpers import FAKE_TRAINER, fake_argv


def trial(run_id: str = "ok-1", steps: int | None = 30, tokens: float | None = 61440.0, seed: int | None = 7) -> Trial:
    return Trial(1, "s", run_id, TrialState.RUNNING, {"code": 0.5, "books": 0.25, "web": 0.25}, 100_000, steps,
                 tokens, "manual", "manual", None, None, None, None, None, seed)


def runner(*extra: str, **kw) -> CommandRunner:
    kw.setdefault("timeout_s", 30)
    kw.setdefault("kill_grace_s", 1.0)
    kw.setdefault("poll_s", 0.1)
    return CommandRunner(fake_argv(*extra), **kw)


# ---- templates ------------------------------------------------------------------------------
def test_render_fills_placeholders_and_never_splits_arguments():
    values = {"run_id": "r 1; rm -rf /", "weights_json": "/x/w.json", "model_params": 100, "tokens": 2048,
              "steps": 7, "out_dir": "/o", "seed": 3}
    argv = render_argv(["prog", "--id={run_id}", "{steps:05d}", "{weights_json}", "{{literal}}", "{seed}"], values)
    assert argv == ["prog", "--id=r 1; rm -rf /", "00007", "/x/w.json", "{literal}", "3"]


@pytest.mark.parametrize("bad", [["p", "{nope}"], ["p", "{run_id.__class__}"], ["p", "{steps[0]}"],
                                 ["p", "{run_id!r}"], ["p", "{"], []])
def test_bad_templates_are_rejected(bad):
    with pytest.raises(ValueError):
        check_template(bad)


def test_missing_value_fails_with_the_fix():
    with pytest.raises(RunFailed, match="tokens_per_step"):
        render_argv(["p", "{tokens}"], {"tokens": None})


# ---- result.json ----------------------------------------------------------------------------
def test_parse_result_reads_contract_3():
    r = parse_result({"checkpoints": [{"steps": 10, "tokens": 20480, "losses": {"code": 2.5, "web": 2.9},
                                       "metrics": {"acc": 0.3}},
                                      {"steps": 20, "losses": {"code": 2.4, "web": 2.8}}],
                      "cost": 12.5, "extra": "ignored", "info": {"size": "0.1M"}})
    assert [c.steps for c in r.checkpoints] == [10, 20]
    assert r.checkpoints[0].losses == {"code": 2.5, "web": 2.9} and r.checkpoints[0].metrics == {"acc": 0.3}
    assert r.cost == 12.5 and r.info == {"size": "0.1M"}


@pytest.mark.parametrize("obj,msg", [
    ([], "top level"),
    ({}, "non-empty list"),
    ({"checkpoints": []}, "non-empty list"),
    ({"checkpoints": [{"steps": 1}]}, "losses"),
    ({"checkpoints": [{"steps": 1, "losses": {}}]}, "losses"),
    ({"checkpoints": [{"losses": {"a": 1.0}}]}, "steps"),
    ({"checkpoints": [{"steps": -1, "losses": {"a": 1.0}}]}, "non-negative"),
    ({"checkpoints": [{"steps": 1.5, "losses": {"a": 1.0}}]}, "integer"),
    ({"checkpoints": [{"steps": 1, "losses": {"a": float("nan")}}]}, "finite"),
    ({"checkpoints": [{"steps": 1, "losses": {"a": True}}]}, "finite"),
    ({"checkpoints": [{"steps": 1, "losses": {"a": "2.0"}}]}, "finite"),
    ({"checkpoints": [{"steps": 1, "losses": {"bad name": 1.0}}]}, "bad name"),
    ({"checkpoints": [{"steps": 1, "losses": {"a": 1.0}, "metrics": [1]}]}, "metrics"),
    ({"checkpoints": [{"steps": 1, "losses": {"a": 1.0}}, {"steps": 1, "losses": {"a": 0.9}}]}, "same steps"),
    ({"checkpoints": [{"steps": 1, "losses": {"a": 1.0}}], "cost": -1}, "cost"),
    ({"checkpoints": [{"steps": 1, "losses": {"a": 1.0}}], "info": 3}, "info"),
])
def test_parse_result_is_strict(obj, msg):
    with pytest.raises(ValueError, match=msg):
        parse_result(obj)


# ---- running programs -----------------------------------------------------------------------
def test_run_ok_streams_checkpoints_and_keeps_the_log(tmp_path):
    seen = []
    r = runner("--checkpoints", "3").run(trial(), tmp_path / "out", on_checkpoint=seen.append)
    assert [c.steps for c in r.checkpoints] == [10, 20, 30]
    assert [c.steps for c in seen] == [10, 20, 30]  # each handed over exactly once
    assert set(r.checkpoints[0].losses) == {"code", "books", "web"} and r.cost > 0
    assert json.loads((tmp_path / "out" / "weights.json").read_text()) == {"code": 0.5, "books": 0.25, "web": 0.25}
    log = (tmp_path / "out" / "run.log").read_text()
    assert "seed=7" in log and "exit status 0" in log
    assert r.info["attempts"] == 1 and r.info["argv"][0] == sys.executable


def test_env_passthrough_and_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXPLAN_TEST_PASSTHROUGH", "yes")
    code = ("import json, os, sys; out = sys.argv[1]; json.dump(dict(checkpoints=[dict(steps=1, losses=dict(a=1.0))], "
            "info=dict(cwd=os.getcwd(), p=os.environ['MIXPLAN_TEST_PASSTHROUGH'], extra=os.environ['EXTRA'], "
            "rid=os.environ['MIXPLAN_RUN_ID'])), open(out + '/result.json', 'w'))")  # no braces: they are placeholders
    (tmp_path / "wd").mkdir()
    r = CommandRunner([sys.executable, "-c", code, "{out_dir}"], cwd=tmp_path / "wd", env={"EXTRA": "x"},
                      poll_s=0.1).run(trial(), tmp_path / "o")
    assert r.info["cwd"] == str(tmp_path / "wd") and r.info["p"] == "yes" and r.info["extra"] == "x"
    assert r.info["rid"] == "ok-1"


@pytest.mark.parametrize("mode,reason", [
    ("crash", "exited with status 3"),
    ("segv", "killed by signal 11"),
    ("malformed", "malformed result: checkpoints\\[2\\].losses\\['code'\\] must be a finite number"),
    ("garbage", "malformed result: result.json is not valid JSON"),
    ("noresult", "wrote no result.json"),
])
def test_failures_carry_reason_and_log_tail(tmp_path, mode, reason):
    with pytest.raises(RunFailed, match=reason) as exc:
        runner("--mode", mode).run(trial(), tmp_path)
    assert "fake trainer: weights=" in exc.value.log_tail
    if mode == "crash":
        assert "simulated crash" in exc.value.log_tail


def test_missing_program_fails_cleanly(tmp_path):
    with pytest.raises(RunFailed, match="could not start"):
        CommandRunner(["/nonexistent/trainer", "{out_dir}"]).run(trial(), tmp_path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not yet reaped by init) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_timeout_kills_the_whole_process_group(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(RunFailed, match="timed out after 1 s") as exc:
        runner("--mode", "hang", timeout_s=1.0).run(trial(), tmp_path)
    assert time.monotonic() - t0 < 10
    assert "hanging" in exc.value.log_tail
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the trainer's own child survived the timeout"


def test_retries_with_backoff(tmp_path):
    state = tmp_path / "flaky.state"
    r = runner("--mode", "flaky", "--state", str(state), retries=1, retry_backoff_s=0.1).run(trial(), tmp_path / "o")
    assert r.info["attempts"] == 2
    log = (tmp_path / "o" / "run.log").read_text()
    assert "attempt 1/2" in log and "attempt 2/2" in log and "failing the first attempt" in log


def test_retries_exhausted_say_so(tmp_path):
    with pytest.raises(RunFailed, match=r"exited with status 3 \(after 3 attempts\)"):
        runner("--mode", "crash", retries=2, retry_backoff_s=0.05).run(trial(), tmp_path)


def test_cancel_stops_the_program(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(RunFailed, match="cancelled"):
        runner("--mode", "hang", retries=3).run(trial(), tmp_path, cancel=cancel)
    assert time.monotonic() - t0 < 8


def test_a_stale_result_from_an_earlier_attempt_is_never_read(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"checkpoints": [{"steps": 1, "losses": {"a": 1.0}}]}))
    with pytest.raises(RunFailed, match="wrote no result.json"):
        runner("--mode", "noresult").run(trial(), tmp_path)


# ---- config and registry --------------------------------------------------------------------
def test_make_runner_builds_a_command_runner_from_the_study_config():
    cfg = config_from_dict({"name": "s", "domains": ["a", "b"], "runner": {
        "kind": "command", "argv": ["python3", FAKE_TRAINER, "--out", "{out_dir}"], "timeout_s": 12, "retries": 2,
        "retry_backoff_s": 0.5, "cwd": "/tmp", "env": {"A": "1"}}})
    r = make_runner(cfg)
    assert isinstance(r, CommandRunner)
    assert (r.timeout_s, r.retries, r.retry_backoff_s, r.cwd, r.env) == (12.0, 2, 0.5, "/tmp", {"A": "1"})


def test_runner_is_picklable():
    import pickle

    r = runner("--checkpoints", "2")
    assert pickle.loads(pickle.dumps(r)).argv == r.argv
