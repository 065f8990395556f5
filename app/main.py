"""The mixplan web app: `mixplan app --db runs.duckdb` (or `streamlit run app/main.py` with
MIXPLAN_DB set). Pages live in app/views/; this script sets up navigation and the study picker."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` from a checkout without an install
    sys.path.insert(0, str(ROOT))

from app import common  # noqa: E402

st.set_page_config(page_title="mixplan", page_icon=":material/blender:", layout="wide")

PAGES = [
    st.Page("views/study.py", title="Study", icon=":material/table_view:", url_path="study", default=True),
    st.Page("views/landscape.py", title="Landscape", icon=":material/landscape:", url_path="landscape"),
    st.Page("views/scaling.py", title="Scaling", icon=":material/stacked_bar_chart:", url_path="scaling"),
    st.Page("views/backtest.py", title="Backtest", icon=":material/query_stats:", url_path="backtest"),
    st.Page("views/validation.py", title="Validation", icon=":material/fact_check:", url_path="validation"),
    st.Page("views/trajectory.py", title="Trajectory", icon=":material/timeline:", url_path="trajectory"),
    st.Page("views/proposals.py", title="Proposals", icon=":material/how_to_reg:", url_path="proposals"),
    st.Page("views/export.py", title="Export", icon=":material/download:", url_path="export"),
]
page = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### mixplan")
    with common.guard("opening the database"):
        names = common.study_names()
        if names:
            pending = st.session_state.pop(common.PENDING_STUDY_KEY, None)
            if pending in names:
                st.session_state[common.STUDY_KEY] = pending
            if st.session_state.get(common.STUDY_KEY) not in names:
                wanted = st.query_params.get("study")
                st.session_state[common.STUDY_KEY] = wanted if wanted in names else names[0]
            st.selectbox("Study", names, key=common.STUDY_KEY, help="Every page shows this study.")
            common.watch(st.session_state[common.STUDY_KEY])  # reruns the page when its trials change state
        else:
            st.caption("No study yet: create one on the Study page.")
    st.caption(f"Database: `{common.db_path()}`")
    from engine.runners.safety import commands_allowed

    if commands_allowed():
        st.caption(":material/warning: Started with `--allow-commands`: studies whose runner starts programs "
                   "can be created and dispatched here (each dispatch shows the argv first).")

with common.guard(f"drawing the {page.title} page"):  # e.g. a broken import: a message, not a traceback
    page.run()
