"""Export: the chosen mixture for the target scale (the model's recommendation or any run) as
JSON, YAML, Megatron-LM blend, OLMo/Dolma mixture YAML or Hugging Face interleave probabilities,
each with its provenance. Every download is logged as an `export` event."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import common
from engine.export import FORMATS, MIME, SUFFIX, from_optimum, from_recommendation, from_run, log_export, render
from engine.plots import human, scale_label
from engine.plots._common import TEMPLATE, domain_color

st.title("Export")
BUTTONS = {"json": "JSON", "yaml": "YAML", "megatron": "Megatron", "olmo": "OLMo", "hf": "HF"}
LABELS = {"json": "JSON", "yaml": "YAML", "megatron": "Megatron-LM --data-path", "olmo": "OLMo / Dolma mixture",
          "hf": "Hugging Face interleave_datasets"}


def _log(ex, fmt: str) -> None:
    try:
        log_export(common.store(), ex, fmt, actor="app")
    except Exception:  # noqa: BLE001 - a failed log line must not break the download
        common.log.exception("could not log the export")


def mixture_bar(weights: dict[str, float]) -> go.Figure:
    fig = go.Figure()
    for i, (d, w) in enumerate(weights.items()):
        fig.add_trace(go.Bar(x=[w], y=["mixture"], orientation="h", name=d, marker_color=domain_color(i),
                             text=f"{d} {w:.3f}", textposition="inside", hovertemplate=f"{d} %{{x:.4f}}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, barmode="stack", height=110, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"range": [0, 1], "visible": False}, yaxis={"visible": False}, showlegend=False)
    return fig


def cli_command(study: str, fmt: str, prov, prefix: str) -> str:
    """The `mixplan export` line that writes the same export (the format shown, this source)."""
    import shlex

    parts = ["mixplan", "export", "--study", study, "--format", fmt]
    if prov.source == "optimum":
        parts += [] if prov.recommended else ["--model", str(prov.model)]
    else:
        parts += ["--run", str(prov.run_id)]
    if prefix != "{domain}" and fmt in ("megatron", "olmo", "hf"):
        parts += ["--prefix", prefix]
    return " ".join(shlex.quote(p) for p in parts)


@st.cache_resource(show_spinner=False, max_entries=16)
def _recommend(path, study, version, model, objective, direction, mp, steps, tokens):
    """(fitted model, the data_version it was fitted at, its optimum at the target)."""
    fitted, data_version = common._fit(path, study, version, model, objective)
    return fitted, data_version, common._optimum(path, study, version, model, objective, direction, mp, steps, tokens)


def body() -> None:
    name = common.require_study()
    cfg = common.config(name)
    st.caption(f"Study **{name}**" + (f" · target {scale_label(cfg.target.model_params, cfg.target.steps, cfg.target.tokens)}"
                                      if cfg.target else ""))
    runs = common.runs(name)
    models = common.available_models()
    src = st.radio("Mixture to export", ["recommendation", "run"], horizontal=True, key="export_source",
                   format_func=lambda o: "The model's recommendation at the target" if o == "recommendation"
                   else "A run's mixture")
    ex = None
    if src == "recommendation":
        model = st.selectbox("Loss model", ["auto"] + [m for m in models if m != "auto"], key="export_model",
                             format_func=lambda m: "recommended (the Backtest page's choice)" if m == "auto" else m)
        t = cfg.target
        if t is None:
            st.warning("This study has no [target]; add one to its config to get a recommendation.")
            return
    if src == "recommendation" and model == "auto":
        rec = common.recommendation(name)
        if rec is None:
            return
        ex = from_recommendation(common.store(), name, rec)
    elif src == "recommendation":
        t = cfg.target
        tokens = t.tokens if t.tokens is not None else cfg.tokens_for(t.steps)
        args = (common.db_path(), name, common.results_key(name), model, cfg.objective,
                cfg.direction_for(cfg.objective))
        out = common.background(("export",) + args + (t.model_params, t.steps, tokens),
                                f"Fitting {model} and searching its optimum at the target", _recommend, *args,
                                t.model_params, t.steps, tokens)
        if out is None:
            return
        fitted, fit_version, opt = out
        ex = from_optimum(common.store(), name, model, fitted=fitted, optimum=opt, data_version=fit_version,
                          runs=runs[["run_id"]] if len(runs) else runs)
    else:
        trials = common.trials(name)
        if trials.empty:
            st.info("This study has no run yet.")
            return
        order = trials.sort_values("trial_id")

        def label(tid: int) -> str:
            r = order[order["trial_id"] == tid].iloc[0]
            extra = f" · {r['state']}" if r["state"] != "done" else ""
            return f"{r['run_id']} (trial {tid}, {human(r['model_params'])} params{extra})"

        tid = st.selectbox("Run", order["trial_id"].astype(int).tolist(), format_func=label, key="export_run")
        ex = from_run(common.store(), name, trial_id=int(tid))
    prov = ex.provenance
    c = st.columns(4)
    if prov.source == "optimum":
        c[0].metric("Recommended by" if prov.recommended else "Optimum predicted by", str(prov.model))
    else:
        c[0].metric("Mixture of run", str(prov.run_id))
    if prov.pred_mean is not None:
        common.metric(c[1], f"Predicted {prov.objective}", f"{prov.pred_mean:.4f}",
                      f"± {prov.pred_std:.3g} (1 std)" if prov.pred_std is not None else None)
    if prov.observed is not None:
        c[2].metric(f"Observed {prov.objective}", f"{prov.observed:.4f}")
    c[3].metric("Rests on", f"{common.count(prov.runs)} run{'s' if prov.runs != 1 else ''}",
                help="The runs with results the mixture rests on (the fit's, or the one run).")
    st.plotly_chart(mixture_bar(ex.weights), key="export_bar")
    if prov.extrapolation:
        st.info(prov.extrapolation)
    if prov.reason:
        st.caption("Why this model: " + prov.reason)
    prefix = st.text_input("Data path per domain ({domain} is replaced)", "{domain}", key="export_prefix",
                           help="Used by the Megatron, OLMo and Hugging Face formats, e.g. data/{domain}_text_document.")
    texts = {fmt: render(ex, fmt, prefix_template=prefix) for fmt in FORMATS}
    stem = f"{name}-{'optimum-' + str(prov.model) if prov.source == 'optimum' else prov.run_id}-mixture"
    b = st.columns(len(FORMATS))
    for i, fmt in enumerate(FORMATS):
        b[i].download_button(f"Download {BUTTONS[fmt]}",
                             texts[fmt], file_name=stem + SUFFIX[fmt] if fmt != "olmo" else stem + "-olmo.yaml",
                             mime=MIME[fmt], key=f"download_{fmt}", on_click=_log, args=(ex, fmt))
    tabs = st.tabs([LABELS[f] for f in FORMATS])
    for tab, fmt in zip(tabs, FORMATS):
        with tab:
            st.code(texts[fmt], language={"json": "json", "yaml": "yaml", "olmo": "yaml", "hf": "python"}.get(fmt))
            st.caption(f"The same from the command line: `{cli_command(name, fmt, prov, prefix)}`")


common.run_page(body)
