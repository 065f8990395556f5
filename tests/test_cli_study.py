"""`mixplan study create|list|show` with a TOML config, and config errors that name the key and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import ConfigError, NotFoundError, ValidationError

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_create_list_show(tmp_db: Path, data_dir: Path) -> None:
    r = cli("study", "create", "--config", data_dir / "study_small.toml", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    assert "created study small" in r.output
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "small", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    r = cli("study", "list", "--json", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == [{"name": "small", "domains": ["web", "code", "books"], "runs": 3,
                                     "checkpoints": 9, "runner": "builtin", "validation_runs": 0}]
    r = cli("study", "show", "small", "--json", "--db", tmp_db)
    shown = json.loads(r.output)
    assert shown["config"]["objective"] == "loss_code"
    assert shown["config"]["bounds"] == {"default": [0.0, 0.8], "web": [0.1, 0.7]}
    assert shown["trials"] == {"done": 3}
    assert shown["domains"]["eval"] == ["web", "code", "books"] and shown["domains"]["metric"] == ["acc"]
    r = cli("study", "show", "small", "--db", tmp_db)
    assert r.exit_code == 0 and "loss_code" in r.output and "import" in r.output
    r = cli("study", "list", "--db", tmp_db)
    assert "small" in r.output
    r = cli("study", "create", "--config", data_dir / "study_small.toml", "--db", tmp_db)
    assert r.exit_code != 0 and "already exists" in str(r.exception)
    r = cli("study", "show", "nope", "--db", tmp_db)
    assert isinstance(r.exception, NotFoundError) and "small" in str(r.exception)


def test_import_with_config(tmp_db: Path, data_dir: Path, tmp_path: Path) -> None:
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "other", "--config",
            data_dir / "study_small.toml", "--db", tmp_db)
    assert r.exit_code != 0 and "--study is 'other'" in str(r.exception)
    assert not tmp_db.exists()
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "small", "--config",
            data_dir / "study_small.toml", "--db", tmp_db, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["created_study"] is True
    r = cli("study", "show", "small", "--json", "--db", tmp_db)
    assert json.loads(r.output)["config"]["tokens_per_step"] == 655


def test_missing_db_is_explained(tmp_db: Path) -> None:
    r = cli("study", "list", "--db", tmp_db)
    assert isinstance(r.exception, NotFoundError) and "no database" in str(r.exception)
    assert not tmp_db.exists()


BASE = 'name = "s"\ndomains = ["web", "code"]\n'
CONFIG_ERRORS = [
    ("unknown-key", BASE + "objectve = 'mean_loss'\n", ["key 'objectve'", "unknown key", "did you mean 'objective'"]),
    ("unknown-scale-key", BASE + "[[scales]]\nmodel_params = 1000\nstep = [1]\n",
     ["scales[0].step", "did you mean 'steps'"]),
    ("bad-bounds", BASE + "[bounds]\nweb = [0.6, 0.4]\n", ["bounds.web", "0 <= low <= high <= 1"]),
    ("infeasible-bounds", BASE + "[bounds]\nweb = [0.6, 1.0]\ncode = [0.6, 1.0]\n",
     ["no mixture fits", "lower bounds sum to 1.2"]),
    ("bounds-unknown-domain", BASE + "[bounds]\nbook = [0.0, 0.5]\n", ["bounds.book", "unknown key"]),
    ("one-domain", 'name = "s"\ndomains = ["web"]\n', ["key 'domains'", "at least two"]),
    ("bad-name", 'name = "has space"\ndomains = ["a", "b"]\n', ["key 'name'"]),
    ("bad-objective", BASE + 'objective = "accuracy"\n', ["key 'objective'", "mean_loss"]),
    ("bad-runner", BASE + '[runner]\nkind = "shell"\n', ["runner.kind", "builtin, command"]),
    ("command-no-argv", BASE + '[runner]\nkind = "command"\n', ["runner.argv", "needs an argv"]),
    ("bad-placeholder", BASE + '[runner]\nkind = "command"\nargv = ["train", "{weights}"]\n',
     ["unknown placeholder", "weights_json"]),
    ("negative-params", BASE + "[[scales]]\nmodel_params = -5\nsteps = [10]\n", ["scales[0].model_params", "positive integer"]),
    ("not-toml", "name = \n", ["not valid TOML"]),
    # TOML has inf and nan: refused with the key, not an OverflowError / ValueError from int()
    ("inf-tokens-per-step", BASE + "tokens_per_step = inf\n", ["key 'tokens_per_step'", "positive integer, got inf",
                                                               "Fix: give a whole number"]),
    ("inf-model-params", BASE + "[[scales]]\nmodel_params = inf\nsteps = [10]\n",
     ["key 'scales[0].model_params'", "got inf"]),
    ("nan-steps", BASE + "[[scales]]\nmodel_params = 1000\nsteps = [nan]\n", ["key 'scales[0].steps'", "got nan"]),
    ("nan-target", BASE + "[target]\nmodel_params = nan\nsteps = 10\n", ["key 'target.model_params'", "got nan"]),
    ("inf-cost", BASE + "[[scales]]\nmodel_params = 1000\nsteps = [10]\ncost_per_step = inf\n",
     ["scales[0].cost_per_step", "positive number, got inf"]),
    ("runner-typo", BASE + '[runner]\nkind = "command"\nargv = ["t", "{out_dir}"]\ntimeuot_s = 60\n',
     ["key 'runner.timeuot_s'", "unknown key for a command runner", "did you mean 'timeout_s'"]),
    ("runner-key-of-another-kind", BASE + '[runner]\nkind = "table"\npath = "r.csv"\nnoise = 0.1\n',
     ["key 'runner.noise'", "unknown key for a table runner", "option of the mfms-sim and synthetic runners"]),
    ("repeated-eval-domains", BASE + 'eval_domains = ["web", "web"]\n', ["key 'eval_domains'", "repeated", "web"]),
    ("objective-without-domain", BASE + 'objective = "loss_"\n', ["key 'objective'", "no domain after 'loss_'"]),
    ("objective-without-metric", BASE + 'objective = "metric_"\n', ["key 'objective'", "no name after 'metric_'"]),
    ("negative-seed", BASE + "seed = -1\n", ["key 'seed'", "integer >= 0, got -1"]),
]


@pytest.mark.parametrize("case", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors(case, tmp_path: Path, tmp_db: Path) -> None:
    name, text, pieces = case
    p = tmp_path / "study.toml"
    p.write_text(text)
    r = cli("study", "create", "--config", p, "--db", tmp_db)
    assert r.exit_code != 0
    assert isinstance(r.exception, ConfigError), r.output
    msg = str(r.exception)
    assert str(p) in msg
    for piece in pieces:
        assert piece in msg, f"{piece!r} not in {msg!r}"
    assert not tmp_db.exists() or json.loads(cli("study", "list", "--json", "--db", tmp_db).output) == []


def test_module_entry_point_prints_message_not_traceback(tmp_path: Path) -> None:
    p = tmp_path / "study.toml"
    p.write_text(BASE + "objectve = 1\n")
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "engine.cli", "study", "create", "--config", str(p),
                        "--db", str(tmp_path / "x.duckdb")], cwd=repo, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "did you mean 'objective'" in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_print_a_message_not_a_traceback(tmp_path: Path) -> None:
    """typer vendors its own click: its usage errors must still print as click's do (exit 2)."""
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "engine.cli", "import", "--bogus"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(repo)})
    assert r.returncode == 2, r.stderr
    assert "No such option: --bogus" in r.stderr and "mixplan import --help" in r.stderr
    assert "Traceback" not in r.stderr


def test_db_before_the_command(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mixplan --db F cmd` works like `mixplan cmd --db F`; a command's own --db still wins."""
    monkeypatch.delenv("MIXPLAN_DB", raising=False)  # restored after the test
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    r = cli("--db", first, "study", "create", "--config", data_dir / "study_small.toml")
    assert r.exit_code == 0, r.output
    assert first.exists() and not (tmp_path / "runs.duckdb").exists()
    r = cli("--db", first, "study", "create", "--config", data_dir / "study_small.toml", "--db", second)
    assert r.exit_code == 0, r.output
    assert second.exists()
    listed = json.loads(cli("--db", first, "study", "list", "--json").output)
    assert [s["name"] for s in listed] == ["small"]


@pytest.mark.parametrize("command", ["import", "optimum"])
@pytest.mark.parametrize("value", ["inf", "nan", "1.5"])
def test_model_params_option_must_be_a_whole_number(command: str, value: str, tmp_db: Path, data_dir: Path) -> None:
    args = (["import", data_dir / "runs_checkpoints.csv", "--study", "s"] if command == "import"
            else ["optimum", "--study", "s", "--model", "mfms-gp", "--steps", "100"])
    r = cli(*args, "--model-params", value, "--db", tmp_db)
    assert r.exit_code != 0
    assert isinstance(r.exception, ValidationError), r.output  # not OverflowError / ValueError
    assert "--model-params must be a positive whole number" in str(r.exception) and r.exception.fix
    assert not tmp_db.exists()
