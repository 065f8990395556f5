"""Landscape: the predicted objective (and its std) over mixtures at one model size and length,
from a chosen loss model, with the observed runs on top and the predicted optimum marked: a line
for two domains, a ternary map for three, a 2-D slice for more."""

from __future__ import annotations

import streamlit as st

from app import common
from engine.plots import (
    human,
    line_grid,
    observed_at,
    plot_line,
    plot_parallel_coordinates,
    plot_slice,
    plot_ternary,
    predict_grid,
    scale_label,
    simplex_grid,
    slice_grid,
    with_objective,
)
from engine.scales import default_length, length_choices

st.title("Landscape")


@st.cache_resource(show_spinner=False, max_entries=32)
def _landscape(path, study, version, model, objective, direction, mp, steps, tokens, res, xy):
    """(fitted model, optimum, predicted grid) at one scale; cached per data_version."""
    fitted = common._fitted(path, study, version, model, objective)
    opt = common._optimum(path, study, version, model, objective, direction, int(mp), steps, tokens)
    domains = list(fitted.domains_)
    if len(domains) == 2:
        grid = predict_grid(fitted, line_grid(domains, 4 * res), mp, steps=steps, tokens=tokens)
    elif xy[0] is None:
        grid = predict_grid(fitted, simplex_grid(domains, res), mp, steps=steps, tokens=tokens)
    else:
        grid = predict_grid(fitted, slice_grid(domains, xy[0], xy[1], opt.weights, res + 1), mp,
                            steps=steps, tokens=tokens)
    return fitted, opt, grid


def draw(out, domains, model, objective, mp, steps, tokens, obs, direction, runs) -> None:
    fitted, opt, grid = out
    label = scale_label(mp, steps, tokens)
    m = st.columns(4)
    common.metric(m[0], "Predicted optimum", f"{opt.pred_mean:.4f}", f"± {opt.pred_std:.3g} (1 std)")
    best = (obs["objective"].min() if direction == "minimize" else obs["objective"].max()) if len(obs) else None
    common.metric(m[1], "Best observed here", "-" if best is None else f"{best:.4f}",
                  f"{common.count(len(obs))} runs at this size" if len(obs) else "no run at this size")
    # the fit read exactly the checkpoints of ``runs`` (the job is keyed by the results): say
    # which of those runs are finished, and which are still running (or failed) with what they measured so far
    states = runs.groupby("state")["trial_id"].nunique() if len(runs) else {}
    done = int(states.get("done", 0)) if len(runs) else 0
    partial = ", ".join(f"{common.count(n)} {s}" for s, n in dict(states).items() if s != "done")
    fit_s = getattr(fitted, "fit_seconds_", None)
    common.metric(m[2], "Fitted on finished runs", common.count(done),
                  " · ".join(x for x in ((f"+ {partial} (checkpoints so far)" if partial else ""),
                                         (f"{fit_s:.1f} s fit" if fit_s is not None else "")) if x) or None,
                  help="The model is fitted on every stored checkpoint: those of finished runs, and those so "
                       "far of running or failed ones (counted apart).")
    m[3].markdown("**Optimum mixture**  \n" + "  \n".join(f"{d}: {w:.3f}" for d, w in opt.weights.items()))
    titles = {v: f"{'Predicted' if v == 'pred_mean' else 'Std of predicted'} {objective} at {label} ({model})"
              for v in ("pred_mean", "pred_std")}
    if len(domains) == 2:
        st.plotly_chart(plot_line(grid, domains, objective=objective, observed=obs, optimum=opt.weights,
                                  optimum_value=opt.pred_mean,
                                  title=f"Predicted {objective} ± 1 std at {label} ({model})"), key="land_line")
        return
    if len(domains) == 3:
        figs = [plot_ternary(grid, domains, value=v, objective=objective, observed=obs, optimum=opt.weights,
                             direction=direction, title=titles[v]) for v in ("pred_mean", "pred_std")]
    else:
        x_dom, y_dom = st.session_state["land_x"], st.session_state["land_y"]
        rest = [d for d in domains if d not in (x_dom, y_dom)]
        note = (f"{', '.join(rest)} share the rest in the optimum's ratio "
                + ":".join(f"{opt.weights[d]:.2f}" for d in rest) + "; runs drawn at their own weights")
        figs = [plot_slice(grid, x_dom, y_dom, value=v, objective=objective, observed=obs, optimum=opt.weights,
                           direction=direction, rest_note=note, title=titles[v]) for v in ("pred_mean", "pred_std")]
    left, right = st.columns(2)
    left.plotly_chart(figs[0], key="land_mean")
    right.plotly_chart(figs[1], key="land_std")


def body() -> None:
    name = common.require_study()
    cfg = common.config(name)
    runs = common.runs(name)
    domains = list(cfg.domains)
    st.caption(f"Study **{name}**: {len(domains)} domains ({', '.join(domains)})")
    common.live_counts(name, lambda counts: st.caption("Runs: " + common.counts_text(counts)))
    if runs.empty:
        st.info("No results yet, so there is no landscape to predict. Import runs or run trials first.")
        return
    models = common.available_models()
    axis, choices = length_choices(cfg, runs)
    c = st.columns([1.1, 1.2, 1, 1, 1])
    model = c[0].selectbox("Loss model", models, key="land_model")
    objective = c[1].selectbox("Objective", common.objective_options(runs, cfg.objective), key="land_objective")
    sizes = list(choices)
    tgt = cfg.target.model_params if cfg.target else sizes[-1]
    mp = c[2].selectbox("Model size", sizes, index=sizes.index(tgt) if tgt in sizes else len(sizes) - 1,
                        format_func=lambda x: f"{human(x)} params", key="land_size")
    lengths = choices.get(mp) or []
    if lengths:
        default = default_length(cfg, mp, lengths)
        length = c[3].selectbox("Steps" if axis == "steps" else "Tokens", lengths, index=lengths.index(default),
                                format_func=lambda x: x.label, key="land_length",
                                help="Training lengths on offer or observed at this size.")
        steps, tokens = length.steps, length.tokens
    else:
        c[3].caption("No training length known at this size.")
        steps = tokens = None
    res = c[4].select_slider("Grid", options=[20, 30, 40, 60], value=40, key="land_res",
                             help="Points per side of the mixture grid (finer is slower for the GP).")
    direction = cfg.direction_for(objective)
    obs = observed_at(with_objective(runs, objective), mp, steps=steps, tokens=tokens)
    x_dom = y_dom = None
    if len(domains) > 3:
        s = st.columns([1, 1, 3])
        x_dom = s[0].selectbox("Horizontal: weight of", domains, index=0, key="land_x")
        y_dom = s[1].selectbox("Vertical: weight of", [d for d in domains if d != x_dom], index=0, key="land_y")
    with common.guard(f"fitting {model}"):  # a failed fit still leaves the observed runs below
        model_section(name, runs, domains, model, objective, mp, steps, tokens, res, x_dom, y_dom, obs, direction)
    st.plotly_chart(plot_parallel_coordinates(runs, domains, objective, direction=direction), key="land_parcoords")


def model_section(name, runs, domains, model, objective, mp, steps, tokens, res, x_dom, y_dom, obs, direction):
    xy = (x_dom, y_dom) if len(domains) > 3 else (None, None)
    key = common.results_key(name)
    out = common.background(
        ("landscape", common.db_path(), name, key, model, objective, direction, mp, steps, tokens, res, xy),
        f"Fitting {model} on {runs['trial_id'].nunique():,} runs and predicting {objective} over the mixtures",
        _landscape, common.db_path(), name, key, model, objective, direction, mp, steps, tokens, res, xy)
    if out is not None:
        draw(out, domains, model, objective, mp, steps, tokens, obs, direction, runs)


common.run_page(body)
