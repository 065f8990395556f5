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
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if chromium_path() is None:
        unavailable("no chromium binary (install Debian's chromium or set MIXPLAN_CHROMIUM)")
    import shutil

    from engine.simulators.synthetic import create_study
    from engine.store import Store

    db = tmp_path_factory.mktemp("browser") / "browser.duckdb"
    bundled = ROOT / "runs.duckdb"
    if bundled.exists() and "demo" in Store(bundled, create=False).study_names():
        # the screenshots show the bundled study of real trainer runs (a copy: the test writes)
        shutil.copy(bundled, db)
        from engine.strategies.base import propose

        propose(Store(db), "demo", "random", q=2, seed=0)
    else:
        create_study(Store(db), "demo", n_runs=40, proposals=2)
    port = free_port()
    log = open(db.parent / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "app", "--db", str(db), "--port", str(port)],
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
    yield url, db
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


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
    assert page.get_by_text("Runs with results").count() == 1
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
    page.get_by_text(f"Approved trial(s) {first}").wait_for(timeout=60_000)
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
