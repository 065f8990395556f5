"""End to end: `mixplan app` on a temp database, driven by headless Chromium through Playwright.

Opens every page, approves a proposal with its button, downloads exports and checks their
content, and saves a screenshot of each page to artifacts/screenshots/ (in .gitignore; CI keeps
it as an artifact), each taken once the page's content is drawn and Streamlit's running
indicator has cleared. Skips cleanly where playwright or a chromium binary is missing, unless
MIXPLAN_REQUIRE_BROWSER=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 # several pages stay open side by side: none of them may have its timers slowed
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]


def chromium_path() -> str | None:
    env = os.environ.get("MIXPLAN_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable(reason: str) -> None:
    """Skip, or fail where MIXPLAN_REQUIRE_BROWSER=1 (CI must not pass without the browser test)."""
    if os.environ.get("MIXPLAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required (MIXPLAN_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def need_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if chromium_path() is None:
        unavailable("no chromium binary (install Debian's chromium or set MIXPLAN_CHROMIUM)")


def demo_copy(folder: Path, proposals: int = 2) -> Path:
    """A copy of the bundled demo database (the test writes to it), or a synthetic study named
    demo where the bundled one is missing."""
    from engine.simulators.synthetic import create_study
    from engine.store import Store

    db = folder / "browser.duckdb"
    bundled = ROOT / "runs.duckdb"
    if bundled.exists() and "demo" in Store(bundled, create=False).study_names():
        # the screenshots show the bundled study of real trainer runs (a copy: the test writes)
        shutil.copy(bundled, db)
        if proposals:
            from engine.study import propose

            propose(Store(db), "demo", "random", q=proposals, seed=0)
    else:
        create_study(Store(db), "demo", n_runs=40, proposals=proposals)
    return db


def start_app(db: Path, *extra: str):
    """`mixplan app --db DB ...` on a free port, once it answers /_stcore/health: (url, process, log)."""
    port = free_port()
    log = open(db.parent / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "app", "--db", str(db), "--port", str(port), *extra],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail("the app server exited: " + (db.parent / "server.log").read_text()[-2000:])
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("the app server did not answer /_stcore/health within 90 s")
    return url, proc, log


def stop_app(proc, log) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app as `./mixplan.sh app` starts it: no --allow-commands."""
    need_browser()
    db = demo_copy(tmp_path_factory.mktemp("browser"))
    url, proc, log = start_app(db)
    yield url, db
    stop_app(proc, log)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1800}, accept_downloads=True)
    pg = ctx.new_page()
    yield pg
    ctx.close()


def open_page(page, url: str, path: str, title: str) -> None:
    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=60_000)


def wait_plots(page, n: int, timeout_s: float = 300) -> None:
    """Wait until ``n`` Plotly charts have drawn (an SVG with data inside each)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        drawn = page.locator(".js-plotly-plot:has(.main-svg)").count()
        if drawn >= n and page.locator("[data-testid='stException']").count() == 0:
            break
        page.wait_for_timeout(1000)
    else:
        pytest.fail(f"fewer than {n} plots drawn after {timeout_s} s")
    assert page.locator("[data-testid='stException']").count() == 0
    page.wait_for_timeout(1500)  # let the last chart finish its transition


def running(page) -> bool:
    """Whether Streamlit shows its "running" indicator (a script or fragment run in progress) or
    a widget still drawn as a grey placeholder (stale / skeleton)."""
    return page.locator("[data-testid='stStatusWidgetRunningIcon'], [data-testid='stSkeleton'], "
                        "[data-testid='stElementContainer'][data-stale='true']").count() > 0


def wait_idle(page, timeout_s: float = 120, quiet_s: float = 1.0) -> None:
    """Wait until the app has been idle (no running indicator) for ``quiet_s`` seconds."""
    deadline = time.time() + timeout_s
    since = None
    while time.time() < deadline:
        if running(page):
            since = None
        elif since is None:
            since = time.time()
        elif time.time() - since >= quiet_s:
            return
        page.wait_for_timeout(200)
    pytest.fail(f"the app was still running after {timeout_s} s")


def shot(page, name: str) -> Path:
    """A full-page screenshot, taken once the app is idle (no half-drawn page)."""
    wait_idle(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    p = SHOTS / f"{name}.png"
    page.screenshot(path=str(p), full_page=True)
    return p


def no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    errs = page.locator("[data-testid='stAlertContentError']")
    assert errs.count() == 0, errs.all_inner_texts()


def test_study_page(server, page):
    url, _ = server
    open_page(page, url, "", "Study")  # the default page lives at the root
    wait_plots(page, 1)
    no_errors(page)
    assert page.get_by_text("Finished runs", exact=True).count() == 1
    assert shot(page, "1-study").stat().st_size > 20_000


def test_landscape_page(server, page):
    url, _ = server
    open_page(page, url, "landscape", "Landscape")
    from engine.store import Store

    three = len(Store(server[1]).get_config("demo").domains) == 3
    wait_plots(page, 3)  # ternary or 2-D slice: mean + std, and the parallel coordinates
    no_errors(page)
    if three:
        assert page.locator(".ternary").count() >= 2
    shot(page, "2-landscape")


def test_scaling_page(server, page):
    url, _ = server
    open_page(page, url, "scaling", "Scaling")
    wait_plots(page, 1, timeout_s=420)
    no_errors(page)
    shot(page, "3-scaling")


def test_backtest_page(server, page):
    """Issue 11 in the browser: the bundled demo's backtest (fit the small sizes, predict the
    larger), the recommended model with how far the target lies beyond the runs, and predicted vs
    observed with error bars; the Export page then exports that recommendation by default."""
    url, db = server
    open_page(page, url, "backtest", "Backtest")
    page.get_by_text("Recommended:").first.wait_for(timeout=600_000)
    wait_plots(page, 1, timeout_s=600)
    no_errors(page)
    from engine.recommendation import cached_recommendation
    from engine.store import Store

    rec = cached_recommendation(Store(db), "demo")
    assert rec is not None and page.get_by_text(f"Recommended: {rec.model}").count() == 1
    assert page.get_by_text("3x the largest model size run").count() >= 1
    assert page.locator(".js-plotly-plot path.yerror").count() >= 1  # the predictions' error bars
    shot(page, "3c-backtest")


def test_trajectory_page(server, page):
    url, _ = server
    open_page(page, url, "trajectory", "Trajectory")
    wait_plots(page, 1)
    page.get_by_text("Current incumbent").first.wait_for(timeout=30_000)
    no_errors(page)
    shot(page, "4-trajectory")


def test_validation_page(server, page):
    """The bundled demo's verdict at its target: real validation runs against the predictions."""
    url, _ = server
    open_page(page, url, "validation", "Validation")
    wait_plots(page, 2, timeout_s=420)  # predicted vs observed, and the loss curves
    no_errors(page)
    verdict = page.locator("[data-testid='stAlertContentSuccess'], [data-testid='stAlertContentWarning']")
    assert "recommended mixture" in verdict.first.inner_text()
    assert page.locator(".js-plotly-plot path.yerror").count() >= 1  # the predictions' error bars
    shot(page, "3b-validation")


def test_trajectory_compares_the_bundled_strategies(server, page):
    """The bundled demo-bo-* studies: the Trajectory page draws every strategy's loop (true
    regret against cost) without being asked."""
    url, db = server
    from engine.store import Store

    bo = [n for n in Store(db).study_names() if n.startswith("demo-bo-")]
    assert len(bo) >= 3, "runs.duckdb should hold the demo-bo-* studies (mixplan demo build --bo)"
    open_page(page, url, f"trajectory?study={bo[0]}", "Trajectory")
    wait_plots(page, 2)  # the incumbent's value, and its true regret
    page.get_by_text("Speed-up", exact=False).first.wait_for(timeout=60_000)
    no_errors(page)
    for name in bo:
        assert page.locator(".js-plotly-plot .legendtext", has_text=name).count() >= 1, name
    shot(page, "4b-trajectory-bo")


def test_proposals_page_approve(server, page):
    url, db = server
    from engine.store import Store

    store = Store(db)
    first = store.trials("demo", ["proposed"])[0].trial_id
    open_page(page, url, "proposals", "Proposals")
    page.get_by_text(f"Trial {first}", exact=False).first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Approve", exact=True).first.wait_for(state="visible", timeout=60_000)
    page.get_by_role("button", name="Propose", exact=True).wait_for(state="visible", timeout=60_000)
    no_errors(page)
    shot(page, "5-proposals")
    page.get_by_role("button", name="Approve", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Approve 1 trial", exact=False).first.wait_for(timeout=60_000)
    assert store.get_trial(first).state.value == "proposed"  # nothing approved before the confirmation
    dialog.get_by_role("button", name="Approve 1 trial").click()
    page.get_by_text(f"Approved trial(s) {first}").first.wait_for(timeout=60_000)
    assert store.get_trial(first).state.value == "approved"
    no_errors(page)
    shot(page, "5-proposals-approved")


def test_export_page_download(server, page, tmp_path):
    url, db = server
    from engine.store import Store

    open_page(page, url, "export", "Export")
    page.get_by_role("button", name="Download JSON").wait_for(timeout=420_000)
    wait_plots(page, 1)
    no_errors(page)
    shot(page, "6-export")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download JSON").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    doc = json.loads(path.read_text())
    store = Store(db)
    assert abs(sum(doc["weights"].values()) - 1) < 1e-6
    assert set(doc["weights"]) == set(store.get_config("demo").domains)
    prov = doc["provenance"]
    done = [t for t in store.trials("demo", ["done"])]
    assert prov["study"] == "demo" and prov["runs"] == len(done) and prov["source"] in ("optimum", "run")
    if prov["source"] == "optimum":
        assert prov["model"] and "pred_mean" in prov and "pred_std" in prov
        from engine.recommendation import recommend

        # the default export is the study's one recommendation, the mixture `mixplan export` gives
        rec = recommend(store, "demo")
        assert prov["recommended"] is True and prov["model"] == rec.model
        assert doc["weights"] == pytest.approx({d: round(w, 6) for d, w in rec.weights.items()}, abs=1e-6)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download Megatron").click()
    mpath = tmp_path / info.value.suggested_filename
    info.value.save_as(mpath)
    from engine.export import parse_megatron

    blend = parse_megatron(mpath.read_text())
    assert abs(sum(blend.values()) - 1) < 1e-6
    deadline = time.time() + 20
    while time.time() < deadline:
        ev = Store(db).events("demo", limit=5)
        if (ev["kind"] == "export").sum() >= 2:
            break
        time.sleep(0.5)
    assert (ev["kind"] == "export").sum() >= 2


def test_missing_browser_fails_when_required(monkeypatch):
    """MIXPLAN_REQUIRE_BROWSER=1 (.ci/run) turns the quiet skip into a failure."""
    monkeypatch.setenv("MIXPLAN_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="browser test required"):
        unavailable("no chromium binary")
    monkeypatch.delenv("MIXPLAN_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception):
        unavailable("no chromium binary")


# ---- the approve -> run loop, and commands only with the server's opt-in --------------------
#: the stand-in trainer's pace: a checkpoint every SLEEP_S seconds, CHECKPOINTS of them a trial
CHECKPOINTS, SLEEP_S = 8, 2.5


def fast_runner(db: Path) -> None:
    """Make the copy's demo study run a stand-in trainer (tests/fixtures/fake_trainer.py) that
    takes ~20 s a trial and streams a checkpoint every 2.5 s: a command runner, so only a server
    started with --allow-commands may dispatch it."""
    from dataclasses import replace

    from engine.config import RunnerConfig
    from engine.store import Store

    store = Store(db)
    cfg = store.get_config("demo")
    argv = (sys.executable, str(ROOT / "tests" / "fixtures" / "fake_trainer.py"), "--weights", "{weights_json}",
            "--params", "{model_params}", "--steps", "{steps}", "--out", "{out_dir}", "--checkpoints",
            str(CHECKPOINTS), "--sleep", str(SLEEP_S))
    store.update_config(replace(cfg, runner=RunnerConfig("command", argv, 300.0, 0, {})))


@pytest.fixture(scope="module")
def cmd_server(tmp_path_factory):
    """`mixplan app --allow-commands` on a demo copy whose runner is a fast command."""
    need_browser()
    db = demo_copy(tmp_path_factory.mktemp("loop"), proposals=0)
    fast_runner(db)
    url, proc, log = start_app(db, "--allow-commands")
    yield url, db
    stop_app(proc, log)


def new_page(browser):
    """A page in a context of its own (a separate session and window, as another person's).
    Actions may wait up to 2 min: three pages of the app share two (busy) cores here."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 1800}, accept_downloads=True)
    ctx.set_default_timeout(120_000)
    return ctx, ctx.new_page()


def grid(page):
    return page.locator("[data-testid='stDataFrame']").first


def tick(page, rows: list[int]) -> None:
    """Tick rows of the Proposals table. It is a canvas grid (no DOM cells): click each row's
    checkbox cell, 35 px per row under a 35 px header, in the first column."""
    for i in rows:
        box = grid(page).bounding_box()
        page.mouse.click(box["x"] + 20, box["y"] + 35 + 35 * i + 17)
        page.wait_for_timeout(300)
        wait_idle(page, quiet_s=0.5)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (type it, then Enter)."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=label).locator("input").click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")
    wait_idle(page)


def metric_value(page, label: str) -> str:
    m = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=label))
    return m.first.locator("[data-testid='stMetricValue']").inner_text().strip()


def shot_now(page, name: str) -> Path:
    """A screenshot without waiting for the app to be idle (a page that polls while trials run)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    p = SHOTS / f"{name}.png"
    page.screenshot(path=str(p), full_page=True)
    return p


def test_approve_run_loop(cmd_server, browser):
    """Propose -> tick two of three -> approve (the dialog shows their number and total cost)
    -> run (the dialog shows each argv) -> watch the progress move -> done: only the ticked
    trials ran, and the open Study, Proposals and Landscape pages show the new counts within
    10 s of the last trial's end, without a reload."""
    from engine.numbers import human
    from engine.store import Store

    url, db = cmd_server
    store = Store(db)
    done0 = store.state_counts("demo")[1].get("done", 0)
    opened = [new_page(browser) for _ in range(3)]
    study_pg, land_pg, prop = (p for _, p in opened)
    try:
        open_page(study_pg, url, "", "Study")
        open_page(land_pg, url, "landscape", "Landscape")
        # a quick model: the default GP's refits (one per finished trial) would share the
        # server's two busy cores with the pages whose refresh this test times
        choose(land_pg, "Loss model", "mixing-law")
        open_page(prop, url, "proposals", "Proposals")
        choose(prop, "Strategy", "random")
        q = prop.get_by_label("How many (q)")
        q.fill("3")
        q.press("Enter")
        wait_idle(prop)
        heading_y = prop.get_by_role("heading", name="Ask a strategy").bounding_box()["y"]
        prop.get_by_role("button", name="Propose", exact=True).click()
        prop.get_by_text("random proposed 3 trial(s)").first.wait_for(timeout=120_000)
        wait_idle(prop)
        # the message sits in a box of fixed height: it appeared, and nothing below it moved
        assert prop.get_by_role("heading", name="Ask a strategy").bounding_box()["y"] == heading_y
        proposed = [t.trial_id for t in store.trials("demo", ["proposed"])]
        assert len(proposed) == 3
        shot(prop, "7-loop-proposed")
        y0 = grid(prop).bounding_box()["y"]
        tick(prop, [0, 2])
        chosen = [proposed[0], proposed[2]]
        assert grid(prop).bounding_box()["y"] == y0  # ticking moved nothing
        prop.get_by_role("button", name="Approve selected (2)").wait_for(timeout=30_000)
        q.fill("4")  # an unrelated rerun: the ticks stay
        q.press("Enter")
        wait_idle(prop)
        prop.get_by_role("button", name="Approve selected (2)").click()
        dialog = prop.get_by_role("dialog")
        total = sum(store.get_trial(t).cost for t in chosen)
        dialog.get_by_text(f"{human(total)} FLOPs").wait_for(timeout=30_000)
        assert "2 trials" in dialog.inner_text() and all(str(t) in dialog.inner_text() for t in chosen)
        assert not store.trials("demo", ["approved"])  # nothing approved before the confirmation
        shot(prop, "8-loop-approve-dialog")
        dialog.get_by_role("button", name="Approve 2 trials").click()
        prop.get_by_text(f"Approved trial(s) {chosen[0]}, {chosen[1]}").first.wait_for(timeout=60_000)
        wait_idle(prop)
        assert {t.trial_id for t in store.trials("demo", ["approved"])} == set(chosen)
        assert [t.trial_id for t in store.trials("demo", ["proposed"])] == [proposed[1]]
        prop.get_by_role("button", name="Approve selected (0)").wait_for(timeout=30_000)  # the ticks cleared
        workers = prop.get_by_label("Workers")
        workers.fill("1")
        workers.press("Enter")
        wait_idle(prop)
        prop.get_by_role("button", name="Run approved (2)").click()
        dialog = prop.get_by_role("dialog")
        dialog.get_by_text("Start these programs?").wait_for(timeout=30_000)
        dialog.locator("[data-testid='stCode']").nth(1).wait_for(timeout=30_000)  # one argv per trial
        text = dialog.inner_text()
        assert "fake_trainer.py" in text and "<submission>" in text
        for t in chosen:
            assert f"/{store.get_trial(t).run_id}/<submission>" in text
        assert not store.trials("demo", ["queued", "running"])  # nothing starts before the confirmation
        shot(prop, "9-loop-argv-dialog")
        dialog.get_by_role("button", name="Start 2 program(s)").click()
        texts, queued, running_shot, t_end = [], [], False, None
        deadline = time.time() + 300
        while time.time() < deadline:
            if store.state_counts("demo")[1].get("done", 0) == done0 + 2:
                t_end = time.time()
                break
            for line in prop.locator("[data-testid='stProgress']").all_inner_texts():
                if "step" in line and line not in texts:
                    texts.append(line)
                if "waiting for a free worker: 1 of 1 busy" in line:
                    queued.append(line)
            if not running_shot and len(texts) >= 2:
                shot_now(prop, "10-loop-running")
                running_shot = True
            time.sleep(0.25)
        assert t_end is not None, "the two trials did not finish within 300 s"
        steps = {line.split("step ")[1].split(" /")[0] for line in texts}
        assert len(steps) >= 2, texts  # the progress moved while the trials ran
        assert all("mean_loss" in line and "running" in line for line in texts), texts
        assert queued, "the second trial never said why it was queued"
        want = str(done0 + 2)
        pages = {"Proposals status": lambda: metric_value(prop, "done") == want,
                 "Study": lambda: metric_value(study_pg, "Finished runs") == want,
                 "Landscape": lambda: f"{want} finished runs" in land_pg.locator(
                     "[data-testid='stCaptionContainer']").filter(has_text="Runs:").first.inner_text()}
        seen: dict[str, float] = {}
        while len(seen) < len(pages) and time.time() - t_end < 15:
            for name, check in pages.items():
                if name not in seen:
                    try:
                        if check():
                            seen[name] = time.time() - t_end
                    except Exception:  # noqa: BLE001 - a page mid-rerun: look again
                        pass
            time.sleep(0.2)
        print("seconds from the last trial's end to the new counts on each page:",
              {k: round(v, 1) for k, v in seen.items()})
        assert set(seen) == set(pages) and max(seen.values()) <= 10, seen
        assert {t.trial_id for t in store.trials("demo", ["done"])} >= set(chosen)
        assert store.get_trial(proposed[1]).state.value == "proposed"  # the unticked one never ran
        shot(prop, "11-loop-done-proposals")
        shot(study_pg, "12-loop-done-study")
        deadline = time.time() + 60  # the refit on the new results, if it draws soon (not asserted)
        while time.time() < deadline and land_pg.locator(".js-plotly-plot:has(.main-svg)").count() < 3:
            land_pg.wait_for_timeout(1000)
        shot(land_pg, "13-loop-done-landscape")
        for p in (study_pg, land_pg, prop):
            no_errors(p)
    finally:
        for ctx, _ in opened:
            ctx.close()


def test_command_runner_needs_the_opt_in(server, page, tmp_path):
    """Without --allow-commands (the default, also of ./mixplan.sh app): a pasted config with a
    command runner is refused with the way to enable it, and a command study made from the CLI
    cannot be dispatched: its Run button is disabled with the explanation, nothing starts."""
    from engine.config import config_from_dict
    from engine.records import Proposal, TrialState
    from engine.store import Store

    url, db = server
    store = Store(db)
    marker = tmp_path / "pwned"
    open_page(page, url, "", "Study")
    page.get_by_text("Create a study").first.click()
    area = page.get_by_label("...or paste it")
    area.fill(f'name = "sneaky"\ndomains = ["a", "b"]\n[runner]\nkind = "command"\n'
              f'argv = ["/bin/sh", "-c", "id > {marker}"]\n')
    area.press("Control+Enter")
    wait_idle(page)
    page.get_by_role("button", name="Create study").click()
    err = page.locator("[data-testid='stAlertContentError']").filter(has_text="--allow-commands")
    err.first.wait_for(timeout=60_000)
    assert "sneaky" not in store.study_names()
    shot(page, "14-command-refused")

    cfg = config_from_dict({"name": "cli-cmd", "domains": ["a", "b"], "tokens_per_step": 1000,
                            "scales": [{"model_params": 1_000_000, "steps": [100]}],
                            "runner": {"kind": "command", "argv": ["/bin/sh", "-c", f"id > {marker}"]}})
    store.create_study(cfg)  # as a CLI user may
    tid = store.add_trials("cli-cmd", [Proposal({"a": 0.5, "b": 0.5}, 1_000_000, steps=100)],
                           state=TrialState.APPROVED)[0].trial_id
    page.goto(f"{url}/proposals?study=cli-cmd", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Run the approved trials").wait_for(timeout=60_000)
    button = page.get_by_role("button", name="Run approved (1)")
    button.wait_for(timeout=60_000)
    assert button.is_disabled()
    page.get_by_text("started without --allow-commands").first.wait_for(timeout=30_000)
    shot(page, "15-command-not-dispatched")
    time.sleep(2)
    assert store.get_trial(tid).state.value == "approved" and not marker.exists()
    assert not list((db.parent / "mixplan-runs" / "cli-cmd").glob("dispatch-*.log"))
