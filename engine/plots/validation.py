"""The validation verdict as figures: predicted vs observed at the target (with the model's
interval and every seed), and the validation runs' loss curves against the uniform mixture's
final loss (the AutoScale speed-up is read off these)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from engine.plots._common import TEMPLATE, domain_color, empty_figure, human
from engine.validation import Verdict


def _target_label(v: Verdict) -> str:
    return f"{human(v.target[0])} params, {v.target[1]} steps"


def plot_validation(v: Verdict, *, height: int = 420) -> go.Figure:
    """Per validation mixture: the model's prediction at the target (marker, +-1 std thick and
    +-2 std thin error bars) next to the observed value of each seed (crosses) and their mean
    (diamond)."""
    arms = [a for a in v.arms if a.pred_mean is not None or a.observed]
    if not arms:
        return empty_figure("no validation run yet")
    x = [a.label for a in arms]
    fig = go.Figure()
    pm = [a.pred_mean for a in arms]
    ps = [a.pred_std or 0.0 for a in arms]
    fig.add_trace(go.Scatter(x=x, y=pm, mode="markers", name="predicted +- 2 std", showlegend=False,
                             marker={"size": 1, "color": "#636EFA"}, hoverinfo="skip",
                             error_y={"type": "data", "array": [2 * s for s in ps], "thickness": 1, "width": 10,
                                      "color": "rgba(99,110,250,0.45)"}))
    fig.add_trace(go.Scatter(x=x, y=pm, mode="markers", name=f"predicted by {v.model} (+- 1 std; thin: 2 std)",
                             marker={"size": 11, "color": "#636EFA", "symbol": "circle"},
                             error_y={"type": "data", "array": ps, "thickness": 3, "width": 6, "color": "#636EFA"},
                             hovertemplate="%{x}<br>predicted %{y:.4f}<extra></extra>"))
    sx, sy, st = [], [], []
    for a in arms:
        for seed, val in zip(a.seeds, a.observed):
            sx.append(a.label)
            sy.append(val)
            st.append(f"seed {seed}")
    fig.add_trace(go.Scatter(x=sx, y=sy, mode="markers", name="observed (each seed)", text=st,
                             marker={"size": 9, "symbol": "x-thin", "line": {"width": 2, "color": "#EF553B"}},
                             hovertemplate="%{x}, %{text}<br>observed %{y:.4f}<extra></extra>"))
    om = [a.observed_mean for a in arms]
    fig.add_trace(go.Scatter(x=x, y=om, mode="markers", name="observed (seed mean)",
                             marker={"size": 12, "symbol": "diamond", "color": "#EF553B"},
                             hovertemplate="%{x}<br>observed mean %{y:.4f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 70, "b": 50},
                      title=f"Predicted vs observed {v.objective} at the target<br><sup>{_target_label(v)}: "
                            f"{v.scale_factor:.0f}x the largest size fitted</sup>",
                      yaxis={"title": v.objective}, xaxis={"title": "validation mixture"},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def plot_validation_curves(v: Verdict, *, height: int = 420) -> go.Figure:
    """Each validation mixture's loss along its runs (seed mean, thick; each seed, thin) and the
    uniform mixture's final loss (dashed): where a curve crosses that line is the step count
    the AutoScale speed-up divides by."""
    arms = [a for a in v.arms if len(a.curve)]
    if not arms:
        return empty_figure("no validation run has a checkpoint yet")
    fig = go.Figure()
    tail = []
    for i, a in enumerate(arms):
        color = domain_color(i)
        for seed, g in a.curve.groupby("seed"):
            g = g.sort_values("steps")
            fig.add_trace(go.Scatter(x=g["steps"], y=g["value"], mode="lines", legendgroup=a.label,
                                     showlegend=False, line={"color": color, "width": 1}, opacity=0.45,
                                     hovertemplate=f"{a.label}, seed {seed}<br>step %{{x}}<br>%{{y:.4f}}<extra></extra>"))
        mean = a.curve.groupby("steps")["value"].mean().reset_index()
        name = a.label + (f" ({a.speedup:.2f}x)" if a.speedup is not None else "")
        fig.add_trace(go.Scatter(x=mean["steps"], y=mean["value"], mode="lines+markers", name=name,
                                 legendgroup=a.label, line={"color": color, "width": 2.5}, marker={"size": 5},
                                 hovertemplate=f"{a.label}<br>step %{{x}}<br>seed mean %{{y:.4f}}<extra></extra>"))
        late = mean[mean["steps"] >= 0.3 * v.target[1]]["value"]
        tail.extend(late.tolist())
    uni = next((a for a in arms if a.is_("uniform") and a.observed), None)
    if uni is not None:
        final = float(np.mean(uni.observed))
        fig.add_hline(y=final, line={"dash": "dash", "color": "grey"},
                      annotation_text=f"uniform's final {v.objective} {final:.4f}", annotation_position="top left")
    layout = {"template": TEMPLATE, "height": height, "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
              "title": f"{v.objective} along the validation runs<br><sup>{_target_label(v)}; dashed: uniform's "
                       "final loss; legend: speed-up vs uniform</sup>",
              "xaxis": {"title": "steps"}, "yaxis": {"title": v.objective}, "legend": {"orientation": "h", "y": -0.2}}
    if tail:  # the early steps (a byte-frequency model) would squash the part that matters
        lo, hi = min(tail), max(tail)
        pad = 0.08 * (hi - lo or 1.0)
        layout["yaxis"]["range"] = [lo - pad, hi + pad]
    fig.update_layout(**layout)
    return fig
