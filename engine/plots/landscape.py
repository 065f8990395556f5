"""The predicted loss landscape over mixtures at one scale.

Two domains: a line over the first domain's weight (the second takes the rest) with a band of
one std. Three domains: a ternary plot of the whole simplex. More: a 2-D slice in which two
domains vary and the others keep their ratio (by default the ratio of the predicted optimum).
Observed runs are drawn on top and the predicted optimum is marked. Grids come from
:func:`line_grid` / :func:`simplex_grid` / :func:`slice_grid`, predictions from
:func:`predict_grid` (any fitted :class:`engine.models.base.LossModel`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.plots._common import TEMPLATE, VALUE_SCALE, empty_figure, human, title_block, weight_col


def line_grid(domains: Sequence[str], resolution: int = 40) -> pd.DataFrame:
    """Every mixture of two domains on a regular grid of step 1/resolution (``w_*`` columns)."""
    if len(domains) != 2:
        raise ValueError("line_grid draws two domains; use simplex_grid for three, slice_grid for more.")
    x = np.linspace(0.0, 1.0, int(resolution) + 1)
    return pd.DataFrame({weight_col(domains[0]): x, weight_col(domains[1]): 1.0 - x})


def simplex_grid(domains: Sequence[str], resolution: int = 40) -> pd.DataFrame:
    """Every mixture of three domains on a regular grid of step 1/resolution (``w_*`` columns)."""
    if len(domains) != 3:
        raise ValueError("simplex_grid draws three domains; use line_grid for two, slice_grid for more.")
    n = int(resolution)
    rows = [(i / n, j / n, (n - i - j) / n) for i in range(n + 1) for j in range(n + 1 - i)]
    return pd.DataFrame(rows, columns=[weight_col(d) for d in domains])


def slice_grid(domains: Sequence[str], x_domain: str, y_domain: str, base: Mapping[str, float],
               resolution: int = 41) -> pd.DataFrame:
    """Mixtures where ``x_domain`` and ``y_domain`` take every pair (x, y) with x + y <= 1 on a
    grid and the remaining domains share 1 - x - y in the ratio they have in ``base``.
    Columns: ``w_*`` plus ``x`` and ``y``."""
    if x_domain == y_domain:
        raise ValueError("pick two different domains for the slice.")
    rest = [d for d in domains if d not in (x_domain, y_domain)]
    r = np.array([max(float(base.get(d, 0.0)), 0.0) for d in rest])
    r = r / r.sum() if r.sum() > 1e-12 else np.full(len(rest), 1.0 / max(len(rest), 1))
    g = np.linspace(0.0, 1.0, int(resolution))
    X, Y = np.meshgrid(g, g, indexing="xy")
    x, y = X.ravel(), Y.ravel()
    ok = x + y <= 1.0 + 1e-9
    x, y = x[ok], y[ok]
    left = np.clip(1.0 - x - y, 0.0, 1.0)
    df = pd.DataFrame({weight_col(x_domain): x, weight_col(y_domain): y})
    for d, share in zip(rest, r):
        df[weight_col(d)] = left * share
    df = df[[weight_col(d) for d in domains]]
    df["x"], df["y"] = x, y
    return df


def predict_grid(model, grid: pd.DataFrame, model_params: int, *, steps: float | None = None,
                 tokens: float | None = None) -> pd.DataFrame:
    """``grid`` with ``pred_mean`` and ``pred_std`` from a fitted loss model at one scale."""
    q = grid.copy()
    q["model_params"] = int(model_params)
    if steps is not None:
        q["steps"] = float(steps)
    if tokens is not None:
        q["tokens"] = float(tokens)
    mean, std = model.predict(q)
    out = grid.copy()
    out["pred_mean"], out["pred_std"] = np.asarray(mean, float), np.asarray(std, float)
    return out


def _value_label(value: str, objective: str) -> str:
    return f"predicted {objective}" if value == "pred_mean" else f"std of predicted {objective}"


def plot_line(grid: pd.DataFrame, domains: Sequence[str], *, objective: str = "loss",
              observed: pd.DataFrame | None = None, optimum: Mapping[str, float] | None = None,
              optimum_value: float | None = None, title: str | None = None, height: int = 460) -> go.Figure:
    """Two domains: the predicted objective (``grid`` from :func:`line_grid` through
    :func:`predict_grid`) against the first domain's weight, with a band of one std; observed runs
    (``w_*`` and ``objective`` columns, optional ``run_id``) as dots and the optimum starred (at
    ``optimum_value``, else at the predicted mean nearest it)."""
    if len(domains) != 2:
        return empty_figure("the line plot needs exactly two domains")
    a, b = domains
    g = grid.sort_values(weight_col(a))
    x = g[weight_col(a)].to_numpy(dtype=float)
    mean = g["pred_mean"].to_numpy(dtype=float)
    std = g["pred_std"].to_numpy(dtype=float) if "pred_std" in g.columns else np.zeros(len(g))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([mean + std, (mean - std)[::-1]]),
                             fill="toself", fillcolor="rgba(99,110,250,0.18)", line={"width": 0},
                             name="± 1 std", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=f"predicted {objective}",
                             line={"color": "#636EFA", "width": 2.5}, customdata=np.column_stack([1 - x, std]),
                             hovertemplate=f"{a} %{{x:.3f}}, {b} %{{customdata[0]:.3f}}<br>predicted %{{y:.4f}}"
                                           " ± %{customdata[1]:.3g}<extra></extra>"))
    if observed is not None and len(observed):
        text = _observed_text(observed)
        fig.add_trace(go.Scatter(
            x=observed[weight_col(a)], y=observed["objective"], mode="markers", name="observed runs", text=text,
            hovertemplate="%{text}<extra></extra>",
            marker={"size": 8, "color": "white", "line": {"width": 1.5, "color": "black"}}))
    if optimum:
        xo = float(optimum[a])
        yo = float(optimum_value) if optimum_value is not None else float(np.interp(xo, x, mean))
        fig.add_trace(go.Scatter(
            x=[xo], y=[yo], mode="markers+text", name="predicted optimum", text=["optimum"],
            textposition="top center",
            marker={"size": 18, "color": "red", "symbol": "star", "line": {"width": 1, "color": "black"}}))
    text, top = title_block(title or f"predicted {objective}", width=100)
    fig.update_layout(
        template=TEMPLATE, height=height, title=text,
        margin={"l": 60, "r": 20, "t": max(70, top), "b": 50}, legend={"orientation": "h", "y": -0.2},
        xaxis={"title": f"weight of {a}  ({b} = 1 - {a})", "range": [0, 1]},
        yaxis={"title": objective})
    return fig


def plot_ternary(grid: pd.DataFrame, domains: Sequence[str], *, value: str = "pred_mean",
                 objective: str = "loss", observed: pd.DataFrame | None = None,
                 optimum: Mapping[str, float] | None = None, title: str | None = None,
                 direction: str = "minimize", height: int = 520) -> go.Figure:
    """A ternary map of ``grid[value]`` over three domains' mixtures, observed runs on top
    (``observed``: ``w_*`` and ``objective`` columns, optional ``run_id``) and the optimum starred."""
    if len(domains) != 3:
        return empty_figure("the ternary plot needs exactly three domains")
    a, b, c = (weight_col(d) for d in domains)
    v = grid[value].to_numpy(dtype=float)
    scale = VALUE_SCALE if (value == "pred_std" or direction == "minimize") else VALUE_SCALE + "_r"
    n = int(round((np.sqrt(8 * len(grid) + 1) - 3) / 2)) or 1  # grid resolution
    fig = go.Figure()
    fig.add_trace(go.Scatterternary(
        a=grid[a], b=grid[b], c=grid[c], mode="markers", name=_value_label(value, objective),
        marker={"symbol": "hexagon", "size": max(4, int(440 / n)), "color": v, "colorscale": scale,
                "showscale": True, "line": {"width": 0},
                "colorbar": {"title": {"text": "std" if value == "pred_std" else "predicted"}, "x": 1.02}},
        hovertemplate=f"{domains[0]} %{{a:.2f}}<br>{domains[1]} %{{b:.2f}}<br>{domains[2]} %{{c:.2f}}"
                      "<br>%{marker.color:.4f}<extra></extra>"))
    if observed is not None and len(observed):
        text = _observed_text(observed)
        fig.add_trace(go.Scatterternary(
            a=observed[a], b=observed[b], c=observed[c], mode="markers", name="observed runs", text=text,
            hovertemplate="%{text}<extra></extra>",
            marker={"size": 9, "color": "white", "line": {"width": 1.5, "color": "black"}, "symbol": "circle"}))
    if optimum:
        fig.add_trace(go.Scatterternary(
            a=[optimum[domains[0]]], b=[optimum[domains[1]]], c=[optimum[domains[2]]], mode="markers+text",
            name="predicted optimum", text=["optimum"], textposition="top center",
            marker={"size": 18, "color": "red", "symbol": "star", "line": {"width": 1, "color": "black"}}))
    text, top = title_block(title or _value_label(value, objective), width=60)
    fig.update_layout(
        template=TEMPLATE, height=height + max(0, top - 70), title=text,
        margin={"l": 60, "r": 60, "t": max(70, top), "b": 40},
        legend={"orientation": "h", "y": -0.05},
        ternary={"sum": 1, "aaxis": {"title": {"text": domains[0]}, "min": 0},
                 "baxis": {"title": {"text": domains[1]}, "min": 0},
                 "caxis": {"title": {"text": domains[2]}, "min": 0}})
    return fig


def plot_slice(grid: pd.DataFrame, x_domain: str, y_domain: str, *, value: str = "pred_mean",
               objective: str = "loss", observed: pd.DataFrame | None = None,
               optimum: Mapping[str, float] | None = None, rest_note: str = "", title: str | None = None,
               direction: str = "minimize", height: int = 520) -> go.Figure:
    """A heat map of ``grid[value]`` over (weight of ``x_domain``, weight of ``y_domain``) from
    :func:`slice_grid`; observed runs are drawn at their own (x, y) weights (they lie off the slice
    where their other domains differ) and the optimum is starred."""
    xs = np.unique(np.round(grid["x"].to_numpy(dtype=float), 9))
    ys = np.unique(np.round(grid["y"].to_numpy(dtype=float), 9))
    if len(xs) < 2 or len(ys) < 2:
        return empty_figure("the slice grid is too small to draw")
    Z = np.full((len(ys), len(xs)), np.nan)
    ix = np.searchsorted(xs, np.round(grid["x"].to_numpy(dtype=float), 9))
    iy = np.searchsorted(ys, np.round(grid["y"].to_numpy(dtype=float), 9))
    Z[iy, ix] = grid[value].to_numpy(dtype=float)
    scale = VALUE_SCALE if (value == "pred_std" or direction == "minimize") else VALUE_SCALE + "_r"
    fig = go.Figure(go.Heatmap(
        x=xs, y=ys, z=Z, colorscale=scale, name=_value_label(value, objective),
        colorbar={"title": {"text": "std" if value == "pred_std" else "predicted"}},
        hovertemplate=f"{x_domain} %{{x:.2f}}<br>{y_domain} %{{y:.2f}}<br>%{{z:.4f}}<extra></extra>"))
    if observed is not None and len(observed):
        text = _observed_text(observed)
        fig.add_trace(go.Scatter(
            x=observed[weight_col(x_domain)], y=observed[weight_col(y_domain)], mode="markers",
            name="observed runs", text=text, hovertemplate="%{text}<extra></extra>",
            marker={"size": 8, "color": "white", "line": {"width": 1.5, "color": "black"}}))
    if optimum:
        fig.add_trace(go.Scatter(
            x=[optimum[x_domain]], y=[optimum[y_domain]], mode="markers+text", name="predicted optimum",
            text=["optimum"], textposition="top center",
            marker={"size": 18, "color": "red", "symbol": "star", "line": {"width": 1, "color": "black"}}))
    text, top = title_block(title or _value_label(value, objective), rest_note, width=60)
    fig.update_layout(
        template=TEMPLATE, height=height + max(0, top - 80), title=text,
        margin={"l": 60, "r": 20, "t": max(80, top), "b": 50}, legend={"orientation": "h", "y": -0.15},
        xaxis={"title": f"weight of {x_domain}", "range": [0, 1], "constrain": "domain"},
        yaxis={"title": f"weight of {y_domain}", "range": [0, 1], "scaleanchor": "x"})
    return fig


def observed_at(runs: pd.DataFrame, model_params: int, *, steps: float | None = None,
                tokens: float | None = None) -> pd.DataFrame:
    """Observed runs of size ``model_params``, each at its checkpoint nearest the requested length
    (log distance), with an ``objective`` column already present on ``runs``."""
    df = runs[runs["model_params"] == int(model_params)]
    if df.empty:
        return df
    key = "trial_id" if "trial_id" in df.columns else "run_id"
    axis, target = ("steps", steps) if steps is not None and "steps" in df and df["steps"].notna().all() else (
        ("tokens", tokens) if tokens is not None and "tokens" in df and df["tokens"].notna().all() else (None, None))
    if axis is None:
        return df.groupby(key, sort=False).tail(1)
    d = np.abs(np.log(df[axis].to_numpy(dtype=float)) - np.log(float(target)))
    df = df.assign(_d=d).sort_values([key, "_d"], kind="stable")
    return df.groupby(key, sort=False).head(1).drop(columns="_d")


def scale_label(model_params: int, steps: float | None = None, tokens: float | None = None, *,
                short: bool = False) -> str:
    """'20M params, 5,000 steps' (``short``: '20M / 5K steps')."""
    if short:
        s = human(model_params)
        if steps is not None:
            s += f" / {human(steps)} steps"
        elif tokens is not None:
            s += f" / {human(tokens)} tok"
        return s
    s = f"{human(model_params)} params"
    if steps is not None:
        s += f", {int(steps):,} steps"
    elif tokens is not None:
        s += f", {human(tokens)} tokens"
    return s


def _observed_text(observed: pd.DataFrame) -> list[str]:
    """Hover labels of the observed runs drawn on a landscape."""
    ids = observed["run_id"] if "run_id" in observed else [""] * len(observed)
    return [f"run {r}: observed {y:.4f}" for r, y in zip(ids, observed["objective"])]
