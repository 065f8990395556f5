"""Entry page of the mixplan app: the studies in the database and their runs."""

from __future__ import annotations

import os

import streamlit as st

from engine.errors import MixplanError
from engine.store import Store

st.set_page_config(page_title="mixplan", layout="wide")
db = os.environ.get("MIXPLAN_DB", "runs.duckdb")


@st.cache_resource
def store_for(path: str) -> Store:
    return Store(path)


st.title("mixplan")
try:
    store = store_for(db)
    studies = store.list_studies()
except MixplanError as exc:
    st.error(str(exc))
    st.stop()
st.caption(f"database: {db}")
if not studies:
    st.info("No study yet. Create one with `mixplan study create --config FILE` or `mixplan import FILE --study NAME`.")
    st.stop()
st.dataframe([{"study": s.name, "domains": ", ".join(s.domains), "runs": s.runs, "checkpoints": s.checkpoints,
               "runner": s.runner} for s in studies], hide_index=True)
name = st.selectbox("Study", [s.name for s in studies])
st.dataframe(store.latest_checkpoints(name), hide_index=True)
