"""Scaling: the optimal mixture at each model size / token budget, from the GP and from
AutoScale's extrapolation side by side, with the predicted loss at each and the point where the
small-scale optimum stops being optimal."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import common
from engine.plots import ScalePoint, human, plot_scaling, scaling_table

st.title("Scaling")


def scale_points(cfg, runs) -> list[ScalePoint]:
    """Each model size on offer at its longest step count, plus the target (smallest first)."""
    pts = {}
    for s in cfg.scales:
        pts[s.model_params] = max(s.steps)
    if not pts and len(runs):
        for mp, g in runs.groupby("model_params"):
            pts[int(mp)] = int(g["steps"].max()) if g["steps"].notna().any() else None
    if cfg.target:
        pts[cfg.target.model_params] = cfg.target.steps or pts.get(cfg.target.model_params)
    return [ScalePoint(mp, st_, cfg.tokens_for(st_) if st_ is not None else None) for mp, st_ in sorted(pts.items())]


@st.cache_resource(show_spinner=False, max_entries=16)
def _table(path: str, study: str, version: int, models: tuple[str, ...], objective: str, direction: str,
           points: tuple[tuple, ...]):
    cfg = common._store(path).get_config(study)
    fitted = {}
    errors = {}
    for m in models:
        try:
            fitted[m] = common._fitted(path, study, version, m, objective)
        except Exception as exc:  # noqa: BLE001 - show the message, keep the other model
            errors[m] = str(exc)
    table, errs = scaling_table(fitted, [ScalePoint(*p) for p in points], list(cfg.domains), bounds=cfg.bounds_array(),
                                direction=direction)
    return table, {**errors, **errs}


def body() -> None:
    name = common.require_study()
    cfg = common.config(name)
    runs = common.runs(name)
    st.caption(f"Study **{name}**")
    if runs.empty:
        st.info("No results yet, so no model can say how the optimum moves with scale.")
        return
    models = common.available_models()
    points = scale_points(cfg, runs)
    st.markdown("Scales: " + ", ".join(p.label for p in points))
    preferred = [m for m in ("mfms-gp", "autoscale") if m in models] or models[:2]
    c = st.columns([2, 1])
    chosen = c[0].multiselect("Models side by side", models, default=preferred, key="scaling_models")
    objective = c[1].selectbox("Objective", common.objective_options(runs, cfg.objective), key="scaling_objective")
    if not chosen:
        st.info("Pick at least one model.")
        return
    pts = tuple((p.model_params, p.steps, p.tokens) for p in points)
    direction = cfg.direction_for(objective)
    args = (common.db_path(), name, common.results_key(name), tuple(chosen), objective, direction, pts)
    out = common.background(("scaling",) + args,
                            f"Fitting {', '.join(chosen)} and searching the optimum at {len(points)} scales",
                            _table, *args)
    if out is None:
        return
    table, errors = out
    for m, msg in errors.items():
        st.warning(f"{m}: {msg}")
    if table.empty:
        return
    st.plotly_chart(plot_scaling(table, list(cfg.domains), objective=objective), key="scaling_chart")
    for m, t in table.groupby("model", sort=False):
        shifted = t[t["shifted"]]
        if len(shifted):
            first = shifted.iloc[0]
            st.markdown(f"**{m}**: the optimum of the smallest scale stops being optimal from **{first['scale']}** "
                        f"(predicted {first['small_pred']:.4f} vs {first['pred_mean']:.4f} ± {first['pred_std']:.3g} "
                        "for that scale's own optimum).")
        else:
            st.markdown(f"**{m}**: the smallest scale's optimum stays within one std of optimal at every scale shown.")
    show = table.drop(columns=["shifted"]).copy()
    for c in ("pred_mean", "pred_std", "small_pred", "regret"):
        show[c] = show[c].round(6)
    show["model_params"] = show["model_params"].map(human)
    st.dataframe(show, hide_index=True, width="stretch")


common.run_page(body)
