"""Measure each page's render time (server-side script run, via streamlit.testing) on a synthetic
study of N runs x C checkpoints: first view (cold caches: model fits included) and a second view
(warm caches).

    python -m app.render_times --runs 1000 --checkpoints 20 [--domains 3] [--model mixing-law]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

PAGES = ["views/study.py", "views/landscape.py", "views/scaling.py", "views/trajectory.py",
         "views/proposals.py", "views/export.py"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--domains", type=int, default=3)
    ap.add_argument("--model", default=None, help="loss model for Landscape/Scaling/Export (default: the app's)")
    ap.add_argument("--db", default=None, help="reuse this database (created if missing)")
    args = ap.parse_args()
    from streamlit.testing.v1 import AppTest

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
    main_py = str(Path(__file__).parent / "main.py")
    state = {}
    if args.model:
        state = {"land_model": args.model, "export_model": args.model, "scaling_models": [args.model],
                 "export_source": "recommendation"}
    print("first paint: what a user waits for the page, cold caches (slow fits go on in the background after")
    print("1.5 s); complete: until every plot is drawn, cold caches; warm: a second view, caches filled.")
    print(f"{'page':<12} {'first paint':>12} {'complete':>10} {'warm':>8}  problems")
    for page in PAGES:
        times, problems = [], []
        for i, wait in enumerate(("1.5", "3600", "3600")):
            if i < 2:
                clear_caches()
            os.environ["MIXPLAN_APP_FIT_WAIT"] = wait
            at = AppTest.from_file(main_py, default_timeout=3600)
            for k, v in state.items():
                at.session_state[k] = v
            at.run()
            t = time.perf_counter()
            if page != PAGES[0]:
                at.switch_page(page)
            at.run()
            times.append(time.perf_counter() - t)
            problems = [e.value[:120] for e in at.exception] + [e.value[:120] for e in at.error]
        name = page.split("/")[1][:-3]
        print(f"{name:<12} {times[0]:>11.2f}s {times[1]:>9.2f}s {times[2]:>7.2f}s  {'; '.join(problems)}",
              flush=True)


def clear_caches() -> None:
    """Wait for background fits, then empty every st.cache_data / st.cache_resource (a cold start)."""
    import streamlit as st

    import app.common as common

    while any(not j[0].done() for j in common._jobs().values()):
        time.sleep(0.5)
    st.cache_data.clear()
    st.cache_resource.clear()


if __name__ == "__main__":
    main()
