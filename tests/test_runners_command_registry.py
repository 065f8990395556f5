"""make_runner: the study's [runner] kind picks the runner; heavy modules load only on demand."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError, NotAvailableError
from engine.runners import CommandRunner, make_runner
from engine.runners.registry import RUNNER_MODULES


def cfg(kind: str, **runner) -> object:
    domains = ["wikipedia", "stackexchange", "github", "arxiv", "book"]
    return config_from_dict({"name": "s", "domains": domains, "runner": {"kind": kind, **runner}})


def test_command_kind():
    assert isinstance(make_runner(cfg("command", argv=["t", "{out_dir}"])), CommandRunner)


def test_builtin_kind_does_not_import_torch():
    code = ("import sys; from engine.config import config_from_dict; from engine.runners import make_runner; "
            "r = make_runner(config_from_dict(dict(name='s', domains=['a', 'b'], runner=dict(kind='builtin')))); "
            "print(type(r).__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["BuiltinRunner", "False"]


@pytest.mark.parametrize("kind", ["mfms-sim", "table"])
def test_simulator_kinds_dispatch_to_their_modules(kind):
    if importlib.util.find_spec(RUNNER_MODULES[kind]) is None:
        with pytest.raises(NotAvailableError, match="not available"):
            make_runner(cfg(kind))
        return
    try:
        runner = make_runner(cfg(kind))
    except (NotAvailableError, ConfigError, FileNotFoundError) as exc:  # e.g. a missing weights / table file
        pytest.skip(f"{kind} needs data here: {exc}")
    except Exception as exc:  # noqa: BLE001 -- the module's own validation of options
        if "Error" in type(exc).__name__:
            pytest.skip(f"{kind}: {exc}")
        raise
    assert runner.kind == kind


def test_unknown_kind():
    from dataclasses import replace

    c = cfg("command", argv=["x"])
    with pytest.raises(ConfigError, match="unknown runner"):
        make_runner(replace(c, runner=replace(c.runner, kind="nope")))
