"""engine.runners.safety: a study whose runner starts programs is created, edited or dispatched
from the web app only with the server's opt-in (`mixplan app --allow-commands`); dispatchers
the app starts without it refuse such studies themselves; the argv shown before a dispatch is
the one the command runner starts."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from engine.cli import app as cli
from engine.config import config_from_dict
from engine.dispatch import run_approved
from engine.dispatch.dispatcher import runs_root, spool_root
from engine.errors import CommandsNotAllowedError
from engine.runners.command import CommandRunner, render_argv
from engine.runners.safety import (
    ALLOW_ENV,
    SAFE_KINDS,
    SUBMISSION,
    check_runner_allowed,
    command_preview,
    commands_allowed,
    dispatch_allowed,
    starts_programs,
)
from fixtures.dispatch_helpers import add_approved, command_study, fake_argv


def _cfg(kind: str, **runner):
    extra = {"argv": ["/bin/sh", "-c", "id"]} if kind == "command" else {}
    return config_from_dict({"name": "s", "domains": ["a", "b"], "runner": {"kind": kind, **extra, **runner}},
                            check_runner_keys=False)


def test_which_runners_start_programs():
    assert starts_programs(_cfg("command")) and starts_programs("command")
    assert not any(starts_programs(k) for k in ("builtin", "mfms-sim", "table"))
    assert SAFE_KINDS == {"builtin", "mfms-sim", "table"}
    assert starts_programs("docker")  # a kind added later is refused until it is listed as safe
    assert not starts_programs(_cfg("builtin").runner)


def test_the_check_and_its_message():
    with pytest.raises(CommandsNotAllowedError) as exc:
        check_runner_allowed(_cfg("command"), allowed=False, action="create")
    msg = str(exc.value)
    assert "study 's' has [runner] kind = \"command\"" in msg and "does not create such a study" in msg
    assert "mixplan app --allow-commands" in msg and "mixplan study create --config FILE" in msg
    check_runner_allowed(_cfg("command"), allowed=True, action="create")
    check_runner_allowed(_cfg("builtin"), allowed=False, action="create")


def test_the_opt_in_travels_in_the_environment():
    assert commands_allowed({ALLOW_ENV: "1"}) and not commands_allowed({}) and not commands_allowed({ALLOW_ENV: "0"})
    assert not commands_allowed({ALLOW_ENV: "yes"})  # only what `mixplan app --allow-commands` sets
    assert dispatch_allowed({}) and dispatch_allowed({ALLOW_ENV: "1"}) and not dispatch_allowed({ALLOW_ENV: "0"})


def test_mixplan_app_sets_the_opt_in_from_its_flag_only(tmp_path, monkeypatch):
    """`mixplan app` execs streamlit with MIXPLAN_ALLOW_COMMANDS=0 unless --allow-commands, even
    when the shell exported 1 (the flag alone decides; ./mixplan.sh app passes no flag)."""
    import os

    seen = []

    class Exec(Exception):
        pass

    def fake_execve(path, argv, env):
        seen.append((argv, env))
        raise Exec()

    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.setenv(ALLOW_ENV, "1")
    db = str(tmp_path / "x.duckdb")
    r = CliRunner().invoke(cli, ["app", "--db", db])
    assert isinstance(r.exception, Exec) and seen[-1][1][ALLOW_ENV] == "0"
    r = CliRunner().invoke(cli, ["app", "--db", db, "--allow-commands"])
    assert isinstance(r.exception, Exec) and seen[-1][1][ALLOW_ENV] == "1"
    assert "--allow-commands: the app may create and dispatch" in r.output
    assert "streamlit" in seen[-1][0]
    # ./mixplan.sh app passes only what the user types: off by default
    assert "--allow-commands" not in open(os.path.join(os.path.dirname(__file__), "..", "mixplan.sh")).read()


def test_a_dispatcher_started_without_the_opt_in_refuses_and_changes_nothing(tmp_path, monkeypatch):
    store = command_study(tmp_path / "runs.duckdb")
    ids = add_approved(store, "cmd", ["a"])
    version = store.data_version("cmd")
    monkeypatch.setenv(ALLOW_ENV, "0")  # what the app hands the dispatchers it starts without the flag
    with pytest.raises(CommandsNotAllowedError, match="does not dispatch the trials of such a study"):
        run_approved(store, "cmd", workers=1)
    assert store.get_trial(ids[0]).state.value == "approved" and store.data_version("cmd") == version
    assert not spool_root(store, "cmd").exists() and not (runs_root(store, "cmd") / "a").exists()
    import os
    import subprocess

    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--study", "cmd", "--db", str(store.path)],
                       env=dict(os.environ, **{ALLOW_ENV: "0"}), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--allow-commands" in r.stderr, r.stderr
    assert store.get_trial(ids[0]).state.value == "approved" and store.data_version("cmd") == version


def test_command_preview_is_the_argv_the_runner_starts(tmp_path):
    store = command_study(tmp_path / "runs.duckdb")
    add_approved(store, "cmd", ["a", "b"], steps=60)
    cfg = store.get_config("cmd")
    trials = store.trials("cmd", ["approved"])
    runs = runs_root(store, "cmd")
    previews = command_preview(cfg, trials, runs)
    assert [p.run_id for p in previews] == ["a", "b"] and not any(p.error for p in previews)
    runner = CommandRunner.from_config(cfg)
    for p, t in zip(previews, trials):
        out = runs / t.run_id / SUBMISSION
        assert list(p.argv) == render_argv(runner.argv, runner.placeholder_values(t, out))
        assert p.argv[:2] == (sys.executable, fake_argv()[1]) and p.argv[p.argv.index("--steps") + 1] == "60"
        assert p.argv[p.argv.index("--out") + 1] == f"{runs}/{t.run_id}/{SUBMISSION}"
    assert command_preview(_cfg("builtin"), trials, runs) == []
