"""The Study ask/tell loop: same study and seed, same answer in any process; one cost rule (an
unpriced study is refused); every strategy's regret falls on a surface with a known optimum."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from engine.autopilot import autopilot
from engine.config import StudyConfig, Target, config_from_dict
from engine.errors import ConfigError
from engine.records import Proposal, TrialState
from engine.store import Store
from engine.store.memory import MemoryStore
from engine.strategies import get_strategy
from engine.study import Study
from tests.test_strategies_helpers import DOMAINS, W_STAR, SynthRunner, seed_runs, study_config, surface

ALL = ["mfms-bo", "random", "hyperband", "mf-bo", "bo", "autoscale", "mf-kg"]


def _copy_db(src: Store, dst) -> Store:
    shutil.copy(src.path, dst)
    wal = src.path.with_name(src.path.name + ".wal")
    if wal.exists():
        shutil.copy(wal, dst.with_name(dst.name + ".wal"))
    return Store(dst)


@pytest.mark.slow
def test_cli_propose_equals_autopilots_next_proposal(tmp_path):
    """A long-running autopilot (one strategy object through several asks) and a fresh
    `mixplan propose` with the same seed propose the same next run on the same database: the
    answer depends on the study's state (runs, trials, the GP state saved after each fit), not on
    the object's history."""
    from typer.testing import CliRunner

    from engine.cli import app

    store = Store(tmp_path / "a.duckdb")
    store.create_study(study_config("s"))
    seed_runs(store, "s", n=6, seed=2)
    strat = get_strategy("mfms-bo", seed=3)
    autopilot(store, "s", strat, budget=1e9, max_trials=2, runner=SynthRunner(), seed=3)
    assert "mfms-bo:gp" in store.strategy_states("s")
    other = _copy_db(store, tmp_path / "b.duckdb")
    # the CLI: a fresh process's strategy object
    r = CliRunner().invoke(app, ["propose", "--db", str(store.path), "--study", "s", "--strategy", "mfms-bo",
                                 "--seed", "3", "-n", "1", "--json"])
    assert r.exit_code == 0, r.output
    cli = json.loads(r.output)[0]
    # autopilot goes on with its own object on the copy
    autopilot(other, "s", strat, budget=1e9, max_trials=1, runner=SynthRunner(), seed=3)
    nxt = [t for t in other.trials("s") if t.strategy == "mfms-bo"][-1]
    assert (cli["model_params"], cli["steps"]) == (nxt.model_params, nxt.steps)
    assert [cli["weights"][d] for d in DOMAINS] == pytest.approx([nxt.weights[d] for d in DOMAINS], abs=1e-12)
    assert cli["pred_mean"] == pytest.approx(nxt.pred_mean, rel=1e-12)


def test_the_same_state_gives_the_same_proposal():
    """No per-object counter: asking twice on one state gives the same draws; a new trial in the
    state gives new ones."""
    store = MemoryStore()
    store.create_study(study_config("s"))
    study = Study(store, "s")
    strat = get_strategy("random", seed=4)
    state = study.state()
    a, b = strat.ask(state, 2), strat.ask(state, 2)
    assert [p.weights for p in a] == [p.weights for p in b]
    study.ask(strat, 1)
    assert [p.weights for p in strat.ask(study.state(), 2)] != [p.weights for p in a]


def test_memory_store_runs_the_study_loop_like_the_database(tmp_path):
    """Study over a MemoryStore and over a DuckDB Store: the same trials, run table and states."""
    out = {}
    for kind, store in (("memory", MemoryStore()), ("duckdb", Store(tmp_path / "runs.duckdb"))):
        store.create_study(study_config("s"))
        study = Study(store, "s")
        trials = study.ask("random", 2, seed=1)
        study.approve([trials[0].trial_id])
        study.reject([trials[1].trial_id], reason="not now")
        assert study.run(study.trials([TrialState.APPROVED])[0], SynthRunner(), tmp_path) == TrialState.DONE
        study.store.save_strategy_state("s", "k", {"x": [1.5, 2.25]})
        out[kind] = (study.runs(), [(t.run_id, t.state, t.cost) for t in study.trials()], study.state())
    m, d = out["memory"], out["duckdb"]
    cols = ["run_id", "model_params", "steps", "w_web", "w_code", "w_books", "loss_web", "loss_code", "cost"]
    pd.testing.assert_frame_equal(m[0][cols], d[0][cols], check_dtype=False)
    assert m[1] == d[1] and m[1][1][1] == TrialState.REJECTED
    assert m[2].strategy_states == d[2].strategy_states == {"k": {"x": [1.5, 2.25]}}


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "t00001"])
def test_both_stores_refuse_the_same_proposals(tmp_path, run_id):
    """A run id that is not a folder name, or one already used, is refused by the in-memory store
    as by the database (one check), and neither store keeps any of the batch."""
    from engine.errors import ValidationError

    for store in (MemoryStore(), Store(tmp_path / f"r{len(run_id)}.duckdb")):
        store.create_study(study_config("s"))
        ok = Proposal(weights={"web": 0.5, "code": 0.3, "books": 0.2}, model_params=1_000_000, steps=100,
                      strategy="manual", run_id="t00001")
        store.add_trials("s", [ok])
        bad = Proposal(weights={"web": 0.5, "code": 0.3, "books": 0.2}, model_params=1_000_000, steps=100,
                       strategy="manual", run_id=run_id)
        good = Proposal(weights={"web": 0.2, "code": 0.3, "books": 0.5}, model_params=1_000_000, steps=100,
                        strategy="manual")
        with pytest.raises(ValidationError, match="proposal 2: run_id"):
            store.add_trials("s", [good, bad])
        assert [t.run_id for t in store.trials("s")] == ["t00001"]


def test_an_unpriced_study_is_refused_with_the_fix(tmp_path):
    """Neither cost_per_step nor tokens_per_step: runs cannot be priced, so the study is refused
    at creation (a ConfigError: the CLI prints the fix and exits 2); a stored config like that (made before this
    check) makes the strategies say so instead of pricing runs 6 x N x steps and the target NaN."""
    from typer.testing import CliRunner

    from engine.cli import app

    raw = {"name": "u", "domains": DOMAINS, "objective": "loss_web",
           "scales": [{"model_params": 1_000_000, "steps": [100, 300]},
                      {"model_params": 10_000_000, "steps": [300], "cost_per_step": 0.01}]}
    with pytest.raises(ConfigError, match=r"scales\[0\].cost_per_step.*cannot be priced") as err:
        config_from_dict(raw)
    assert "tokens_per_step" in str(err.value)
    assert config_from_dict({**raw, "tokens_per_step": 1000}).cost(1_000_000, steps=100) == 6e6 * 1000 * 100
    toml = tmp_path / "u.toml"
    toml.write_text('name = "u"\ndomains = ["web", "code", "books"]\n[[scales]]\nmodel_params = 1000000\n'
                    'steps = [100, 300]\n')
    r = CliRunner().invoke(app, ["study", "create", "--config", str(toml), "--db", str(tmp_path / "x.duckdb")])
    # a ConfigError: the entry point prints it and exits 2 (tests/test_cli_study.py)
    assert isinstance(r.exception, ConfigError) and "cost_per_step" in str(r.exception)
    assert not (tmp_path / "x.duckdb").exists() or "u" not in Store(tmp_path / "x.duckdb").study_names()
    # a legacy stored config (validation bypassed): the strategies refuse, naming the fix
    unpriced = config_from_dict({**raw, "tokens_per_step": 1,
                                 "scales": [{"model_params": 1_000_000, "steps": [100, 300]},
                                            {"model_params": 10_000_000, "steps": [300]}]}).scales
    legacy = StudyConfig(name="u", domains=tuple(DOMAINS), objective="loss_web", target=Target(10_000_000, 300),
                         scales=unpriced)
    store = MemoryStore()
    store.create_study(legacy)
    for name in ("random", "mfms-bo", "hyperband"):
        with pytest.raises(ConfigError, match="cannot price a run") as e:
            Study(store, "u").ask(name, 1)
        assert "cost_per_step" in str(e.value.fix)


def _optimum_at_target() -> tuple[np.ndarray, float]:
    """The synthetic surface's optimum at the target (10M, 900 steps): the bowl's centre there."""
    w = W_STAR + np.array([0.05, -0.05, 0.0]) * np.log10(10.0)
    return w, surface(w, 10_000_000, 900)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_each_strategys_regret_falls_on_the_synthetic_surface(tmp_path, name):
    """On a surface whose optimum at the target is known (tests/test_strategies_helpers.surface),
    every strategy's incumbent ends closer to it than where the same initial design left it."""
    w_opt, best = _optimum_at_target()
    assert np.isclose(w_opt.sum(), 1) and (w_opt > 0).all()
    store = MemoryStore()
    store.create_study(study_config("s"))
    rng = np.random.default_rng(0)
    init = Study(store, "s").add([Proposal(dict(zip(DOMAINS, w)), mp, steps=st, strategy="manual")
                                  for w, (mp, st) in zip(rng.dirichlet(np.ones(3), 6),
                                                         [(1_000_000, 300), (1_000_000, 900), (10_000_000, 300)] * 2)],
                                 state=TrialState.APPROVED)
    for t in init:
        Study(store, "s").run(t, SynthRunner(), tmp_path)
    rounds = []
    autopilot(store, "s", name, budget=120.0, max_trials=16, runner=SynthRunner(), seed=0, on_round=rounds.append)
    regrets = [r.true - best for r in rounds if r.true is not None]
    assert len(regrets) >= 3 and min(regrets) >= -1e-9
    assert regrets[-1] < regrets[0], (name, regrets)
