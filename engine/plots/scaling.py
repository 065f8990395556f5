"""The optimal mixture per scale, from several loss models side by side.

:func:`scaling_table` asks each fitted model for its optimum at each scale and also predicts, at
every scale, the loss of the *smallest* scale's optimum: where that falls behind the scale's own
optimum by more than the prediction's std, the small-scale optimum has stopped being optimal.
:func:`plot_scaling` draws stacked bars of the optimal weights per scale (one column per model)
over the predicted loss, and marks that point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.plots._common import TEMPLATE, domain_color, empty_figure, weight_col
from engine.plots.landscape import scale_label


@dataclass(frozen=True)
class ScalePoint:
    """A scale at which to ask for the optimum."""

    model_params: int
    steps: float | None = None
    tokens: float | None = None

    @property
    def label(self) -> str:
        return scale_label(self.model_params, self.steps, self.tokens, short=True)


def scaling_table(models: Mapping[str, object], scales: Sequence[ScalePoint], domains: Sequence[str], *,
                  bounds: Sequence[tuple[float, float]] | None = None, direction: str = "minimize",
                  ) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per (model, scale): ``model``, ``scale``, ``model_params``, ``steps``, ``tokens``,
    ``w_*`` of the optimum, ``pred_mean``, ``pred_std``, ``small_pred`` (predicted loss of the
    smallest scale's optimum there), ``regret`` (how much worse that is, >= 0 is worse) and
    ``shifted`` (regret > pred_std). Returns the table and {model: error message} for models
    that failed (the others still appear)."""
    rows, errors = [], {}
    sign = 1.0 if direction == "minimize" else -1.0
    for name, model in models.items():
        try:
            opts = [model.optimum(int(s.model_params), steps=s.steps, tokens=s.tokens,
                                  bounds=None if bounds is None else list(bounds), direction=direction)
                    for s in scales]
            small = opts[0].weights
            q = pd.DataFrame([{weight_col(d): small[d] for d in domains} for _ in scales])
            q["model_params"] = [int(s.model_params) for s in scales]
            if all(s.steps is not None for s in scales):
                q["steps"] = [float(s.steps) for s in scales]
            if all(s.tokens is not None for s in scales):
                q["tokens"] = [float(s.tokens) for s in scales]
            small_mean, _ = model.predict(q)
        except Exception as exc:  # one model failing must not hide the others
            errors[name] = str(exc)
            continue
        for s, o, sp in zip(scales, opts, np.asarray(small_mean, float)):
            regret = sign * (float(sp) - float(o.pred_mean))
            rows.append({"model": name, "scale": s.label, "model_params": int(s.model_params), "steps": s.steps,
                         "tokens": s.tokens, **{weight_col(d): float(o.weights[d]) for d in domains},
                         "pred_mean": float(o.pred_mean), "pred_std": float(o.pred_std), "small_pred": float(sp),
                         "regret": regret, "shifted": bool(regret > max(float(o.pred_std), 1e-9))})
    return pd.DataFrame(rows), errors


def plot_scaling(table: pd.DataFrame, domains: Sequence[str], *, objective: str = "loss",
                 height: int = 660) -> go.Figure:
    """Per model (one column each): stacked bars of the optimal mixture at each scale with the
    predicted objective written above each bar; below, how much worse the smallest scale's
    optimum is predicted to do at each scale (its regret) against the prediction's std. Scales
    from the first one where the regret exceeds the std are shaded: there the small-scale optimum
    has stopped being optimal."""
    if table.empty:
        return empty_figure("no optimum computed")
    models = list(dict.fromkeys(table["model"]))
    fig = make_subplots(rows=2, cols=len(models), shared_xaxes="columns", row_heights=[0.64, 0.36],
                        vertical_spacing=0.1, horizontal_spacing=0.08,
                        subplot_titles=[f"{m}: optimal mixture (predicted {objective} on top)" for m in models]
                        + [f"{m}: regret of the smallest scale's optimum" for m in models])
    for j, m in enumerate(models, start=1):
        t = table[table["model"] == m].reset_index(drop=True)
        labels = t["scale"].tolist()
        for i, d in enumerate(domains):
            fig.add_trace(go.Bar(x=labels, y=t[weight_col(d)], name=d, legendgroup=d, showlegend=j == 1,
                                 marker_color=domain_color(i), text=[f"{v:.2f}" for v in t[weight_col(d)]],
                                 textposition="inside", hovertemplate=f"{d} %{{y:.3f}}<extra>{m}</extra>"),
                          row=1, col=j)
        fig.add_trace(go.Scatter(
            x=labels, y=[1.0] * len(labels), mode="text", showlegend=False, textposition="top center",
            text=[f"{v:.4g}±{s:.2g}" for v, s in zip(t["pred_mean"], t["pred_std"])],
            textfont={"size": 11}, hovertemplate=f"predicted {objective} %{{text}}<extra>{m}</extra>"), row=1, col=j)
        fig.add_trace(go.Scatter(x=labels, y=t["regret"], mode="lines+markers", name="regret of the smallest scale's optimum",
                                 legendgroup="regret", showlegend=j == 1, line={"color": "#B22222", "width": 2.5},
                                 customdata=np.column_stack([t["small_pred"], t["pred_mean"]]),
                                 hovertemplate="regret %{y:.4g}<br>small-scale optimum %{customdata[0]:.4f}"
                                               "<br>this scale's optimum %{customdata[1]:.4f}<extra></extra>"),
                      row=2, col=j)
        fig.add_trace(go.Scatter(x=labels, y=t["pred_std"], mode="lines", name="1 std of the prediction",
                                 legendgroup="std", showlegend=j == 1, line={"color": "grey", "dash": "dash"}),
                      row=2, col=j)
        shifted = np.flatnonzero(t["shifted"].to_numpy(dtype=bool))
        if len(shifted):
            k = int(shifted[0])
            for row in (1, 2):
                fig.add_vrect(x0=k - 0.5, x1=len(labels) - 0.5, fillcolor="#EF553B", opacity=0.08, line_width=0,
                              row=row, col=j)
            fig.add_annotation(x=k - 0.45, y=0.97, xref=f"x{len(models) + j}", yref=f"y{len(models) + j} domain",
                               xanchor="left", yanchor="top", showarrow=False, align="left",
                               text="small-scale optimum<br>no longer optimal →",
                               font={"color": "#B22222", "size": 11}, bgcolor="rgba(255,255,255,0.85)")
    fig.update_layout(template=TEMPLATE, barmode="stack", height=height, margin={"l": 60, "r": 20, "t": 70, "b": 60},
                      legend={"orientation": "h", "y": -0.1}, title="Optimal mixture per scale")
    for j in range(1, len(models) + 1):
        fig.update_yaxes(title_text="weight", range=[0, 1.12], tickvals=[0, 0.25, 0.5, 0.75, 1], row=1, col=j)
        fig.update_yaxes(title_text=f"Δ {objective}", rangemode="tozero", row=2, col=j)
    return fig
