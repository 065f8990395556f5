"""Trajectory: the incumbent's value at the target fidelity against cumulative cost (per
strategy, with the speed-up, for benchmark studies)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from app import common
from engine.plots import plot_trajectory, scale_label, speedups, trajectory_frame

st.title("Trajectory")


@st.cache_data(show_spinner=False, max_entries=16)
def _entries(path: str, study: str, version: int) -> pd.DataFrame:
    fn = common.feature("engine.trajectory", "trajectory")
    out = fn(common._store(path), study)
    if isinstance(out, pd.DataFrame):
        return out
    rows = []
    for e in out or []:
        if dataclasses.is_dataclass(e):
            e = dataclasses.asdict(e)
        elif hasattr(e, "to_dict"):
            e = e.to_dict()
        rows.append(dict(e))
    return pd.DataFrame(rows)


def body() -> None:
    name = common.require_study()
    cfg = common.config(name)
    st.caption(f"Study **{name}**")
    if common.feature("engine.trajectory", "trajectory") is None:
        common.missing("The trajectory (incumbent at the target vs cumulative cost)", "engine.trajectory")
        trials = common.trials(name)
        done = trials[trials["state"] == "done"]
        st.caption(f"{len(done):,} finished trial(s), total cost {pd.to_numeric(done['cost'], errors='coerce').sum():,.4g}.")
        return
    with st.spinner("Computing the incumbent after each finished trial..."):
        df = trajectory_frame(_entries(common.db_path(), name, common.version(name)))
    if df.empty:
        st.info("No finished trial yet: the trajectory starts with the first result.")
        return
    label = scale_label(cfg.target.model_params, cfg.target.steps, cfg.target.tokens) if cfg.target else ""
    st.plotly_chart(plot_trajectory(df, objective=cfg.objective, target_label=label, budget=cfg.budget),
                    key="trajectory_chart")
    if "strategy" in df.columns and df["strategy"].nunique() > 1:
        st.markdown("**Speed-up**: cost each strategy needs to reach the reference strategy's final incumbent.")
        st.dataframe(speedups(df, direction=cfg.direction), hide_index=True)
    last = df.iloc[-1]
    if isinstance(last.get("incumbent_weights"), dict):
        st.markdown("**Current incumbent**: " + common.mixture_text(last["incumbent_weights"])
                    + (f" (predicted {last['incumbent_pred']:.4f} at the target)"
                       if pd.notna(last.get("incumbent_pred")) else ""))
    show = df.drop(columns=[c for c in ("weights", "incumbent_weights") if c in df.columns])
    st.dataframe(show, hide_index=True, width="stretch", height=260)


common.run_page(body)
