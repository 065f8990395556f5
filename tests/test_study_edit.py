"""`mixplan study edit`: a patch changes an existing study's config, validated like `study create`,
checked against the stored runs, logged old -> new; imported studies point to it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import ConfigError, ValidationError
from engine.records import Proposal
from engine.store import Store

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

SCALES_PATCH = """
[[scales]]
model_params = 1_000_000
steps = [200, 400]

[target]
model_params = 1_000_000
steps = 400
"""


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def imported(tmp_db: Path, data_dir: Path) -> Path:
    """A study made by `mixplan import`: no scales, no target, no runner."""
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "imp", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    return tmp_db


def patch(tmp_path: Path, text: str, name: str = "patch.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_import_says_how_to_go_on_and_its_patch_works(tmp_db: Path, data_dir: Path, tmp_path: Path) -> None:
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "imp", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    assert "mixplan study edit --study imp --config patch.toml" in r.output
    # the example patch is printed literally (tables and all) and built from the runs: 1M params, 400 steps
    m = re.search(r"patch\.toml:\n(.*?)\nthen run", r.output, re.S)
    assert m, r.output
    text = m.group(1)
    assert "[[scales]]" in text and "[target]" in text and "model_params = 1000000" in text
    r = cli("study", "edit", "--study", "imp", "--config", patch(tmp_path, text), "--db", tmp_db)
    assert r.exit_code == 0, r.output
    cfg = Store(tmp_db).get_config("imp")
    assert cfg.scales[0].model_params == 1_000_000 and cfg.target.model_params == 5_000_000
    # and the study is no longer a dead end: a strategy proposes at its scales
    r = cli("propose", "--study", "imp", "--strategy", "random", "--json", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["model_params"] == 5_000_000


def test_edit_changes_scales_and_target_and_logs_old_and_new(imported: Path, tmp_path: Path) -> None:
    p = patch(tmp_path, 'budget = 1e12\ndescription = "edited"\n' + SCALES_PATCH + "[runner]\ntimeout_s = 60\n")
    r = cli("study", "edit", "--study", "imp", "--config", p, "--dry-run", "--db", imported)
    assert r.exit_code == 0, r.output
    assert "would change study imp" in r.output and "target: (none) -> " in r.output
    assert Store(imported).get_config("imp").scales == ()  # a dry run writes nothing
    r = cli("study", "edit", "--study", "imp", "--config", p, "--db", imported)
    assert r.exit_code == 0, r.output
    cfg = Store(imported).get_config("imp")
    assert [(s.model_params, s.steps) for s in cfg.scales] == [(1_000_000, (200, 400))]
    assert (cfg.target.model_params, cfg.target.steps, cfg.budget) == (1_000_000, 400, 1e12)
    assert cfg.runner.timeout_s == 60 and cfg.description == "edited"
    assert cfg.tokens_per_step is None  # an imported study's runs keep their own tokens
    ev = Store(imported).events("imp")
    edited = ev[ev["kind"] == "config_edited"]
    assert len(edited) == 1
    changes = {c["key"]: (c["old"], c["new"]) for c in json.loads(edited["detail"].iloc[0])["changes"]}
    assert changes["target"] == (None, {"model_params": 1_000_000, "steps": 400})
    assert changes["runner.timeout_s"] == (3600.0, 60.0) and changes["budget"] == (None, 1e12)
    # the same patch again: nothing to change, nothing logged
    r = cli("study", "edit", "--study", "imp", "--config", p, "--db", imported)
    assert r.exit_code == 0 and "nothing to change" in r.output
    assert (Store(imported).events("imp")["kind"] == "config_edited").sum() == 1


def test_objective_follows_what_the_runs_measured(imported: Path, tmp_path: Path) -> None:
    r = cli("study", "edit", "--study", "imp", "--config", patch(tmp_path, 'objective = "metric_acc"\n'),
            "--json", "--db", imported)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert {c["key"]: c["new"] for c in out["changes"]} == {"objective": "metric_acc", "direction": "maximize"}
    r = cli("study", "edit", "--study", "imp", "--config", patch(tmp_path, 'objective = "metric_mmlu"\n'),
            "--db", imported)
    assert isinstance(r.exception, ValidationError)
    msg = str(r.exception)
    assert "never measured 'metric_mmlu'" in msg and "metric_acc" in msg and "loss_code" in msg


@pytest.mark.parametrize("text, words", [
    ('domains = ["web", "code"]\n', ["key 'domains'", "3 trial(s)", "no longer match their weights"]),
    ("tokens_per_step = 1000\n", ["key 'tokens_per_step'", "tokens / steps = 655.36", "tokens_per_step = 655"]),
    ('[runner]\nkind = "builtin"\n', ["tokens / steps = 655.36", "batch_size x context"]),
    ('name = "other"\n', ["cannot be renamed"]),
    ("[[scales]]\nmodel_params = 1000\nsteps = []\n", ["scales[0].steps", "non-empty list"]),
    ("[target]\nmodel_params = 1000\n", ["key 'target'", "give steps or tokens"]),
    ("[runner]\ntimeuot_s = 5\n", ["runner.timeuot_s", "did you mean 'timeout_s'"]),
    ("budjet = 5\n", ["key 'budjet'", "did you mean 'budget'"]),
    ("[bounds]\nweb = [0.9, 1.0]\ncode = [0.2, 1.0]\n", ["no mixture fits"]),
    ("", ["the patch is empty"]),
])
def test_edits_the_runs_contradict_or_create_would_refuse(imported: Path, tmp_path: Path, text: str,
                                                          words: list[str]) -> None:
    before = Store(imported).get_config("imp")
    r = cli("study", "edit", "--study", "imp", "--config", patch(tmp_path, text), "--db", imported)
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError | ValidationError), r.output
    for w in words:
        assert w in str(r.exception)
    assert "patch.toml" in str(r.exception)
    assert Store(imported).get_config("imp") == before


def test_tokens_per_step_cannot_reinterpret_stored_steps(tmp_db: Path, tmp_path: Path) -> None:
    store = Store(tmp_db)
    from engine.config import config_from_dict

    store.create_study(config_from_dict({"name": "s", "domains": ["a", "b"], "tokens_per_step": 512,
                                         "scales": [{"model_params": 1000, "steps": [10]}]}))
    # no trial yet: free to change (and the domains too)
    edit = store.edit_config("s", {"tokens_per_step": 1024, "domains": ["a", "b", "c"]})
    assert edit.new.tokens_per_step == 1024 and store.study_domains("s")["train"] == ["a", "b", "c"]
    store.add_trials("s", [Proposal({"a": 0.5, "b": 0.5, "c": 0.0}, 1000, steps=10)])
    with pytest.raises(ValidationError, match="1 stored checkpoint.*trial.*count steps of 1024 tokens"):
        store.edit_config("s", {"tokens_per_step": 2048})


def test_runner_kind_cannot_change_under_running_trials(tmp_db: Path) -> None:
    from engine.config import config_from_dict
    from engine.records import TrialState

    store = Store(tmp_db)
    store.create_study(config_from_dict({"name": "s", "domains": ["a", "b"],
                                         "scales": [{"model_params": 1000, "steps": [10]}]}))
    (t,) = store.add_trials("s", [Proposal({"a": 0.5, "b": 0.5}, 1000, steps=10)], state=TrialState.APPROVED)
    store.transition([t.trial_id], TrialState.QUEUED)
    store.start_trial(t.trial_id)
    new_runner = {"runner": {"kind": "command", "argv": ["python3", "train.py", "{out_dir}"]}}
    with pytest.raises(ValidationError, match="1 trial.s. running under the builtin runner"):
        store.edit_config("s", new_runner)
    store.fail_trial(t.trial_id, "test")
    assert store.edit_config("s", new_runner).new.runner.kind == "command"


def test_propose_and_export_of_an_imported_study_point_to_study_edit(imported: Path) -> None:
    r = cli("propose", "--study", "imp", "--strategy", "random", "--db", imported)
    msg = str(r.exception)
    assert isinstance(r.exception, ValidationError)
    assert "[[scales]]" in msg and "[target]" in msg and "mixplan study edit --study imp --config patch.toml" in msg
    r = cli("export", "--study", "imp", "--db", imported)
    msg = str(r.exception)
    assert isinstance(r.exception, ValidationError)
    assert "[target]" in msg and "[[scales]]" not in msg and "mixplan study edit --study imp" in msg


def test_printed_errors_keep_toml_table_names(imported: Path) -> None:
    """What the user sees: the error line printed by `mixplan` itself names `[[scales]]`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-m", "engine.cli", "propose", "--study", "imp", "--strategy", "random",
                        "--db", str(imported)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert "[[scales]]" in p.stderr and "[target]" in p.stderr, p.stderr


def test_create_and_import_config_on_an_existing_study_point_to_study_edit(imported: Path, tmp_path: Path,
                                                                           data_dir: Path) -> None:
    cfg = patch(tmp_path, 'name = "imp"\ndomains = ["web", "code", "books"]\n', "imp.toml")
    r = cli("study", "create", "--config", cfg, "--db", imported)
    assert "already exists" in str(r.exception) and "mixplan study edit --study imp" in str(r.exception)
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "imp", "--config", cfg, "--db", imported)
    assert "exists already" in str(r.exception) and "mixplan study edit --study imp" in str(r.exception)
