"""The optimisation trajectory: the incumbent at the target fidelity against cumulative cost."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.plots._common import TEMPLATE, domain_color, empty_figure


def trajectory_frame(entries: Sequence[dict] | pd.DataFrame, strategy: str | None = None) -> pd.DataFrame:
    """The ``mixplan trajectory --json`` entries as a DataFrame (``strategy`` column added when
    given and absent)."""
    df = entries.copy() if isinstance(entries, pd.DataFrame) else pd.DataFrame(list(entries))
    if strategy is not None and "strategy" not in df.columns:
        df["strategy"] = strategy
    return df


def speedups(df: pd.DataFrame, *, reference: str | None = None, value: str = "incumbent_pred",
             direction: str = "minimize") -> pd.DataFrame:
    """Per strategy, the cumulative cost at which it first reaches the reference strategy's final
    incumbent, and the speed-up (reference cost / its cost). Reference: ``random`` if present,
    else the first strategy."""
    if df.empty or "strategy" not in df.columns or df["strategy"].nunique() < 2:
        return pd.DataFrame(columns=["strategy", "cost_to_reach", "speedup"])
    strategies = list(dict.fromkeys(df["strategy"]))
    ref = reference or ("random" if "random" in strategies else strategies[0])
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
    fidelity against cumulative cost; one colour per strategy; each finished trial a dot."""
    if df.empty or "cumulative_cost" not in df.columns:
        return empty_figure("no finished trial yet: the trajectory starts with the first result")
    has_strategy = "strategy" in df.columns and df["strategy"].nunique() > 0
    groups = list(dict.fromkeys(df["strategy"])) if has_strategy else [None]
    fig = go.Figure()
    for i, s in enumerate(groups):
        g = (df[df["strategy"] == s] if s is not None else df).sort_values("cumulative_cost")
        color = domain_color(i)
        name = s or "incumbent"
        if "incumbent_pred" in g.columns and g["incumbent_pred"].notna().any():
            text = [f"trial {t}" for t in g.get("trial_id", [""] * len(g))]
            observed = "incumbent_source" in g.columns and (g["incumbent_source"] == "observed").all()
            fig.add_trace(go.Scatter(x=g["cumulative_cost"], y=g["incumbent_pred"], mode="lines+markers",
                                     line={"shape": "hv", "color": color, "width": 2.5}, marker={"size": 6},
                                     name=f"{name}: {'best observed' if observed else 'predicted'} at target",
                                     text=text,
                                     hovertemplate="%{text}<br>cost %{x:.4g}<br>incumbent %{y:.4f}<extra></extra>"))
        if "incumbent_true" in g.columns and g["incumbent_true"].notna().any():
            fig.add_trace(go.Scatter(x=g["cumulative_cost"], y=g["incumbent_true"], mode="lines",
                                     line={"shape": "hv", "color": color, "dash": "dot"},
                                     name=f"{name}: true at target"))
    if budget:
        fig.add_vline(x=budget, line={"dash": "dash", "color": "grey"}, annotation_text="budget")
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      title="Incumbent at the target" + (f" ({target_label})" if target_label else "")
                            + " vs cumulative cost",
                      xaxis={"title": "cumulative cost"}, yaxis={"title": objective},
                      legend={"orientation": "h", "y": -0.2})
    return fig
