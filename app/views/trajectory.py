"""Trajectory: the incumbent's value at the target fidelity against cumulative cost. Benchmark
studies (one study per strategy, same domains) can be drawn together: one curve per strategy and
the speed-up of each over the reference."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from app import common
from engine.plots import plot_trajectory, scale_label, speedups, trajectory_frame
from engine.trajectory import trajectory

st.title("Trajectory")


@st.cache_data(show_spinner=False, max_entries=32)
def _entries(path: str, study: str, version: int) -> pd.DataFrame:
    out = trajectory(common._store(path), study)
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


def curve_name(study: str) -> str:
    """'study (strategy)' from the strategy that proposed most of its trials."""
    t = common.trials(study)
    s = t["strategy"].dropna()
    s = s[s != "manual"]
    return f"{study} ({s.mode().iloc[0]})" if len(s) else study


def body() -> None:
    name = common.require_study()
    cfg = common.config(name)
    st.caption(f"Study **{name}**")
    siblings = []
    for other in common.study_names():
        if other != name and tuple(common.config(other).domains) == tuple(cfg.domains):
            siblings.append(other)
    others = st.multiselect("Compare with studies of the same domains (e.g. one study per strategy of a benchmark)",
                            siblings, key="traj_compare", disabled=not siblings,
                            placeholder="no other study with these domains" if not siblings else "pick studies")
    frames = []
    for s in [name] + list(others):
        args = (common.db_path(), s, common.version(s))
        out = common.background(("trajectory",) + args, f"Computing the incumbent after each finished trial of {s}",
                                _entries, *args)
        if out is None:
            return
        df = trajectory_frame(out)
        if len(df):
            df["strategy"] = curve_name(s)
            frames.append(df)
    if not frames:
        st.info("No finished trial yet: the trajectory starts with the first result.")
        return
    df = pd.concat(frames, ignore_index=True)
    label = scale_label(cfg.target.model_params, cfg.target.steps, cfg.target.tokens) if cfg.target else ""
    st.plotly_chart(plot_trajectory(df, objective=cfg.objective, target_label=label,
                                    budget=cfg.budget if not others else None), key="trajectory_chart")
    if df["strategy"].nunique() > 1:
        st.markdown("**Speed-up**: the cost each curve needs to reach the reference's final incumbent "
                    "(reference: a `random` curve if there is one, else the first).")
        st.dataframe(speedups(df, direction=cfg.direction_for(cfg.objective)), hide_index=True)
    mine = df[df["strategy"] == curve_name(name)]
    last = mine.iloc[-1]
    if isinstance(last.get("incumbent_weights"), dict):
        src = last.get("incumbent_source")
        st.markdown("**Current incumbent**: " + common.mixture_text(last["incumbent_weights"])
                    + (f" ({'predicted' if src != 'observed' else 'observed'} {last['incumbent_pred']:.4f} at the target)"
                       if pd.notna(last.get("incumbent_pred")) else ""))
    show = mine.drop(columns=[c for c in ("weights", "incumbent_weights", "strategy") if c in mine.columns])
    st.dataframe(show, hide_index=True, width="stretch", height=260,
                 column_config={"model_params": st.column_config.NumberColumn("params", format="compact"),
                                "tokens": st.column_config.NumberColumn("tokens", format="compact")})


common.run_page(body)
