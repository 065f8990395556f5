"""Measure each page's render time (the server-side script run, via streamlit.testing) on a
synthetic study of N runs x C checkpoints, with the app's default models (mfms-gp on Landscape
and Export, mfms-gp + AutoScale on Scaling) unless --model says otherwise.

    python -m app.render_times --runs 1000 --checkpoints 20 [--domains 3] [--model mixing-law]

Per page, from cold caches (every st.cache_data / st.cache_resource emptied, the page opened
directly as the first run of a new session, so nothing another page loaded is reused):

- ``paint``: until the page is drawn, as a user waits for it: slow model fits go on in the
  background after MIXPLAN_APP_FIT_WAIT (1.5 s) and the page draws everything else;
- ``fit done``: until the background work (fits, optimum searches) has finished;
- ``complete``: until the page is drawn again with the results (what the page's poll shows);
- ``warm``: a second view in the same session, caches filled.

Python modules are imported once before measuring (a running server has them); the table's load
from the database is part of every cold time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

PAGES = ["views/study.py", "views/landscape.py", "views/scaling.py", "views/trajectory.py",
         "views/proposals.py", "views/export.py"]
FIT_WAIT = "1.5"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--domains", type=int, default=3)
    ap.add_argument("--model", default=None, help="loss model for Landscape/Scaling/Export (default: the app's)")
    ap.add_argument("--db", default=None, help="reuse this database (created if missing)")
    ap.add_argument("--pages", nargs="*", default=None, help="only these pages (e.g. landscape export)")
    args = ap.parse_args()
    os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # "no runtime found" and the like, per cache
    from streamlit import logger as st_logger
    from streamlit.testing.v1 import AppTest

    st_logger.set_log_level(os.environ["STREAMLIT_LOGGER_LEVEL"])

    from engine.simulators.synthetic import create_study
    from engine.store import Store

    doms = ("web", "code", "books", "wiki", "arxiv", "news", "math", "forums")[: args.domains]
    db = Path(args.db or Path(tempfile.mkdtemp()) / "render.duckdb")
    store = Store(db)
    if "big" not in store.study_names():
        t = time.perf_counter()
        create_study(store, "big", n_runs=args.runs, domains=doms, checkpoints=args.checkpoints, proposals=4)
        print(f"created {args.runs} runs x {args.checkpoints} checkpoints in {time.perf_counter() - t:.1f} s")
    os.environ["MIXPLAN_DB"] = str(db)
    os.environ["MIXPLAN_APP_FIT_WAIT"] = FIT_WAIT
    main_py = str(Path(__file__).parent / "main.py")
    state = {}
    if args.model:
        state = {"land_model": args.model, "export_model": args.model, "scaling_models": [args.model],
                 "export_source": "recommendation"}
    preimport()
    pages = [p for p in PAGES if not args.pages or Path(p).stem in args.pages]
    print(f"{args.runs} runs x {args.checkpoints} checkpoints, {args.domains} domains, models: "
          f"{args.model or 'the defaults (mfms-gp; Scaling: mfms-gp + autoscale)'}; seconds")
    print(f"{'page':<11} {'paint':>7} {'fit done':>9} {'complete':>9} {'warm':>7}  problems")
    for page in pages:
        clear_caches()
        at = AppTest.from_file(main_py, default_timeout=3600)
        for k, v in state.items():
            at.session_state[k] = v
        at.switch_page(page)  # before the first run: the page opens directly, like a bookmarked URL
        t0 = time.perf_counter()
        at.run()
        paint = time.perf_counter() - t0
        fit_done = complete = None
        if wait_background():
            fit_done = time.perf_counter() - t0
            at.run()
            complete = time.perf_counter() - t0
        t1 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t1
        problems = [e.value[:120] for e in at.exception] + [e.value[:120] for e in at.error]
        fmt = lambda x: f"{x:.2f}" if x is not None else "-"  # noqa: E731
        print(f"{Path(page).stem:<11} {paint:>7.2f} {fmt(fit_done):>9} {fmt(complete if complete is not None else paint):>9}"
              f" {warm:>7.2f}  {'; '.join(problems)}", flush=True)


def preimport() -> None:
    """Import what the pages import (torch and BoTorch for the GP), once, as a server would."""
    import engine.bench.optimize_report  # noqa: F401
    import engine.models.autoscale  # noqa: F401
    import engine.models.mfms_gp  # noqa: F401
    import engine.plots  # noqa: F401
    import engine.strategies  # noqa: F401
    import engine.trajectory  # noqa: F401


def wait_background() -> bool:
    """Wait for the app's background jobs; True if there were any still running."""
    import app.common as common

    pending = [j for j in common._jobs().values() if not j[0].done()]
    for j in pending:
        try:
            j[0].result()
        except Exception:  # noqa: BLE001 - the page shows the error on its next run
            pass
    return bool(pending)


def clear_caches() -> None:
    """Wait for background fits, then empty every st.cache_data / st.cache_resource (a cold start)."""
    import streamlit as st

    wait_background()
    st.cache_data.clear()
    st.cache_resource.clear()


if __name__ == "__main__":
    main()
