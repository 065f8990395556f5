"""Study config validation beyond the CLI's error cases (tests/test_cli_study.py): the [runner]
key sets agree with what the runners and executors read, stored configs stay readable, and
the values that are fine stay fine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import (EXECUTOR_OPTION_KEYS, RUNNER_KEYS, RUNNER_KINDS, RUNNER_OPTION_TYPES, config_from_dict,
                           load_config)
from engine.errors import ConfigError
from engine.store import Store

REPO = Path(__file__).resolve().parents[1]
BASE = {"name": "s", "domains": ["web", "code"]}


def test_executor_keys_match_the_executors() -> None:
    """Every key an executor reads is accepted under [runner], and the executors are the ones
    make_executor knows."""
    from engine.config import EXECUTOR_KEYS
    from engine.dispatch.executors import EXECUTORS

    assert EXECUTOR_OPTION_KEYS == frozenset().union(*EXECUTOR_KEYS.values())
    assert set(EXECUTORS) == {"local", "slurm", "ray"}


def test_builtin_keys_match_the_builtin_runner() -> None:
    """The builtin runner checks its own keys too: it must accept every key the config lets through."""
    from engine.runners.builtin import BuiltinRunner

    values = {"corpus": "/nonexistent", "batch_size": 8, "context": 64, "lr": 1e-3, "checkpoints": 2,
              "eval_every": 10, "eval_batches": 2, "threads": 1, "device": "cpu", "isolate": False}
    assert set(values) == RUNNER_KEYS["builtin"]
    runner = {"kind": "builtin", **values, **{k: _valid(k) for k in EXECUTOR_OPTION_KEYS}, "slurm_comment": "c"}
    BuiltinRunner.from_config(config_from_dict({**BASE, "runner": runner}))


def _valid(key: str):
    """A value of the kind RUNNER_OPTION_TYPES asks of ``key``."""
    rule = RUNNER_OPTION_TYPES[key]
    if isinstance(rule, tuple):
        return rule[0]
    if rule.startswith("int>="):
        return max(1, int(rule[5:]))
    return {"float>0": 1.0, "float>=0": 0.0, "str": "x", "bool": False, "strs": "x"}.get(rule, {})


@pytest.mark.parametrize("kind", RUNNER_KINDS)
def test_every_kind_has_a_key_set(kind: str) -> None:
    assert kind in RUNNER_KEYS


def test_typo_in_runner_key_is_caught_for_every_kind() -> None:
    for kind, extra in (("builtin", {}), ("command", {"argv": ["t"]}), ("mfms-sim", {}), ("table", {"path": "x"})):
        with pytest.raises(ConfigError,
                           match=rf"runner.retires': unknown key for a {kind} runner.*did you mean 'retries'"):
            config_from_dict({**BASE, "runner": {"kind": kind, **extra, "retires": 1}})


def test_good_values_stay_good() -> None:
    cfg = config_from_dict({**BASE, "objective": "loss_nope", "seed": 0, "tokens_per_step": 1e6,
                            "scales": [{"model_params": 2e7, "steps": [1000.0, 2000]}],
                            "runner": {"kind": "command", "argv": ["t", "{out_dir}"], "cwd": "/tmp", "env": {"A": "1"},
                                       "partition": "gpu", "slurm_comment": "c",
                                       "domain_sizes": {"web": 1, "code": 2}}})
    # loss_nope: the evaluation domains are learnt from the first results, so it cannot be judged yet
    assert cfg.objective == "loss_nope" and cfg.tokens_per_step == 1_000_000 and cfg.scales[0].steps == (1000, 2000)
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="names no evaluation domain"):
        config_from_dict({**BASE, "eval_domains": ["web"], "objective": "loss_nope"})


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "examples").glob("*.toml") if not p.name.endswith("-patch.toml"))
                         + [REPO / "tests/data/study_small.toml"], ids=lambda p: p.name)
def test_shipped_configs_pass(path: Path) -> None:
    load_config(path)


def test_stored_config_with_an_unchecked_runner_key_stays_readable(tmp_path: Path) -> None:
    """A study saved before [runner] keys were checked still opens (and lists) rather than
    locking the user out of the whole database."""
    import duckdb

    db = tmp_path / "runs.duckdb"
    store = Store(db)
    store.create_study(config_from_dict({**BASE, "runner": {"kind": "builtin"}}))
    old = {**config_from_dict(BASE).to_dict()}
    old["runner"] = {**old["runner"], "timeuot_s": 5}
    con = duckdb.connect(str(db))
    con.execute("UPDATE studies SET config_json = ?", [json.dumps(old)])
    con.close()
    assert store.get_config("s").runner.options == {"timeuot_s": 5}
    assert [s.name for s in store.list_studies()] == ["s"]
    with pytest.raises(ConfigError, match="timeuot_s"):
        config_from_dict(old)


def test_builtin_runner_sets_tokens_per_step() -> None:
    """The built-in trainer takes batch_size x context tokens a step: a builtin study without
    tokens_per_step gets that one, so proposals are priced in the unit of its results; a study
    that gives its own keeps it, and one without a [runner] (an import) gets none."""
    base = {**BASE, "scales": [{"model_params": 100_000, "steps": [100]}]}
    cfg = config_from_dict({**base, "runner": {"kind": "builtin", "batch_size": 8, "context": 64}})
    assert cfg.tokens_per_step == 512
    assert cfg.cost(100_000, steps=100) == pytest.approx(6 * 100_000 * 512 * 100)
    assert config_from_dict({**base, "runner": {"kind": "builtin"}}).tokens_per_step == 16 * 128
    assert config_from_dict({**base, "tokens_per_step": 1000, "runner": {"kind": "builtin"}}).tokens_per_step == 1000
    assert config_from_dict(base).tokens_per_step is None  # no [runner]: an imported study, say
    cmd = config_from_dict({**base, "runner": {"kind": "command", "argv": ["x", "{out_dir}"]}})
    assert cmd.tokens_per_step is None
