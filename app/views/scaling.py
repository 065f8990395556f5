"""Scaling: the optimal mixture at each model size, or at each training budget of one size (up to
10x the longest run, marked as extrapolation), from the GP and from AutoScale's extrapolation side
by side, with the predicted loss at each and the point where the smallest scale's optimum stops
being optimal."""

from __future__ import annotations

import streamlit as st

from app import common
from engine.plots import ScalePoint, budget_points, human, plot_scaling, scaling_table, size_points
from engine.plots.scaling import REL_TOL

st.title("Scaling")
AXES = {"sizes": "Model sizes at their longest run", "budgets": "Token budgets at a fixed size"}


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
    preferred = [m for m in ("mfms-gp", "autoscale") if m in models] or models[:2]
    c = st.columns([2, 1, 1.4, 1])
    chosen = c[0].multiselect("Models side by side", models, default=preferred, key="scaling_models")
    objective = c[1].selectbox("Objective", common.objective_options(runs, cfg.objective), key="scaling_objective")
    axis = c[2].radio("Scales", list(AXES), format_func=AXES.get, key="scaling_axis", horizontal=False)
    if axis == "budgets":
        sizes = sorted(int(x) for x in runs["model_params"].unique())
        if cfg.target is not None and int(cfg.target.model_params) not in sizes:
            sizes.append(int(cfg.target.model_params))
        default = int(cfg.target.model_params) if cfg.target else sizes[-1]
        mp = c[3].selectbox("Model size", sizes, index=sizes.index(default), format_func=lambda x: f"{human(x)} params",
                            key="scaling_size")
        points = budget_points(cfg, runs, mp)
        unit = "tokens" if points and points[0].axis == "tokens" else "steps"
        st.caption(f"Budgets in {unit} at {human(mp)} params: those on offer or run, then 2x, 5x and 10x the "
                   "longest run of the study (marked *extrap.*: the models extrapolate there).")
    else:
        points = size_points(cfg, runs)
    if len(points) < 2:
        st.info("Fewer than two scales to compare: add [[scales]] to the config or run more sizes / lengths.")
        return
    st.markdown("Scales: " + ", ".join(p.label for p in points))
    if not chosen:
        st.info("Pick at least one model.")
        return
    direction = cfg.direction_for(objective)
    pts = tuple((p.model_params, p.steps, p.tokens, p.extrapolated, p.axis) for p in points)
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
    first_label = points[0].label
    for m, t in table.groupby("model", sort=False):
        shifted = t[t["shifted"]]
        if len(shifted):
            first = shifted.iloc[0]
            st.markdown(f"**{m}**: the optimum at {first_label} stops being optimal from **{first['scale']}** "
                        f"(predicted {first['small_pred']:.4f} vs {first['pred_mean']:.4f} ± {first['pred_std']:.3g} "
                        f"for that scale's own optimum; regret {first['regret']:.3g} > tolerance "
                        f"{first['tolerance']:.3g}).")
        else:
            st.markdown(f"**{m}**: the optimum at {first_label} stays within tolerance of optimal at every scale "
                        "shown.")
    st.caption(f"Tolerance: max(1 std of the prediction, {REL_TOL:.1%} of the predicted {objective}): a model's "
               "own std where it is wide, but never below half a percent, so a model whose std is tiny (AutoScale's "
               "bootstrap spread where its refits agree) does not flag regrets of 1e-6 as a shift.")
    show = table.drop(columns=["shifted"]).copy()
    for col in ("pred_mean", "pred_std", "small_pred", "regret", "tolerance"):
        show[col] = show[col].round(6)
    for col in (c for c in show.columns if c.startswith("w_")):
        show[col] = show[col].round(3)
    st.dataframe(show, hide_index=True, width="stretch", column_config=common.table_config(show))


common.run_page(body)
