"""What a newcomer reads in the terminal (issue 13): observed results beside predictions, cost
units, output that fits 80 columns, rejections that are remembered, the table runner's distance
limit and exports that never pass placeholder paths off as real ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.config import config_from_dict
from engine.records import Proposal, TrialState
from engine.store import Store

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def sh(*args: object, cwd: Path | None = None, columns: int = 80) -> subprocess.CompletedProcess:
    """`mixplan ...` as a user runs it: its own process, a terminal COLUMNS wide."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def fits(text: str, width: int = 80) -> None:
    long = [ln for ln in text.splitlines() if len(ln) > width]
    assert not long, "lines wider than the terminal:\n" + "\n".join(long)


@pytest.fixture
def imported(tmp_db: Path, data_dir: Path) -> Path:
    r = cli("import", data_dir / "runs_checkpoints.csv", "--study", "imp", "--db", tmp_db)
    assert r.exit_code == 0, r.output
    return tmp_db


@pytest.fixture
def demo_db(tmp_path: Path) -> Path:
    """A copy of the bundled database (64 real built-in-trainer runs), costed in FLOPs."""
    path = tmp_path / "runs.duckdb"
    shutil.copy(REPO / "runs.duckdb", path)
    return path


# ---- 2: observed results -----------------------------------------------------------------------
def test_trials_show_the_observed_objective_and_who_proposed(imported: Path) -> None:
    r = cli("trials", "--study", "imp", "--json", "--db", imported)
    rows = {row["run_id"]: row for row in json.loads(r.output)}
    # run a's last checkpoint (400 steps): mean of losses 2.6, 2.4, 2.85
    assert rows["a"]["observed"] == pytest.approx((2.6 + 2.4 + 2.85) / 3)
    assert rows["a"]["observed_steps"] == 400 and rows["a"]["pred_mean"] is None
    assert {row["strategy"] for row in rows.values()} == {"imported"}
    r = cli("trials", "--study", "imp", "--db", imported)
    assert r.exit_code == 0, r.output
    assert "imported" in r.output and "nan" not in r.output and "2.617" in r.output


def test_a_run_that_stopped_short_says_where(tmp_db: Path) -> None:
    from engine.records import Checkpoint, RunResult

    store = Store(tmp_db)
    store.create_study(config_from_dict({"name": "s", "domains": ["a", "b"], "objective": "loss_a",
                                         "scales": [{"model_params": 1000, "steps": [300]}]}))
    (t,) = store.add_trials("s", [Proposal({"a": 0.5, "b": 0.5}, 1000, steps=300, strategy="random",
                                           pred_mean=2.5, pred_std=0.1)], state=TrialState.APPROVED)
    store.transition([t.trial_id], TrialState.QUEUED)
    store.start_trial(t.trial_id)
    store.complete_trial(t.trial_id, RunResult([Checkpoint(100, None, {"a": 3.0, "b": 3.1}),
                                                Checkpoint(200, None, {"a": 2.7, "b": 2.9})]))
    row = store.trials_frame("s").iloc[0]
    assert (row["observed"], row["observed_steps"], row["pred_mean"]) == (2.7, 200, 2.5)
    r = cli("trials", "--study", "s", "--db", tmp_db)
    assert "2.7 @200" in r.output and "2.5±0.1" in r.output


# ---- 3: cost units -------------------------------------------------------------------------
def test_costs_name_their_unit(demo_db: Path, imported: Path, tmp_path: Path) -> None:
    from engine.costs import cost_unit, format_cost

    assert format_cost(1.38854e14, "FLOPs") == "1.39e14 FLOPs" and format_cost(0.25, "cost units") == "0.25 cost units"
    r = cli("study", "show", "demo", "--db", demo_db)
    assert "spent: 1.39e14 FLOPs" in r.output
    assert json.loads(cli("study", "show", "demo", "--json", "--db", demo_db).output)["cost_unit"] == "FLOPs"
    # a budget below the cheapest run: the unit, and what a useful budget would be
    r = cli("autopilot", "--study", "demo", "--strategy", "random", "--budget", "20", "--db", demo_db)
    assert r.exit_code == 0, r.output
    assert "spent 0 of 20 FLOPs" in r.output
    assert "cheapest run on offer costs 3.07e11 FLOPs" in r.output and "--budget 6.14e12" in r.output
    # a table with its own cost column is in its own unit; cost_per_step scales too; a config may name it
    assert cost_unit(Store(imported).get_config("imp")) == "cost units"
    base = {"name": "c", "domains": ["a", "b"], "scales": [{"model_params": 1000, "steps": [10], "cost_per_step": 0.5}]}
    assert cost_unit(config_from_dict(base)) == "cost units"
    assert cost_unit(config_from_dict({**base, "cost_unit": "GPU-hours"})) == "GPU-hours"
    r = cli("trials", "--study", "imp", "--db", imported)
    assert "cost in cost units" in r.output


# ---- 4: 80 columns ---------------------------------------------------------------------------
def test_propose_trials_and_trajectory_fit_80_columns(demo_db: Path) -> None:
    p = sh("propose", "--study", "demo", "--strategy", "random", "-n", "2", "--db", demo_db)
    assert p.returncode == 0, p.stderr
    fits(p.stdout)
    lines = p.stdout.splitlines()
    why = [i for i, ln in enumerate(lines) if ln.startswith("    why: ")]
    assert len(why) == 2
    # the reason reads as sentences (a table column wrapped it one word per line)
    assert len(lines[why[0]].split()) >= 6
    t = Store(demo_db).get_config("demo").target  # random proposes at the target: 6 N D FLOPs
    assert f"cost {6 * t.model_params * t.steps * 2048:.3g} FLOPs".replace("e+", "e") in p.stdout
    assert "mixture: code=" in p.stdout
    p = sh("trials", "--study", "demo", "--db", demo_db)
    fits(p.stdout)
    assert "code .50 docs .10" in p.stdout  # the top domains, named
    store = Store(demo_db)
    last = store.trials("demo", [TrialState.DONE])[-1].trial_id
    store.log_event("demo", "incumbent", actor="autopilot", trial_id=last, detail={
        "strategy": "mfms-bo", "weights": {"code": 0.6, "docs": 0.3, "books": 0.1, "encyclopedia": 0.0,
                                           "quotes": 0.0, "latex": 0.0},
        "pred_mean": 2.45, "pred_std": 0.03, "source": "model"})
    p = sh("trajectory", "--study", "demo", "--db", demo_db)
    assert p.returncode == 0, p.stderr
    fits(p.stdout)
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.split() and ln.split()[0].isdigit()]
    assert rows[-1][-1] == "model" and "code .60 docs .30" in " ".join(rows[-1]) and "2.45±0.03" in rows[-1]
    assert {r[-1] for r in rows[:-1]} <= {"observed", "observed*"} and "observed*" in {r[-1] for r in rows}
    assert "no run had reached the target yet" in p.stdout


# ---- 5: rejections are remembered -----------------------------------------------------------
def test_reject_keeps_the_proposers_reason(imported: Path, tmp_path: Path) -> None:
    patch = tmp_path / "p.toml"
    patch.write_text("[[scales]]\nmodel_params = 1000000\nsteps = [400]\n", encoding="utf-8")
    assert cli("study", "edit", "--study", "imp", "--config", patch, "--db", imported).exit_code == 0
    (t,) = json.loads(cli("propose", "--study", "imp", "--strategy", "random", "--json", "--db", imported).output)
    r = cli("reject", "--study", "imp", str(t["trial_id"]), "--reason", "too much web", "--db", imported)
    assert r.exit_code == 0, r.output
    row = [x for x in json.loads(cli("trials", "--study", "imp", "--json", "--db", imported).output)
           if x["trial_id"] == t["trial_id"]][0]
    assert row["reason"] == t["reason"] and row["reason"].startswith("random mixture")
    assert (row["rejection_reason"], row["rejected_by"]) == ("too much web", "cli")
    assert f"rejected #{t['trial_id']} by cli: too much web" in cli("trials", "--study", "imp", "--db", imported).output
    assert "too much web" in cli("study", "show", "imp", "--db", imported).output


def test_random_search_draws_away_from_rejected_mixtures(tmp_db: Path) -> None:
    """Two domains: rejected mixtures at code = 0.1, 0.3, 0.5 leave only code >= 0.6 clear (L1
    radius 0.2). Without the rejections' memory, 3 uniform draws all land there with p = 0.064."""
    from engine.strategies import propose

    store = Store(tmp_db)
    store.create_study(config_from_dict({"name": "r", "domains": ["code", "web"],
                                         "scales": [{"model_params": 1000, "steps": [10]}]}))
    for seed in range(3):
        ids = [t.trial_id for t in store.add_trials("r", [Proposal({"code": c, "web": 1 - c}, 1000, steps=10)
                                                             for c in (0.1, 0.3, 0.5)])]
        store.reject("r", ids, actor="cli", reason="not these")
        new = propose(store, "r", "random", 3, seed)
        assert all(t.weights["code"] >= 0.6 for t in new), [t.weights for t in new]
        store.reject("r", [t.trial_id for t in new], actor="autopilot", reason="would exceed the autopilot budget")
    # autopilot's own budget rejections are not a person's "not this"
    from engine.strategies.base import StudyState, with_rejections

    st = with_rejections(StudyState.from_store(store, "r"))
    assert len(st.pending) == 9


@pytest.mark.slow
def test_mfms_bo_does_not_propose_a_rejected_mixture_again(demo_db: Path) -> None:
    """On the bundled study's real runs mfms-bo, asked again in the same state, proposes within
    L1 0.1 of the mixture it proposed before; after a person rejected that mixture it moves away."""
    from dataclasses import replace

    from engine.strategies import StudyState, get_strategy, propose

    store = Store(demo_db)
    (a,) = propose(store, "demo", "mfms-bo", 1, 0, actor="cli")
    store.reject("demo", [a.trial_id], actor="cli", reason="no")
    state = StudyState.from_store(store, "demo")
    (again,) = get_strategy("mfms-bo", seed=0).ask(replace(state, pending=()), 1)  # as if not rejected
    (b,) = propose(store, "demo", "mfms-bo", 1, 0, actor="cli")

    def l1(x, y):
        return float(np.abs(np.array(list(x.weights.values())) - np.array(list(y.weights.values()))).sum())

    assert l1(a, again) < 0.15
    assert l1(a, b) > 0.25


# ---- 6: the table runner's distance limit ---------------------------------------------------
def test_table_runner_refuses_far_mixtures_and_says_how_to_allow_them(tmp_path: Path, data_dir: Path) -> None:
    from engine.records import Trial
    from engine.runners import RunFailed, make_runner

    cfg = config_from_dict({"name": "tab", "domains": ["web", "code", "books"],
                            "scales": [{"model_params": 1_000_000, "steps": [400]}],
                            "runner": {"kind": "table", "path": str(data_dir / "runs_checkpoints.csv")}})
    r = make_runner(cfg)

    def trial(w):
        return Trial(1, "tab", "t1", TrialState.RUNNING, w, 1_000_000, 400, None, "strategy", "random", None, None,
                     None, None, None, 0)

    near = r.run(trial({"web": 0.45, "code": 0.35, "books": 0.2}), tmp_path)  # run a at L1 0.1
    assert near.info["table_run"] == "a" and near.info["distance"] == pytest.approx(0.1)
    with pytest.raises(RunFailed) as exc:
        r.run(trial({"web": 0.02, "code": 0.04, "books": 0.94}), tmp_path)
    msg = exc.value.reason
    assert "L1 distance 1.48" in msg and "max_distance = 0.2" in msg
    assert "mixplan study edit --study tab" in msg and "[runner] max_distance = 1.53" in msg
    wide = make_runner(config_from_dict({**cfg.to_dict(), "runner": {**cfg.to_dict()["runner"], "max_distance": 1.6}}))
    assert wide.run(trial({"web": 0.02, "code": 0.04, "books": 0.94}), tmp_path).info["distance"] == pytest.approx(1.48)


# ---- 7: exports without paths say so ---------------------------------------------------------
def test_exports_without_prefix_carry_marked_placeholders(demo_db: Path, tmp_path: Path) -> None:
    import ast

    import yaml

    from engine.export import from_run, parse_megatron, render

    run_id = Store(demo_db).trials("demo")[0].run_id
    ex = from_run(Store(demo_db), "demo", run_id=run_id)
    text = render(ex, "megatron")
    assert "# data paths to fill" in text and "--prefix" in text
    assert all(p.startswith("<path-to-") for p in parse_megatron(text))
    doc = yaml.safe_load(render(ex, "olmo"))
    paths = [p for c in doc["dataset"]["source_mixture_config"]["source_configs"] for p in c["paths"]]
    assert paths == [f"<path-to-{d}>" for d in ex.weights]
    hf = render(ex, "hf")
    assert "fill DATA_FILES first" in hf and ast.parse(hf)
    given = render(ex, "megatron", prefix_template="/data/{domain}_text_document")
    assert "to fill" not in given and all(p.startswith("/data/") for p in parse_megatron(given))
    assert "<path-to" not in render(ex, "json") and "to fill" not in render(ex, "json")
    r = cli("export", "--study", "demo", "--run", run_id, "--format", "olmo", "--out", tmp_path / "mix.yaml",
            "--db", demo_db)
    assert r.exit_code == 0 and "<path-to-code>" in (tmp_path / "mix.yaml").read_text()
