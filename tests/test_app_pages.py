"""AppTest (streamlit.testing) of every page of the app on a small synthetic database.

Notes (FACTS.md, Streamlit 1.67): AppTest paths resolve relative to this file; data_editor's
set_value raises, so edits are seeded through session_state; plotly charts are opaque here (the
browser test checks them); run_every does not tick.
"""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from engine.simulators.synthetic import create_study  # noqa: E402
from engine.store import Store  # noqa: E402

MAIN = "../app/main.py"
PAGES = ["views/study.py", "views/landscape.py", "views/scaling.py", "views/trajectory.py", "views/proposals.py",
         "views/export.py"]
FAST_MODEL = "mixing-law"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("app") / "app.duckdb"
    store = Store(path)
    create_study(store, "demo", n_runs=30, proposals=3)
    create_study(store, "five", n_runs=30, domains=("web", "code", "books", "wiki", "arxiv"), proposals=0)
    create_study(store, "metric", n_runs=30, proposals=0, metrics=True)
    create_study(store, "two", n_runs=24, domains=("web", "code"), proposals=0)
    create_study(store, "tokens", n_runs=24, proposals=0, length="tokens")
    return path


@pytest.fixture
def env_db(db, monkeypatch):
    monkeypatch.setenv("MIXPLAN_DB", str(db))
    monkeypatch.setenv("MIXPLAN_APP_FIT_WAIT", "600")  # AppTest cannot tick run_every: fit synchronously
    return db


def page(name: str | None = None, study: str | None = None, **state) -> AppTest:
    """A new page view, as a person opening it later than FRESH_S after the test's own writes.

    Streamlit's caches live in the process, not the session: the app trusts a study's
    data_version and the study list for FRESH_S (1 s), so a test that writes through the Store
    and renders within that second would otherwise see the state from before its write."""
    from app import common

    common._version.clear()
    common._study_names.clear()
    at = AppTest.from_file(MAIN, default_timeout=180)
    if study:
        at.session_state["study"] = study
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if name and name != PAGES[0]:
        at.switch_page(name)
        at.run()
    return at


def edit_table(at: AppTest, edited_rows: dict) -> AppTest:
    """Tick / edit rows of the Proposals table as the grid would (its key names its rows, so it
    is read from the page's last run), then rerun."""
    at.session_state[at.session_state["_prop_editor_key"]] = {"edited_rows": edited_rows, "added_rows": [],
                                                               "deleted_rows": []}
    return at.run()


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def model_state(**extra):
    """Session state that makes model pages use a quick model (the GP is exercised by its own tests)."""
    return {"land_model": FAST_MODEL, "export_model": FAST_MODEL, "scaling_models": [FAST_MODEL], **extra}


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders(env_db, name):
    at = page(name, **model_state())
    ok(at)
    assert at.title[0].value == name.split("/")[1][:-3].capitalize()
    assert at.sidebar.selectbox[0].value == "demo"


def test_study_page_shows_runs_and_filters(env_db):
    at = page()
    ok(at)
    labels = [m.label for m in at.metric]
    assert "Finished runs" in labels and "Budget spent" in labels
    assert at.metric[0].value == "30"
    caption = [c.value for c in at.caption if "runs with results match" in c.value][0]
    assert caption.startswith("30 of 30")
    at.multiselect(key="study_sizes").set_value([20_000_000]).run()
    ok(at)
    caption = [c.value for c in at.caption if "runs with results match" in c.value][0]
    n = int(caption.split()[0])
    assert 0 < n < 30
    at.text_input(key="study_text").set_value("r0000").run()
    caption = [c.value for c in at.caption if "runs with results match" in c.value][0]
    assert caption.startswith("1 of 30")


def test_study_switch_in_sidebar(env_db):
    at = page()
    at.sidebar.selectbox[0].select("five").run()
    ok(at)
    assert any("web, code, books, wiki, arxiv" in m.value for m in at.markdown)


def test_create_study_from_config(env_db, tmp_path):
    at = page()
    at.text_area(key="create_cfg_text").set_value('name = "fresh"\ndomains = ["a", "b"]\n').run()
    at.button(key="create_cfg_button").click().run()
    ok(at)
    assert "fresh" in Store(env_db).study_names()
    assert at.sidebar.selectbox[0].value == "fresh"
    assert any("Created study fresh" in s.value for s in at.success)


def test_create_study_bad_config_is_a_message(env_db):
    at = page()
    at.text_area(key="create_cfg_text").set_value('name = "bad"\ndomains = ["only-one"]\n').run()
    at.button(key="create_cfg_button").click().run()
    assert not at.exception
    assert at.error and "key 'domains'" in at.error[0].value
    assert "bad" not in Store(env_db).study_names()


def test_approve_button_changes_the_store(env_db):
    store = Store(env_db)
    proposed = [t.trial_id for t in store.trials("demo", ["proposed"])]
    assert proposed
    at = page("views/proposals.py")
    ok(at)
    tid = proposed[0]
    at.button(key=f"approve_{tid}").click().run()
    ok(at)
    assert store.get_trial(tid).state.value == "proposed"  # it asks first
    at.button(key="confirm_approve").click().run()
    ok(at)
    assert store.get_trial(tid).state.value == "approved"
    assert any(f"Approved trial(s) {tid}" in s.value for s in at.success)


def test_reject_selected_through_the_table(env_db):
    store = Store(env_db)
    proposed = [t.trial_id for t in store.trials("demo", ["proposed"])]
    pend = [t.trial_id for t in store.trials("demo", ["proposed", "approved"])]
    row = pend.index(proposed[-1])
    at = page("views/proposals.py")
    edit_table(at, {row: {"select": True}})
    ok(at)
    at.button(key="reject_selected").click().run()
    ok(at)
    assert store.get_trial(proposed[-1]).state.value == "rejected"


def test_edit_revalidates_weights(env_db):
    store = Store(env_db)
    trial = store.add_trials("demo", [__import__("engine.records", fromlist=["Proposal"]).Proposal(
        weights={"web": 0.2, "code": 0.3, "books": 0.5}, model_params=20_000_000, steps=1000)])[0]
    tid = trial.trial_id
    at = page("views/proposals.py")
    at.toggle(key=f"edit_{tid}").set_value(True).run()
    at.number_input(key=f"edit_w_{tid}_web").set_value(0.9).run()
    at.button(key=f"save_{tid}").click().run()
    assert not at.exception
    assert at.error and "sum to" in at.error[0].value
    assert store.get_trial(tid).weights["web"] == pytest.approx(0.2)
    at.number_input(key=f"edit_w_{tid}_web").set_value(0.4).run()
    at.number_input(key=f"edit_w_{tid}_books").set_value(0.3).run()
    at.button(key=f"save_{tid}").click().run()
    ok(at)
    assert store.get_trial(tid).weights == pytest.approx({"web": 0.4, "code": 0.3, "books": 0.3})


def test_table_edit_saves_weights(env_db):
    store = Store(env_db)
    from engine.records import Proposal

    tid = store.add_trials("demo", [Proposal(weights={"web": 0.5, "code": 0.25, "books": 0.25},
                                             model_params=20_000_000, steps=1000)])[0].trial_id
    pend = [t.trial_id for t in store.trials("demo", ["proposed", "approved"])]
    row = pend.index(tid)
    at = page("views/proposals.py")
    edit_table(at, {row: {"w_web": 0.25, "w_books": 0.5}})
    at.button(key="save_edits").click().run()
    ok(at)
    assert store.get_trial(tid).weights == pytest.approx({"web": 0.25, "code": 0.25, "books": 0.5})


def test_add_run_by_hand(env_db):
    store = Store(env_db)
    before = len(store.trials("demo"))
    at = page("views/proposals.py")
    at.button(key="manual_add").click().run()
    ok(at)
    assert len(store.trials("demo")) == before + 1


def test_landscape_more_domains_uses_a_slice(env_db):
    at = page("views/landscape.py", study="five", **model_state())
    ok(at)
    assert at.selectbox(key="land_x").value == "web"
    at.selectbox(key="land_x").select("books").run()
    ok(at)
    assert any(m.label == "Predicted optimum" for m in at.metric)


def test_export_page_run_mixture(env_db):
    at = page("views/export.py", export_source="run")
    ok(at)
    codes = [c.value for c in at.code]
    assert len(codes) == 5
    import json

    doc = json.loads(codes[0])
    assert abs(sum(doc["weights"].values()) - 1) < 1e-9
    assert doc["provenance"]["study"] == "demo" and doc["provenance"]["source"] == "run"
    assert "--data-path" in codes[2]


def test_export_page_recommendation(env_db):
    at = page("views/export.py", **model_state(export_source="recommendation"))
    ok(at)
    import json

    doc = json.loads(at.code[0].value)
    assert doc["provenance"]["source"] == "optimum" and doc["provenance"]["model"] == FAST_MODEL
    assert doc["provenance"]["runs"] == 30 and "pred_mean" in doc["provenance"]


def test_errors_are_messages_not_tracebacks(tmp_path, monkeypatch):
    bad = tmp_path / "not-a-db.duckdb"
    bad.write_text("this is not a database")
    monkeypatch.setenv("MIXPLAN_DB", str(bad))
    monkeypatch.setenv("MIXPLAN_APP_FIT_WAIT", "600")
    for name in PAGES:
        at = page(name)
        assert not at.exception, (name, [e.value for e in at.exception])
        assert at.error, name


def test_empty_database_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXPLAN_DB", str(tmp_path / "new.duckdb"))
    at = page()
    ok(at)
    assert any("no study yet" in i.value for i in at.info)
    at = page("views/landscape.py")
    ok(at)
    assert any("no study yet" in i.value for i in at.info)


def test_slow_fit_draws_the_page_and_finishes_in_the_background(env_db, monkeypatch):
    monkeypatch.setenv("MIXPLAN_APP_FIT_WAIT", "0.01")
    at = page("views/landscape.py", study="five", land_model="mfms-gp", land_res=20)
    ok(at)
    waiting = [i.value for i in at.info if "running for" in i.value]
    assert waiting and "fills in by itself" in waiting[0]
    assert not any(m.label == "Predicted optimum" for m in at.metric)
    monkeypatch.setenv("MIXPLAN_APP_FIT_WAIT", "600")  # the same job, now waited for
    at.run()
    ok(at)
    assert any(m.label == "Predicted optimum" for m in at.metric)


def test_import_run_table_upload(env_db):
    from engine.simulators.synthetic import runs_table

    csv = runs_table(5, ("web", "code", "books"), checkpoints=3).to_csv(index=False).encode()
    at = page()
    at.file_uploader(key="create_table_file").set_value(("runs.csv", csv, "text/csv"))
    at.text_input(key="create_table_name").set_value("uploaded")
    at.button(key="create_table_button").click().run()
    ok(at)
    assert "uploaded" in Store(env_db).study_names()
    assert Store(env_db).list_studies()[-1].runs == 5
    assert any("Imported 5 runs" in s.value for s in at.success)


def test_import_bad_run_table_is_a_message(env_db):
    at = page()
    at.file_uploader(key="create_table_file").set_value(("bad.csv", b"run_id,w_a,w_b\nr1,0.5,0.5\n", "text/csv"))
    at.text_input(key="create_table_name").set_value("broken")
    at.button(key="create_table_button").click().run()
    assert not at.exception
    assert at.error and "model_params" in at.error[0].value
    assert "broken" not in Store(env_db).study_names()


RUNNER = """
import json, sys, pathlib
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
w = json.loads(pathlib.Path(args["--weights"]).read_text())
if w["a"] > 0.9:
    print("diverged: loss is nan at step 3", flush=True)
    sys.exit(3)
steps = int(args["--steps"])
out = pathlib.Path(args["--out"])
out.mkdir(parents=True, exist_ok=True)
ck = [{"steps": s, "tokens": s * 1000, "losses": {"a": 3 - w["a"] - s / 1000, "b": 3 - w["b"] - s / 1000}}
      for s in (steps // 2, steps)]
(out / "result.json").write_text(json.dumps({"checkpoints": ck, "cost": 1.0}))
"""


def test_dispatch_runs_approved_trials_and_shows_failures(env_db, tmp_path, monkeypatch):
    """With the server's opt-in (`mixplan app --allow-commands`), Run approved first shows each
    trial's argv; confirming starts the dispatcher; a failure shows its log tail."""
    import json
    import sys

    from engine.config import parse_config
    from engine.records import Proposal, TrialState

    script = tmp_path / "train.py"
    script.write_text(RUNNER)
    store = Store(env_db)
    argv = ", ".join(f'"{a}"' for a in [sys.executable, str(script), "--weights", "{weights_json}", "--steps",
                                       "{steps}", "--out", "{out_dir}"])
    store.create_study(parse_config(f'''name = "cmd"
domains = ["a", "b"]
tokens_per_step = 1000
[[scales]]
model_params = 1000000
steps = [100]
[runner]
kind = "command"
argv = [{argv}]
timeout_s = 60
'''))
    ok_t, bad_t = store.add_trials("cmd", [Proposal({"a": 0.5, "b": 0.5}, 1_000_000, steps=100),
                                           Proposal({"a": 0.95, "b": 0.05}, 1_000_000, steps=100)],
                                   state=TrialState.APPROVED)
    monkeypatch.setenv("MIXPLAN_ALLOW_COMMANDS", "1")
    at = page("views/proposals.py", study="cmd", disp_workers=1)
    ok(at)
    at.button(key="dispatch_button").click().run()
    ok(at)
    assert not list((env_db.parent / "mixplan-runs" / "cmd").glob("dispatch-*.log"))  # nothing started yet
    argvs = [json.loads(c.value) for c in at.code if c.language == "json"]
    assert [a[:2] for a in argvs] == [[sys.executable, str(script)]] * 2
    runs_dir = str(env_db.parent.resolve() / "mixplan-runs" / "cmd")
    assert argvs[0][-1] == f"{runs_dir}/{ok_t.run_id}/<submission>" and argvs[0][3].endswith("/weights.json")
    assert argvs[1][5] == "100"  # {steps} filled in
    at.button(key="confirm_dispatch").click().run()
    ok(at)
    logs = list((env_db.parent / "mixplan-runs" / "cmd").glob("dispatch-*.log"))
    assert len(logs) == 1  # beside the runs' files, not in a temp dir left behind
    open_fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")]
    assert str(logs[0]) not in open_fds  # the server closed its copy of the log's handle
    deadline = time.time() + 240
    while time.time() < deadline and {store.get_trial(t.trial_id).state.value for t in (ok_t, bad_t)} - {"done", "failed"}:
        time.sleep(1)
    assert store.get_trial(ok_t.trial_id).state.value == "done"
    assert store.get_trial(bad_t.trial_id).state.value == "failed"
    at.run()
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["done"] == "1" and metrics["failed"] == "1"
    failures = [e for e in at.expander if e.label.startswith(f"Trial {bad_t.trial_id}")]
    assert failures
    assert any("diverged" in c.value for c in failures[0].code)


def test_trajectory_compares_benchmark_studies(env_db):
    store = Store(env_db)
    if "demo-b" not in store.study_names():
        create_study(store, "demo-b", n_runs=20, proposals=0, seed=5)
    at = page("views/trajectory.py")
    ok(at)
    assert any(m.value.startswith("**Current incumbent**") for m in at.markdown)
    assert "demo-b" in at.multiselect(key="traj_compare").options
    at.multiselect(key="traj_compare").set_value(["demo-b"]).run()
    ok(at)
    assert any("Speed-up" in m.value for m in at.markdown)
    speed = at.dataframe[0].value
    assert set(speed.columns) >= {"strategy", "cost_to_reach", "speedup"} and len(speed) == 2


def test_propose_with_a_strategy_stores_trials(env_db):
    store = Store(env_db)
    before = {t.trial_id for t in store.trials("demo", ["proposed"])}
    at = page("views/proposals.py", prop_strategy="random", prop_q=2)
    ok(at)
    at.button(key="prop_button").click().run()
    ok(at)
    new = [t for t in store.trials("demo", ["proposed"]) if t.trial_id not in before]
    assert len(new) == 2 and all(t.strategy == "random" for t in new)
    assert any("random proposed 2 trial(s)" in s.value for s in at.success)
    for t in new:  # each one is on the page with its own buttons
        assert at.button(key=f"approve_{t.trial_id}") is not None


def test_config_update_reaches_the_pages(env_db):
    """Store.update_config bumps data_version, so the app's per-version config cache sees it."""
    import dataclasses

    store = Store(env_db)
    at = page()
    ok(at)
    cfg = store.get_config("demo")
    v = store.data_version("demo")
    store.update_config(dataclasses.replace(cfg, description="edited description"))
    assert store.data_version("demo") > v
    at = page()
    ok(at)
    assert any(c.value == "edited description" for c in at.caption)


def test_metric_objective_in_a_loss_study_is_maximised(env_db):
    """Landscape with objective metric_acc in a loss-minimising study: the optimum shown is the
    maximum of the predicted metric (engine.config.objective_direction), not its minimum."""
    from engine.export import fit_study_model

    store = Store(env_db)
    cfg = store.get_config("metric")
    assert cfg.direction == "minimize" and cfg.direction_for("metric_acc") == "maximize"
    fitted = fit_study_model(store, "metric", FAST_MODEL, "metric_acc")
    t = cfg.target
    best = {d: fitted.optimum(t.model_params, steps=t.steps, tokens=cfg.tokens_for(t.steps), direction=d,
                              bounds=cfg.bounds_array()).pred_mean for d in ("maximize", "minimize")}
    assert best["maximize"] > best["minimize"] + 1e-3
    at = page("views/landscape.py", study="metric", **model_state(land_objective="metric_acc", land_res=20))
    ok(at)
    shown = [m.value for m in at.metric if m.label == "Predicted optimum"]
    assert shown == [f"{best['maximize']:.4f}"]
    at = page("views/scaling.py", study="metric", **model_state(scaling_objective="metric_acc"))
    ok(at)
    table = at.dataframe[-1].value
    assert table["pred_mean"].iloc[-1] == pytest.approx(best["maximize"], abs=1e-4)


def test_a_broken_engine_import_is_shown_not_hidden(env_db, monkeypatch):
    """Pages import the engine directly: a real ImportError is shown as an error message (no
    traceback), never as "not available in this build yet"."""
    import sys

    monkeypatch.setitem(sys.modules, "engine.trajectory", None)  # `import engine.trajectory` raises ImportError
    at = page("views/trajectory.py")
    assert not at.exception
    assert at.error and "ModuleNotFoundError" in at.error[0].value and "engine.trajectory" in at.error[0].value
    assert not any("not available" in i.value for i in at.info)


def test_landscape_two_domains_draws_a_line(env_db):
    """A 2-domain study (engine.config allows it): the landscape is a line over the first domain's
    weight, not a crash in simplex_grid."""
    at = page("views/landscape.py", study="two", **model_state(land_res=20))
    ok(at)
    assert any(m.label == "Predicted optimum" for m in at.metric)
    opt = [m.value for m in at.markdown if m.value.startswith("**Optimum mixture**")][0]
    assert "web:" in opt and "code:" in opt
    at.selectbox(key="land_size").select(20_000_000).run()
    ok(at)
    assert any(m.label == "Best observed here" and m.value != "-" for m in at.metric)


def test_tokens_only_study_gets_training_lengths(env_db):
    """Runs with tokens but no steps (DESIGN contract 2; RegMix imports): Landscape offers token
    lengths, Scaling asks at tokens, the trajectory has an incumbent."""
    at = page("views/landscape.py", study="tokens", **model_state(land_res=20))
    ok(at)
    box = at.selectbox(key="land_length")
    assert box.label == "Tokens" and len(box.options) == 20 and box.value.tokens == pytest.approx(5242880000.0)
    assert box.value.steps is None
    assert any(m.label == "Predicted optimum" for m in at.metric)
    assert any(m.label == "Best observed here" and m.value != "-" for m in at.metric)
    at = page("views/scaling.py", study="tokens", **model_state())
    ok(at)
    table = at.dataframe[-1].value
    assert table["tokens"].notna().all() and len(table) >= 2
    at = page("views/trajectory.py", study="tokens")
    ok(at)
    assert any(m.value.startswith("**Current incumbent**") for m in at.markdown)


def test_trajectory_speedup_reference_is_the_random_curve(env_db):
    """Curves are named 'study (strategy)': the default reference is the one whose strategy is
    random, even when it is not the first curve."""
    store = Store(env_db)
    if "demo-b" not in store.study_names():
        create_study(store, "demo-b", n_runs=20, proposals=0, seed=5)
    at = page("views/trajectory.py", study="demo-b", traj_compare=["demo"])
    ok(at)
    ref = at.selectbox(key="traj_reference")
    assert ref.options == ["demo-b", "demo (random)"] and ref.value == "demo (random)"
    speed = at.dataframe[0].value.set_index("strategy")
    assert speed.loc["demo (random)", "speedup"] == pytest.approx(1.0)
    assert any("final incumbent of **demo (random)**" in m.value for m in at.markdown)


def test_trajectory_loads_bench_optimize_results(env_db, tmp_path):
    from test_plots_figures import bench_runs

    bench_runs().to_csv(tmp_path / "optimize_runs.csv", index=False)
    at = page("views/trajectory.py", bench_path=str(tmp_path))
    ok(at)
    summary = at.dataframe[-1].value
    assert list(summary["baseline"]) == ["random"] and summary["speedup_median"].iloc[0] == pytest.approx(1.3333)
    assert any("speed-up" in m.value for m in at.markdown)
    at = page("views/trajectory.py", bench_path=str(tmp_path / "nothing-here"))
    assert not at.exception and at.error and "no benchmark results" in at.error[0].value


def test_trajectory_says_when_no_run_reached_the_target(env_db):
    store = Store(env_db)
    if "short" not in store.study_names():
        create_study(store, "short", n_runs=3, proposals=0, seed=1)  # 20M, 60M, 150M: no 1B run
    at = page("views/trajectory.py", study="short")
    ok(at)
    text = [m.value for m in at.markdown if m.value.startswith("**Current incumbent**")][0]
    assert "(no target run yet)" in text and "not yet measured at the target" in text


@pytest.fixture
def toy_model(monkeypatch):
    """Register test_plots_figures.Toy as loss model "toy" (its optimum moves with scale)."""
    import engine.models as models
    from app import common

    monkeypatch.setitem(models._MODELS, "toy", ("test_plots_figures", "Toy"))
    monkeypatch.setattr(models, "MODELS", models.MODELS + ("toy",))
    common._available_models.clear()  # the app caches the list of models
    yield "toy"
    common._available_models.clear()


def test_scaling_says_where_the_small_scale_optimum_stops_being_optimal(env_db, toy_model):
    at = page("views/scaling.py", scaling_models=[toy_model])
    ok(at)
    assert not at.warning, [w.value for w in at.warning]
    table = at.dataframe[-1].value
    first = table[table["regret"] > table["tolerance"]].iloc[0]["scale"]
    assert first != table["scale"].iloc[0] and table["regret"].iloc[0] == 0
    text = [m.value for m in at.markdown if m.value.startswith("**toy**")]
    assert text and f"stops being optimal from **{first}**" in text[0] and "> tolerance" in text[0]
    assert (table[[c for c in table.columns if c.startswith("w_")]].round(3) == table[
        [c for c in table.columns if c.startswith("w_")]]).all().all()  # weights rounded for the table
    at = page("views/scaling.py", scaling_models=[toy_model], scaling_axis="budgets")
    ok(at)
    assert any("Budgets in tokens at 1B params" in c.value for c in at.caption)
    table = at.dataframe[-1].value
    scales = list(table["scale"])
    assert scales[-3:] == ["1B / 10.5B tok (extrap.)", "1B / 26.2B tok (extrap.)", "1B / 52.4B tok (extrap.)"]
    assert table["extrapolated"].sum() == 3 and len(table) <= 8
    assert any(m.value.startswith("**toy**: the optimum at 1B / 131M tok stops being optimal") for m in at.markdown)


def test_landscape_three_domains_draws_its_metrics(env_db):
    at = page("views/landscape.py", **model_state(land_res=20))
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) >= {"Predicted optimum", "Best observed here", "Fitted on finished runs"}
    assert metrics["Fitted on finished runs"] == "30" and float(metrics["Predicted optimum"]) > 0
    assert float(metrics["Best observed here"]) > 0
    opt = [m.value for m in at.markdown if m.value.startswith("**Optimum mixture**")][0]
    weights = [float(line.split(": ")[1]) for line in opt.split("  \n")[1:]]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1, abs=2e-3)


def test_export_agrees_with_the_cli_and_records_the_fit_version(env_db):
    """The app's recommendation equals `mixplan export` (same model, objective, target); its
    provenance records the data_version the fit read, not a later one (approving a proposal
    bumps data_version without new results, so no refit); each format's tab shows its own
    CLI line."""
    import json

    from typer.testing import CliRunner

    from engine.cli import app as cli
    from engine.records import Proposal

    store = Store(env_db)
    create_study(store, "exp", n_runs=20, proposals=0, seed=3)
    at = page("views/export.py", study="exp", **model_state(export_source="recommendation"))
    ok(at)
    doc = json.loads(at.code[0].value)
    fitted_at = store.data_version("exp")
    assert doc["provenance"]["data_version"] == fitted_at
    hints = [c.value for c in at.caption if c.value.startswith("The same from the command line")]
    assert [h.split("--format ")[1].split()[0] for h in hints] == ["json", "yaml", "megatron", "olmo", "hf"]
    assert all(f"--model {FAST_MODEL}" in h for h in hints)
    r = CliRunner().invoke(cli, ["export", "--db", str(env_db), "--study", "exp", "--format", "json",
                                 "--model", FAST_MODEL])
    assert r.exit_code == 0, r.output
    cli_doc = json.loads(r.output)
    assert cli_doc["weights"] == pytest.approx(doc["weights"], abs=1e-6)
    for k in ("objective", "model", "model_params", "steps", "runs", "data_version"):
        assert cli_doc["provenance"][k] == doc["provenance"][k], k
    assert cli_doc["provenance"]["pred_mean"] == pytest.approx(doc["provenance"]["pred_mean"], abs=1e-6)
    tid = store.add_trials("exp", [Proposal({"web": 0.2, "code": 0.3, "books": 0.5}, 20_000_000, steps=1000)])[0].trial_id
    store.approve("exp", [tid])
    assert store.data_version("exp") > fitted_at
    at = page("views/export.py", study="exp", **model_state(export_source="recommendation"))
    ok(at)
    doc = json.loads(at.code[0].value)
    assert doc["provenance"]["data_version"] == fitted_at


def test_study_overview_is_cached_per_data_version(env_db, monkeypatch):
    """Changing a filter on the Study page reads no config or domains from the database."""
    at = page()
    ok(at)
    calls = []
    for meth in ("get_config", "study_domains", "runs_frame", "trials_frame"):
        real = getattr(Store, meth)

        def counted(self, *a, _real=real, _name=meth, **k):
            calls.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(Store, meth, counted)
    at.text_input(key="study_text").set_value("r000").run()
    ok(at)
    at.multiselect(key="study_sizes").set_value([20_000_000]).run()
    ok(at)
    assert calls == []


def test_import_checks_are_the_clis_and_uploads_are_removed(env_db, tmp_path, monkeypatch):
    """The app's run-table import and `mixplan import` share engine.runtable.importer: the same
    message for a config naming another study; the uploaded file's temp copy is removed."""
    import tempfile

    from typer.testing import CliRunner

    from engine.cli import app as cli
    from engine.simulators.synthetic import runs_table

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    csv = runs_table(4, ("web", "code", "books"), checkpoints=3).to_csv(index=False).encode()
    cfg = b'name = "other"\ndomains = ["web", "code", "books"]\n'
    at = page()
    at.file_uploader(key="create_table_file").set_value(("runs.csv", csv, "text/csv"))
    at.file_uploader(key="create_table_cfg").set_value(("other.toml", cfg, "text/plain"))
    at.text_input(key="create_table_name").set_value("mine")
    at.button(key="create_table_button").click().run()
    assert not at.exception and at.error
    app_msg = at.error[0].value
    (tmp_path / "runs.csv").write_bytes(csv)
    (tmp_path / "other.toml").write_bytes(cfg)
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "runs.csv"), "--study", "mine", "--config",
                                 str(tmp_path / "other.toml"), "--db", str(env_db)])
    assert r.exit_code != 0
    assert "the config names study 'other' but the study to import into is 'mine'" in app_msg
    assert "the config names study 'other' but --study is 'mine'" in str(r.exception)
    at = page()
    at.file_uploader(key="create_table_file").set_value(("runs.csv", csv, "text/csv"))
    at.text_input(key="create_table_name").set_value("uploaded-again")
    at.button(key="create_table_button").click().run()
    ok(at)
    assert "uploaded-again" in Store(env_db).study_names()
    assert not list(scratch.glob("mixplan-upload-*"))


def test_import_domains_rule():
    from engine.config import config_from_dict
    from engine.errors import ValidationError
    from engine.runtable.importer import import_domains

    cfg = config_from_dict({"name": "s", "domains": ["a", "b"]})
    assert import_domains(None, "s", None) is None
    assert import_domains(None, "s", cfg) == ["a", "b"]
    with pytest.raises(ValidationError, match="names study 's'"):
        import_domains(None, "t", cfg)


def test_live_status_polls_always_and_follows_state_changes(env_db, monkeypatch):
    """The live part polls every LIVE_S (2 s) even when nothing runs (a `mixplan run` may start
    from the CLI later); the page keeps the state counts it was drawn with, which the live part
    compares against to rerun the whole app."""
    import streamlit

    intervals = []
    real = streamlit.fragment

    def recording(func=None, *, run_every=None):
        intervals.append(run_every)
        return real(func, run_every=run_every) if func is not None else real(run_every=run_every)

    monkeypatch.setattr(streamlit, "fragment", recording)
    store = Store(env_db)
    create_study(store, "live", n_runs=4, proposals=2, seed=9)
    at = page("views/proposals.py", study="live")
    ok(at)
    from app import common

    assert 2.0 in intervals and common.WATCH_S in intervals  # the status, and every page's watcher
    snap = at.session_state["_proposals_status"]
    assert snap[0] == "live" and snap[1][0] == 2 and snap[2] is False  # 2 proposed, no dispatcher
    store.approve("live")  # e.g. from the CLI
    at = page("views/proposals.py", study="live")
    assert at.session_state["_proposals_status"][1][:2] == (0, 2)


def test_failed_trial_log_tail_survives_many_later_events(env_db):
    from engine.records import Proposal, TrialState

    store = Store(env_db)
    create_study(store, "fails", n_runs=3, proposals=0, seed=4)
    t = store.add_trials("fails", [Proposal({"web": 0.5, "code": 0.25, "books": 0.25}, 20_000_000, steps=500)],
                         state=TrialState.APPROVED)[0]
    store.transition([t.trial_id], "queued", study="fails")
    store.start_trial(t.trial_id)
    store.fail_trial(t.trial_id, "diverged", log_tail="loss is nan at step 7")
    for i in range(520):  # more than the 500 events the page used to read
        store.log_event("fails", "note", detail={"i": i})
    at = page("views/proposals.py", study="fails")
    ok(at)
    box = [e for e in at.expander if e.label.startswith(f"Trial {t.trial_id}")]
    assert box and "diverged" in box[0].label
    assert any("loss is nan at step 7" in c.value for c in box[0].code)


def test_approve_selected_saves_table_edits_first(env_db):
    from engine.records import Proposal

    store = Store(env_db)
    create_study(store, "edits", n_runs=3, proposals=0, seed=6)
    a, b = store.add_trials("edits", [Proposal({"web": 0.5, "code": 0.25, "books": 0.25}, 20_000_000, steps=500),
                                      Proposal({"web": 0.2, "code": 0.4, "books": 0.4}, 20_000_000, steps=500)])
    at = page("views/proposals.py", study="edits")
    edit_table(at, {0: {"select": True, "w_web": 0.25, "w_books": 0.5}, 1: {"w_web": 0.3, "w_code": 0.3}})
    ok(at)
    assert any("Unsaved table edits of trial(s)" in c.value for c in at.caption)
    at.button(key="approve_selected").click().run()
    ok(at)
    assert store.get_trial(a.trial_id).state.value == "proposed"  # the dialog asks first
    assert any("saved first" in c.value for c in at.caption)
    at.button(key="confirm_approve").click().run()
    ok(at)
    assert store.get_trial(a.trial_id).state.value == "approved"
    assert store.get_trial(a.trial_id).weights == pytest.approx({"web": 0.25, "code": 0.25, "books": 0.5})
    assert store.get_trial(b.trial_id).weights == pytest.approx({"web": 0.3, "code": 0.3, "books": 0.4})
    assert any("after saving the table's edits" in s.value for s in at.success)


@pytest.mark.slow
def test_backtest_page_recommends_the_model_export_uses(env_db):
    """Backtest: the recommended model with its reason and extrapolation, the per-model table and
    the predicted-vs-observed chart; Export (default: the recommendation) names the same model
    and mixture as `mixplan export`."""
    from engine.recommendation import recommend

    at = page("views/backtest.py", study="demo", backtest_models=["dmsl", "mixing-law"])
    ok(at)
    rec = recommend(Store(env_db), "demo")
    assert [s.value for s in at.subheader] == [f"Recommended: {rec.model}"]
    assert any("beyond" in i.value or "within the observed" in i.value or "extrapolation" in i.value
               for i in at.info)
    assert len(at.dataframe) >= 1 and set(at.dataframe[0].value["model"]) == {"dmsl", "mixing-law"}
    ex = page("views/export.py", study="demo", export_model="auto")
    ok(ex)
    assert ex.metric[0].label == "Recommended by" and ex.metric[0].value == rec.model
    shown = [c.value for c in ex.code if c.language == "json"][0]
    import json

    assert json.loads(shown)["weights"] == pytest.approx({d: round(w, 6) for d, w in rec.weights.items()}, abs=1e-6)


# ---- issue 14: the approve -> run loop as a person clicks it; issue 16.1: commands need the opt-in
CMD_CONFIG = '''name = "sneaky"
domains = ["a", "b"]
[runner]
kind = "command"
argv = ["/bin/sh", "-c", "id > {marker}"]
'''


def test_command_runner_configs_are_refused_without_the_opt_in(env_db, tmp_path, monkeypatch):
    monkeypatch.delenv("MIXPLAN_ALLOW_COMMANDS", raising=False)
    marker = tmp_path / "pwned"
    at = page()
    assert any("--allow-commands" in c.value for c in at.caption)  # the page says why and how
    at.text_area(key="create_cfg_text").set_value(CMD_CONFIG.format(marker=marker)).run()
    at.button(key="create_cfg_button").click().run()
    assert not at.exception and at.error and "--allow-commands" in at.error[0].value
    assert "sneaky" not in Store(env_db).study_names()
    # the same config with a run table to import: refused too, nothing imported
    from engine.simulators.synthetic import runs_table

    csv = runs_table(3, ("a", "b"), checkpoints=2).to_csv(index=False).encode()
    at = page()
    at.file_uploader(key="create_table_file").set_value(("runs.csv", csv, "text/csv"))
    at.file_uploader(key="create_table_cfg").set_value(("s.toml", CMD_CONFIG.format(marker=marker).encode(),
                                                        "text/plain"))
    at.text_input(key="create_table_name").set_value("sneaky")
    at.button(key="create_table_button").click().run()
    assert not at.exception and at.error and "--allow-commands" in at.error[0].value
    assert "sneaky" not in Store(env_db).study_names() and not marker.exists()
    monkeypatch.setenv("MIXPLAN_ALLOW_COMMANDS", "1")  # `mixplan app --allow-commands`
    at = page()
    at.text_area(key="create_cfg_text").set_value(CMD_CONFIG.format(marker=marker)).run()
    at.button(key="create_cfg_button").click().run()
    ok(at)
    assert "sneaky" in Store(env_db).study_names() and not marker.exists()  # created, nothing run


def test_command_study_is_not_dispatched_without_the_opt_in(env_db, tmp_path, monkeypatch):
    """A command study made from the CLI: its Run button is disabled with the reason; a dispatch
    request that reaches the server anyway (the dialog's Start) is refused there; nothing runs."""
    from engine.config import parse_config
    from engine.records import Proposal, TrialState
    from engine.runners.safety import ALLOW_ENV

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    marker = tmp_path / "pwned"
    store = Store(env_db)
    cfg = parse_config(f'''name = "cli-cmd"
domains = ["a", "b"]
tokens_per_step = 1000
[[scales]]
model_params = 1000000
steps = [100]
[runner]
kind = "command"
argv = ["/bin/sh", "-c", "id > {marker}"]
''')
    store.create_study(cfg)
    tid = store.add_trials("cli-cmd", [Proposal({"a": 0.5, "b": 0.5}, 1_000_000, steps=100)],
                           state=TrialState.APPROVED)[0].trial_id
    at = page("views/proposals.py", study="cli-cmd")
    ok(at)
    button = at.button(key="dispatch_button")
    assert button.disabled and "--allow-commands" in button.help
    assert any("started without --allow-commands" in w.value for w in at.warning)
    at.session_state["_prop_confirm"] = {"action": "dispatch", "study": "cli-cmd", "executor": "local",
                                         "workers": 1, "ids": [], "edits": []}
    at.run()
    at.button(key="confirm_dispatch").click().run()
    assert not at.exception and at.error and "--allow-commands" in at.error[0].value
    time.sleep(1)
    assert store.get_trial(tid).state.value == "approved" and not marker.exists()
    assert not list((env_db.parent / "mixplan-runs" / "cli-cmd").glob("dispatch-*.log"))


def test_approve_asks_with_count_and_cost_and_ticks_clear_after(env_db):
    from engine.numbers import human

    store = Store(env_db)
    create_study(store, "ask", n_runs=3, proposals=3, seed=11)
    pend = [t.trial_id for t in store.trials("ask", ["proposed"])]
    at = page("views/proposals.py", study="ask")
    edit_table(at, {0: {"select": True}, 2: {"select": True}})
    ok(at)
    assert at.button(key="approve_selected").label == "Approve selected (2)"
    assert at.session_state["_prop_selected"]["ask"] == [pend[0], pend[2]]
    at.run()  # any rerun: the ticks stay
    assert at.button(key="approve_selected").label == "Approve selected (2)"
    at.button(key="approve_selected").click().run()
    ok(at)
    total = store.get_trial(pend[0]).cost + store.get_trial(pend[2]).cost
    ask = [m.value for m in at.markdown if m.value.startswith("Approve **2 trials**")]
    assert ask and f"**{human(total)} cost units**" in ask[0] and f"{pend[0]}, {pend[2]}" in ask[0]
    assert store.get_config("ask").scales[0].cost_per_step  # the study prices runs per step: its unit
    assert not store.trials("ask", ["approved"])
    at.button(key="confirm_cancel").click().run()  # cancel: nothing approved, the ticks kept
    ok(at)
    assert not store.trials("ask", ["approved"]) and "_prop_confirm" not in at.session_state
    assert at.button(key="approve_selected").label == "Approve selected (2)"
    at.button(key="approve_selected").click().run()
    at.button(key="confirm_approve").click().run()
    ok(at)
    assert {t.trial_id for t in store.trials("ask", ["approved"])} == {pend[0], pend[2]}
    assert store.get_trial(pend[1]).state.value == "proposed"
    assert at.button(key="approve_selected").label == "Approve selected (0)"  # the ticks cleared
    assert at.session_state["_prop_selected"]["ask"] == []
    assert any("Approved trial(s)" in s.value for s in at.success)
    at.run()  # an unrelated rerun: the message stays where it was (it is not popped)
    assert any("Approved trial(s)" in s.value for s in at.success)


def test_ticks_follow_their_trials_when_the_rows_change(env_db):
    """The grid keeps edits per row position; the page keeps ticks per trial id: when a row
    above goes (rejected from the CLI), the tick stays on its trial, not on the row below."""
    store = Store(env_db)
    create_study(store, "rows", n_runs=3, proposals=3, seed=12)
    a, b, c = [t.trial_id for t in store.trials("rows", ["proposed"])]
    at = page("views/proposals.py", study="rows")
    edit_table(at, {1: {"select": True}})  # trial b
    key = at.session_state["_prop_editor_key"]
    store.reject("rows", [a])  # e.g. from the CLI: b moves up to row 0
    from app import common

    common._version.clear()
    at.run()
    ok(at)
    assert at.session_state["_prop_editor_key"] != key  # a fresh grid for the new rows ...
    assert at.session_state["_prop_selected"]["rows"] == [b]  # ... with b still ticked, not c
    assert at.button(key="approve_selected").label == "Approve selected (1)"


def test_counts_say_finished_and_running_apart(env_db):
    """A running trial with checkpoints so far: Study counts it as running, not as a finished
    run; the Landscape's fit says which of its runs are finished."""
    from engine.records import Checkpoint, Proposal, TrialState

    store = Store(env_db)
    create_study(store, "mid", n_runs=6, proposals=1, seed=13)
    t = store.add_trials("mid", [Proposal({"web": 0.4, "code": 0.3, "books": 0.3}, 20_000_000, steps=1000)],
                         state=TrialState.APPROVED)[0]
    store.transition([t.trial_id], "queued", study="mid")
    store.start_trial(t.trial_id)
    store.record_checkpoints(t.trial_id, [Checkpoint(500, 5e8, {"web": 3.0, "code": 2.5, "books": 3.2})])
    at = page("views/study.py", study="mid")
    ok(at)
    m = {x.label: x.value for x in at.metric}
    assert m["Finished runs"] == "6" and m["Running"] == "1"
    assert any(c.value == "1 proposed" for c in at.caption)
    assert any(c.value.startswith("7 of 7 runs with results match (6 finished; 1 running: their checkpoints so far)")
               for c in at.caption)
    at = page("views/landscape.py", study="mid", **model_state(land_res=20))
    ok(at)
    m = {x.label: x.value for x in at.metric}
    assert m["Fitted on finished runs"] == "6"
    assert any("+ 1 running (checkpoints so far)" in c.value for c in at.caption)
    assert any(c.value == "Runs: **6** finished runs · 1 running · 1 proposed" for c in at.caption)
    assert any("**6** finished runs · 1 running · 1 proposed" in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("name", PAGES)
def test_no_metric_arrows_and_human_numbers(env_db, name):
    """No st.metric delta (an arrow and a colour that say "changed") on any page, and no raw
    7-digit number in the text (1M, not 1000000)."""
    import re

    at = page(name, **model_state(land_res=20))
    ok(at)
    assert all(not m.proto.delta for m in at.metric), [(m.label, m.proto.delta) for m in at.metric]
    texts = [e.value for kind in ("markdown", "caption", "metric", "info", "success") for e in getattr(at, kind)]
    raw = [t for t in texts if re.search(r"(?<![\d.,])\d{7,}(?![\d.])", str(t).replace(common_db(), ""))]
    assert not raw, raw


def common_db() -> str:
    from app import common

    return common.db_path()
