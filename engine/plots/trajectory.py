"""The optimisation trajectory: the incumbent at the target fidelity against cumulative cost."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.plots._common import TEMPLATE, domain_color, empty_figure, title_block


def trajectory_frame(entries: Sequence[dict] | pd.DataFrame, strategy: str | None = None) -> pd.DataFrame:
    """The ``mixplan trajectory --json`` entries as a DataFrame (``strategy`` column added when
    given and absent)."""
    df = entries.copy() if isinstance(entries, pd.DataFrame) else pd.DataFrame(list(entries))
    if strategy is not None and "strategy" not in df.columns:
        df["strategy"] = strategy
    return df


def speedup_value(df: pd.DataFrame) -> str:
    """The column speed-ups compare: ``incumbent_true`` where every curve has it (a simulator
    knows the truth), else ``incumbent_pred``."""
    if "incumbent_true" in df.columns:
        groups = df.groupby("strategy")["incumbent_true"] if "strategy" in df.columns else [(None, df["incumbent_true"])]
        if all(pd.Series(v).notna().any() for _, v in groups):
            return "incumbent_true"
    return "incumbent_pred"


def speedups(df: pd.DataFrame, *, reference: str | None = None, value: str = "incumbent_pred",
             direction: str = "minimize") -> pd.DataFrame:
    """Per strategy, the cumulative cost at which it first reaches the reference strategy's final
    incumbent, and the speed-up (reference cost / its cost). Reference: ``random`` if present,
    else the first strategy."""
    if df.empty or "strategy" not in df.columns or df["strategy"].nunique() < 2:
        return pd.DataFrame(columns=["strategy", "cost_to_reach", "speedup"])
    strategies = list(dict.fromkeys(df["strategy"]))
    ref = reference or ("random" if "random" in strategies else strategies[0])
    if ref not in strategies:
        raise ValueError(f"reference curve {ref!r} is not among {strategies}")
    df = df[df[value].notna()]
    sign = 1.0 if direction == "minimize" else -1.0
    r = df[df["strategy"] == ref].sort_values("cumulative_cost")
    goal = float(r[value].iloc[-1]) * sign
    ref_cost = _cost_to_reach(r, value, goal, sign)
    rows = []
    for s in strategies:
        c = _cost_to_reach(df[df["strategy"] == s].sort_values("cumulative_cost"), value, goal, sign)
        rows.append({"strategy": s, "cost_to_reach": c,
                     "speedup": (ref_cost / c) if (c and np.isfinite(c) and ref_cost) else np.nan})
    return pd.DataFrame(rows)


def _cost_to_reach(df: pd.DataFrame, value: str, goal: float, sign: float) -> float:
    hit = df[(sign * df[value].astype(float)) <= goal + 1e-12]
    return float(hit["cumulative_cost"].iloc[0]) if len(hit) else float("nan")


def plot_trajectory(df: pd.DataFrame, *, objective: str = "loss", target_label: str = "",
                    budget: float | None = None, height: int = 460) -> go.Figure:
    """Step curves of the incumbent's predicted (and, where known, true) value at the target
    fidelity against cumulative cost; one colour per strategy; each finished trial a dot.

    Where ``incumbent_basis`` (:mod:`engine.trajectory`) says a value is not at the target (no run
    has reached it yet, so the best run at the largest size/length reached stands in), those
    points get hollow markers on a dotted line and their own legend entry: they are not "at the
    target" and may rise when larger runs arrive."""
    if df.empty or "cumulative_cost" not in df.columns:
        return empty_figure("no finished trial yet: the trajectory starts with the first result")
    from engine.trajectory import NO_TARGET_RUN, is_at_target

    has_strategy = "strategy" in df.columns and df["strategy"].nunique() > 0
    groups = list(dict.fromkeys(df["strategy"])) if has_strategy else [None]
    fig = go.Figure()
    any_fallback = False
    for i, s in enumerate(groups):
        g = (df[df["strategy"] == s] if s is not None else df).sort_values("cumulative_cost")
        color = domain_color(i)
        name = s or "incumbent"
        if "incumbent_pred" in g.columns and g["incumbent_pred"].notna().any():
            basis = g["incumbent_basis"] if "incumbent_basis" in g.columns else pd.Series(None, index=g.index)
            at = np.array([b is None or (isinstance(b, float) and np.isnan(b)) or is_at_target(b) for b in basis])
            text = [f"trial {t}" + (f" · {b}" if isinstance(b, str) else "")
                    for t, b in zip(g.get("trial_id", [""] * len(g)), basis)]
            y = g["incumbent_pred"].astype(float).to_numpy()
            observed = "incumbent_source" in g.columns and (g["incumbent_source"] == "observed").all()
            if at.any():
                fig.add_trace(go.Scatter(x=g["cumulative_cost"], y=np.where(at, y, np.nan), mode="lines+markers",
                                         line={"shape": "hv", "color": color, "width": 2.5}, marker={"size": 6},
                                         name=f"{name}: {'best observed' if observed else 'predicted'} at target",
                                         text=text, connectgaps=False, legendgroup=name,
                                         hovertemplate="%{text}<br>cost %{x:.4g}<br>incumbent %{y:.4f}<extra></extra>"))
            if (~at).any():
                any_fallback = True
                fig.add_trace(go.Scatter(
                    x=g["cumulative_cost"], y=np.where(~at, y, np.nan), mode="lines+markers", connectgaps=False,
                    line={"shape": "hv", "color": color, "width": 1.5, "dash": "dot"}, legendgroup=name,
                    marker={"size": 8, "symbol": "circle-open", "line": {"width": 2, "color": color}},
                    name=f"{name}: best observed below the target {NO_TARGET_RUN}", text=text,
                    hovertemplate="%{text}<br>cost %{x:.4g}<br>best observed %{y:.4f}<extra></extra>"))
        if "incumbent_true" in g.columns and g["incumbent_true"].notna().any():
            fig.add_trace(go.Scatter(x=g["cumulative_cost"], y=g["incumbent_true"], mode="lines",
                                     line={"shape": "hv", "color": color, "dash": "dash"}, legendgroup=name,
                                     name=f"{name}: true at target"))
    if budget:
        fig.add_vline(x=budget, line={"dash": "dash", "color": "grey"}, annotation_text="budget")
    title = ("Incumbent at the target" + (f" ({target_label})" if target_label else "") + " vs cumulative cost")
    note = ("hollow markers: no run at the target yet, so the best run at the largest size and length reached "
            "stands in (not at the target; it can rise)") if any_fallback else None
    title, top = title_block(title, note, width=90)
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": max(60, top), "b": 50},
                      title=title, xaxis={"title": "cumulative cost"}, yaxis={"title": objective},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def has_regret(df: pd.DataFrame) -> bool:
    """Whether every curve of a trajectory frame carries the true regret (a ``synthetic`` study)."""
    if "incumbent_regret" not in df.columns:
        return False
    groups = df.groupby("strategy")["incumbent_regret"] if "strategy" in df.columns else [(None, df["incumbent_regret"])]
    return all(pd.Series(v).notna().any() for _, v in groups)


def plot_regret_trajectory(df: pd.DataFrame, *, target_label: str = "", height: int = 420) -> go.Figure:
    """Where the runner knows the true optimum (``incumbent_regret`` in the trajectory): each
    curve's true regret at the target (the incumbent's true value minus the best) against
    cumulative cost, log-log: the comparison a benchmark draws, here for stored studies."""
    if not has_regret(df):
        return empty_figure("no true regret: only a simulator that knows its optimum (synthetic) gives one")
    groups = list(dict.fromkeys(df["strategy"])) if "strategy" in df.columns else [None]
    fig = go.Figure()
    floor = 1e-6  # an incumbent at the optimum (regret 0) still shows on a log axis
    for i, s in enumerate(groups):
        g = (df[df["strategy"] == s] if s is not None else df).sort_values("cumulative_cost")
        g = g[g["incumbent_regret"].notna()]
        y = np.maximum(g["incumbent_regret"].astype(float).to_numpy(), floor)
        fig.add_trace(go.Scatter(x=g["cumulative_cost"], y=y, mode="lines+markers", name=s or "incumbent",
                                 line={"shape": "hv", "color": domain_color(i), "width": 2.5}, marker={"size": 4},
                                 hovertemplate=f"{s or 'incumbent'}<br>cost %{{x:.4g}}<br>regret %{{y:.3g}}"
                                               "<extra></extra>"))
    title = "True regret of the incumbent at the target" + (f" ({target_label})" if target_label else "") + \
        " vs cumulative cost"
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 60, "b": 50}, title=title,
                      xaxis={"title": "cumulative cost", "type": "log"},
                      yaxis={"title": "regret (true value - true optimum)", "type": "log"},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def plot_regret_curves(curves: pd.DataFrame, *, height: int = 440) -> go.Figure:
    """``mixplan bench optimize`` results (``regret_curves`` / ``optimize_curves.csv``: columns
    objective, strategy, cost, regret_median, optional regret_q25 / regret_q75): per strategy the
    median regret at the target over seeds against cumulative cost, with the 25-75% band; one
    panel per objective, log-log."""
    if curves.empty:
        return empty_figure("no benchmark curve to draw")
    from plotly.subplots import make_subplots

    objs = list(dict.fromkeys(curves["objective"]))
    fig = make_subplots(rows=1, cols=len(objs), subplot_titles=objs, horizontal_spacing=0.08)
    strategies = list(dict.fromkeys(curves["strategy"]))
    for j, obj in enumerate(objs, start=1):
        for i, name in enumerate(strategies):
            g = curves[(curves["objective"] == obj) & (curves["strategy"] == name)].sort_values("cost")
            if g.empty:
                continue
            color = domain_color(i)
            if {"regret_q25", "regret_q75"} <= set(g.columns):
                x = g["cost"].to_numpy(dtype=float)
                band = np.concatenate([g["regret_q75"].to_numpy(dtype=float), g["regret_q25"].to_numpy(dtype=float)[::-1]])
                fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=band, fill="toself", line={"width": 0},
                                         fillcolor=color, opacity=0.15, legendgroup=name, showlegend=False,
                                         hoverinfo="skip", name=f"{name} 25-75%"), row=1, col=j)
            fig.add_trace(go.Scatter(x=g["cost"], y=g["regret_median"], mode="lines", name=name, legendgroup=name,
                                     showlegend=j == 1, line={"color": color, "width": 2.5, "shape": "hv"},
                                     hovertemplate=f"{name}<br>cost %{{x:.4g}}<br>median regret %{{y:.4g}}"
                                                   "<extra></extra>"), row=1, col=j)
        fig.update_xaxes(type="log", title_text="cumulative cost", row=1, col=j)
        fig.update_yaxes(type="log", title_text="regret at the target (median over seeds)", row=1, col=j)
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 70, "b": 50},
                      title="Benchmark: median regret vs cumulative cost (band: 25-75% of seeds)",
                      legend={"orientation": "h", "y": -0.2})
    return fig
