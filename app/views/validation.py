"""Validation: does the recommended mixture win where nothing was trained? Real runs at the target
(held out from every fit) against the model's predictions: predicted vs observed with the
interval, each mixture's loss curve, the AutoScale speed-up against uniform, and the verdict in
words (engine.validation does the work; this page lays it out)."""

from __future__ import annotations

import streamlit as st

from app import common
from engine.plots import human, plot_validation, plot_validation_curves
from engine.validation import verdict

st.title("Validation")


@st.cache_resource(show_spinner=False, max_entries=8)
def _verdict(path: str, study: str, version: int):
    return verdict(common._store(path), study)


def body() -> None:
    name = common.require_study()
    st.caption(f"Study **{name}**")
    store = common._store(common.db_path())
    summary = next((s for s in store.list_studies() if s.name == name), None)
    if summary is None or not summary.validation_runs:
        st.info("This study has no validation runs: runs at the target scale, held out from every model fit, "
                "that check whether the recommended mixture really wins there. The bundled `demo` study has "
                "them (`mixplan demo build --only validation` trains them).")
        return
    args = (common.db_path(), name, common.version(name))
    v = common.background(("validation",) + args, "Fitting the model the recommendation came from", _verdict, *args)
    if v is None:
        return
    st.markdown(f"**{summary.validation_runs} validation runs** at the target ({human(v.target[0])} params, "
                f"{v.target[1]} steps: **{v.scale_factor:.0f}x** the largest size the models fit on, "
                f"{human(v.largest_observed)}), held out from the {v.fit_runs} runs every model fits on. "
                f"Predictions by **{v.model}**, the model behind the study's recommended mixture.")
    rec = next((a for a in v.arms if a.current and a.is_("recommended") and a.observed), None)
    lost = rec is not None and "loses" in v.summary
    (st.warning if lost else st.success if rec is not None else st.info)(v.summary)
    table = v.table()
    show = table.rename(columns={"pred_mean": "predicted", "pred_std": "pred std", "observed_mean": "observed",
                                 "observed_spread": "seed half-range", "z": "z (obs - pred) / std",
                                 "speedup_vs_uniform": "speed-up vs uniform",
                                 "steps_to_uniform_final": "steps to uniform's final"})
    st.dataframe(show.round(4), hide_index=True, width="stretch", key="validation_table")
    st.caption("Speed-up vs uniform (AutoScale): the steps the uniform mixture needs to reach its own final loss, "
               "divided by the steps this mixture needs to reach that loss, from the checkpoints (seed means, "
               "interpolated linearly); empty where it never reaches it. A mixture trained for an earlier "
               "recommendation keeps its runs and is labelled 'previous'.")
    c = st.columns(2)
    c[0].plotly_chart(plot_validation(v), key="validation_chart")
    c[1].plotly_chart(plot_validation_curves(v), key="validation_curves")


common.run_page(body)
