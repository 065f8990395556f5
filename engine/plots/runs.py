"""Plots of observed runs: loss along training, and parallel coordinates of final checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.plots._common import (
    TEMPLATE,
    VALUE_SCALE,
    WEIGHT_SCALE,
    colors_for,
    empty_figure,
    final_checkpoints,
    human,
    length_axis,
    weight_col,
    with_objective,
)


def plot_loss_curves(runs: pd.DataFrame, objective: str = "mean_loss", color_domain: str | None = None, *,
                     n_bins: int = 10, log_x: bool = True, height: int = 460) -> go.Figure:
    """Objective vs tokens (or steps) per run, each run's line coloured by ``color_domain``'s weight.

    Built for large studies: runs are grouped into ``n_bins`` weight bins drawn as one WebGL trace
    each (lines separated by gaps), plus one marker per run at its last checkpoint that carries
    the hover text. 1,000 runs x 20 checkpoints draw in well under a second.
    """
    df = with_objective(runs, objective)
    axis = length_axis(df)
    if df.empty or axis is None:
        return empty_figure("no checkpoints with tokens or steps to draw" if not df.empty else "no runs yet")
    key = "trial_id" if "trial_id" in df.columns else "run_id"
    df = df.sort_values([key, axis], kind="stable")
    wc = weight_col(color_domain) if color_domain else None
    if wc is None or wc not in df.columns:
        wc = None
    cvals = df[wc].to_numpy(dtype=float) if wc else np.zeros(len(df))
    lo, hi = (0.0, 1.0)
    if wc:
        lo, hi = float(np.nanmin(cvals)), float(np.nanmax(cvals))
        if hi - lo < 1e-9:
            lo, hi = max(0.0, lo - 0.05), min(1.0, hi + 0.05)
    fig = go.Figure()
    edges = np.linspace(lo, hi, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, cvals, side="right") - 1, 0, n_bins - 1) if wc else np.zeros(len(df), int)
    x_all, y_all = df[axis].to_numpy(dtype=float), df["objective"].to_numpy(dtype=float)
    keys = df[key].to_numpy()
    for b in np.unique(bins):
        idx = np.flatnonzero(bins == b)
        # a NaN between runs breaks the line
        brk = np.flatnonzero(keys[idx][1:] != keys[idx][:-1]) + 1
        xs = np.insert(x_all[idx], brk, np.nan)
        ys = np.insert(y_all[idx], brk, np.nan)
        color = colors_for([0.5 * (edges[b] + edges[b + 1])], WEIGHT_SCALE, lo, hi)[0] if wc else "#636EFA"
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line={"color": color, "width": 1.2},
                                   opacity=0.75, hoverinfo="skip", showlegend=False))
    last = df.groupby(key, sort=False).tail(1)
    hover = [f"run {r}<br>{human(m)} params<br>{axis} {human(x)}<br>{objective} {y:.4f}"
             + (f"<br>w_{color_domain} {w:.3f}" if wc else "")
             for r, m, x, y, w in zip(last["run_id"], last["model_params"], last[axis], last["objective"],
                                      last[wc] if wc else np.zeros(len(last)))]
    marker = {"size": 6, "line": {"width": 0.5, "color": "#333"}}
    if wc:
        marker.update(color=last[wc].to_numpy(dtype=float), colorscale=WEIGHT_SCALE, cmin=lo, cmax=hi,
                      colorbar={"title": {"text": f"weight of<br>{color_domain}"}}, showscale=True)
    fig.add_trace(go.Scattergl(x=last[axis], y=last["objective"], mode="markers", marker=marker,
                               text=hover, hovertemplate="%{text}<extra></extra>", name="last checkpoint",
                               showlegend=False))
    n_runs = df[key].nunique()
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      title=f"{objective} along training ({n_runs} runs"
                            + (f", coloured by the weight of {color_domain})" if wc else ")"),
                      xaxis={"title": axis, "type": "log" if log_x else "linear"},
                      yaxis={"title": objective})
    return fig


def plot_parallel_coordinates(runs: pd.DataFrame, domains: list[str], objective: str = "mean_loss", *,
                              direction: str = "minimize", height: int = 420) -> go.Figure:
    """Parallel coordinates of each run's last checkpoint: its weights, size, length and objective
    (lines coloured by the objective)."""
    df = final_checkpoints(with_objective(runs, objective))
    if df.empty:
        return empty_figure("no finished runs yet")
    dims = []
    for d in domains:
        c = weight_col(d)
        if c in df.columns:
            dims.append({"label": d, "values": df[c].to_numpy(dtype=float), "range": [0, 1]})
    if df["model_params"].nunique() > 1:
        dims.append({"label": "log10 params", "values": np.log10(df["model_params"].to_numpy(dtype=float))})
    axis = length_axis(df)
    if axis and df[axis].nunique() > 1:
        dims.append({"label": f"log10 {axis}", "values": np.log10(df[axis].to_numpy(dtype=float))})
    y = df["objective"].to_numpy(dtype=float)
    dims.append({"label": objective, "values": y})
    scale = VALUE_SCALE if direction == "minimize" else VALUE_SCALE + "_r"
    fig = go.Figure(go.Parcoords(line={"color": y, "colorscale": scale, "showscale": True,
                                       "colorbar": {"title": {"text": objective}, "x": 1.06}},
                                 dimensions=dims))
    # the colorbar sits clear of the last axis' tick labels, the axis names below the title
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 110, "t": 100, "b": 30},
                      title=f"Observed runs ({len(df)}): mixture, scale and {objective} at the last checkpoint")
    return fig
