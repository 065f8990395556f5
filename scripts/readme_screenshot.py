"""Take the README's picture of the app (docs/app.png) the way the browser test drives it.

    python scripts/readme_screenshot.py [--page landscape] [--out docs/app.png]

Starts `mixplan app` on a copy of the bundled runs.duckdb on a free port, opens the page in
headless Chromium (Playwright, /usr/bin/chromium or $MIXPLAN_CHROMIUM), waits until its charts
are drawn and Streamlit is idle, takes the viewport, and shrinks it to a small palette PNG
(< 200 KB) so the repository stays light.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLES = {"": "Study", "landscape": "Landscape", "scaling": "Scaling", "trajectory": "Trajectory",
          "proposals": "Proposals", "export": "Export"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise SystemExit("the app server exited")
    raise SystemExit("the app server did not answer /_stcore/health")


def wait_drawn(page, plots: int, timeout_s: float = 400) -> None:
    """Charts drawn, no running indicator for 2 s (as tests/test_browser_app.py waits)."""
    deadline = time.time() + timeout_s
    busy = ("[data-testid='stStatusWidgetRunningIcon'], [data-testid='stSkeleton'], "
            "[data-testid='stElementContainer'][data-stale='true']")
    quiet_since = None
    while time.time() < deadline:
        drawn = page.locator(".js-plotly-plot:has(.main-svg)").count() >= plots
        if drawn and page.locator(busy).count() == 0:
            quiet_since = quiet_since or time.time()
            if time.time() - quiet_since >= 2:
                return
        else:
            quiet_since = None
        page.wait_for_timeout(500)
    raise SystemExit("the page did not finish drawing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default="landscape", choices=list(TITLES))
    ap.add_argument("--plots", type=int, default=2, help="charts to wait for")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "app.png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1250)
    ap.add_argument("--scale", type=float, default=0.55, help="shrink factor of the saved picture")
    args = ap.parse_args()

    from PIL import Image
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="mixplan-shot-"))
    db = tmp / "runs.duckdb"
    shutil.copy(ROOT / "runs.duckdb", db)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp / "server.log", "wb") as log:
        # run beside the copy, so the page names it runs.duckdb as it would in a clone
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "app", "--db", db.name, "--port", str(port)],
                                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_health(url, proc)
            chromium = os.environ.get("MIXPLAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True,
                                            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(f"{url}/{args.page}", wait_until="domcontentloaded")
                page.get_by_role("heading", name=TITLES[args.page], exact=True).wait_for(timeout=120_000)
                wait_drawn(page, args.plots)
                raw = tmp / "raw.png"
                page.screenshot(path=str(raw))
                browser.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    img = Image.open(raw).convert("RGB")
    img = img.resize((int(img.width * args.scale), int(img.height * args.scale)), Image.LANCZOS)
    img = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB, {img.width}x{img.height})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
