"""Backtest: which model to trust at the target. Each model is fitted on the study's smaller sizes
and asked for the larger ones; the page shows how right it was (level, ranking, regret, interval
coverage), the recommended model and mixture, and how far the target lies beyond the runs. The
Export page exports this recommendation by default."""

from __future__ import annotations

import streamlit as st

from app import common
from engine.plots import backtest_table, human, plot_backtest, scale_label

st.title("Backtest")


@st.cache_resource(show_spinner=False, max_entries=8)
def _backtest(path: str, study: str, results: str, models: tuple[str, ...]):
    from engine.models.backtest import backtest

    s = common._store(path)
    cfg = s.get_config(study)
    return backtest(s.runs_frame(study), cfg.objective, models=models, domains=list(cfg.domains),
                    tokens_per_step=cfg.tokens_per_step, direction=cfg.direction_for(cfg.objective))


def body() -> None:
    from engine.models.auto import CANDIDATES

    name = common.require_study()
    cfg = common.config(name)
    if cfg.target is None:
        st.warning("This study has no [target]: add one (`mixplan study edit`) to get a recommendation.")
        return
    runs = common.runs(name)
    if runs.empty:
        st.info("No results yet: import runs or run some trials first.")
        return
    sizes = sorted(runs["model_params"].unique())
    st.caption(f"Study **{name}** · objective `{cfg.objective}` · target "
               f"{scale_label(cfg.target.model_params, cfg.target.steps, cfg.target.tokens)} · runs at "
               + ", ".join(human(s) for s in sizes))
    key = (common.db_path(), name, common.results_key(name))
    rec = common.recommendation(name)
    if rec is not None:
        st.subheader(f"Recommended: {rec.model}")
        st.write(rec.reason)
        st.info(rec.extrapolation.describe())
        c = st.columns(3)
        c[0].metric(f"Predicted {rec.objective} at the target", f"{rec.pred_mean:.4f}")
        c[1].metric("± std (calibrated)", f"{rec.pred_std:.3g}")
        c[2].metric("the model's own std", f"{rec.pred_std_raw:.3g}")
        st.caption("Mixture: " + common.mixture_text(rec.weights) + ". `mixplan optimum`, `mixplan export` and "
                   "the Export page give this same mixture.")
    if len(sizes) < 2:
        st.info("All runs have one model size: nothing larger to hold out, so no backtest across sizes.")
        return
    models = tuple(st.multiselect("Models to compare", list(CANDIDATES) + ["autoscale"], list(CANDIDATES),
                                  key="backtest_models"))
    if not models:
        return
    bt = common.background(("backtest",) + key + (models,),
                           "Backtesting: fitting each model on the smaller sizes", _backtest, *key, models)
    if bt is None:
        return
    st.dataframe(backtest_table(bt.summary), hide_index=True, width="stretch")
    st.caption("Averaged over every (fit <= cut, held-out size). Level error: mean |predicted - observed| / "
               "observed. Regret: observed value of the mixture the model predicted best minus the best observed. "
               "Coverage of the std mixplan reports (widened by an inner backtest on the fitted sizes; a calibrated "
               "Gaussian holds 68% / 95%).")
    shown = st.selectbox("Predicted vs observed", list(models),
                         index=list(models).index(rec.model) if rec is not None and rec.model in models else 0,
                         key="backtest_plot_model")
    st.plotly_chart(plot_backtest(bt.predictions, shown, objective=cfg.objective), key="backtest_plot")
    with st.expander("Every held-out size"):
        st.dataframe(bt.rows, hide_index=True, width="stretch")


common.run_page(body)
