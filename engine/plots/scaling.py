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
        return scale_label(self.model_params, self.steps, self.tokens)


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
                 height: int = 640) -> go.Figure:
    """Stacked bars of the optimal mixture at each scale (one column per model), the predicted
    objective at each below (with +-1 std), the smallest scale's optimum for comparison, and a
    marker where that optimum stops being optimal."""
    if table.empty:
        return empty_figure("no optimum computed")
    models = list(dict.fromkeys(table["model"]))
    fig = make_subplots(rows=2, cols=len(models), shared_xaxes="columns", row_heights=[0.62, 0.38],
                        vertical_spacing=0.08, horizontal_spacing=0.08,
                        subplot_titles=[f"{m}: optimal mixture" for m in models]
                        + [f"{m}: predicted {objective}" for m in models])
    for j, m in enumerate(models, start=1):
        t = table[table["model"] == m].reset_index(drop=True)
        labels = t["scale"].tolist()
        for i, d in enumerate(domains):
            fig.add_trace(go.Bar(x=labels, y=t[weight_col(d)], name=d, legendgroup=d, showlegend=j == 1,
                                 marker_color=domain_color(i), text=[f"{v:.2f}" for v in t[weight_col(d)]],
                                 textposition="inside", hovertemplate=f"{d} %{{y:.3f}}<extra>{m}</extra>"),
                          row=1, col=j)
        fig.add_trace(go.Scatter(x=labels, y=t["pred_mean"], mode="lines+markers", name="optimum at this scale",
                                 legendgroup="opt", showlegend=j == 1, line={"color": "black"},
                                 error_y={"type": "data", "array": t["pred_std"], "visible": True}),
                      row=2, col=j)
        fig.add_trace(go.Scatter(x=labels, y=t["small_pred"], mode="lines+markers",
                                 name="smallest scale's optimum", legendgroup="small", showlegend=j == 1,
                                 line={"color": "#EF553B", "dash": "dash"}), row=2, col=j)
        shifted = np.flatnonzero(t["shifted"].to_numpy(dtype=bool))
        if len(shifted):
            k = int(shifted[0])
            for row in (1, 2):
                fig.add_vrect(x0=k - 0.5, x1=len(labels) - 0.5, fillcolor="#EF553B", opacity=0.08, line_width=0,
                              row=row, col=j)
            sfx = "" if j == 1 else str(j)
            fig.add_annotation(x=k - 0.45, y=0.98, xref=f"x{sfx}", yref=f"y{sfx} domain", xanchor="left",
                               yanchor="top", text="small-scale optimum<br>no longer optimal →", showarrow=False,
                               align="left", font={"color": "#B22222", "size": 11}, bgcolor="rgba(255,255,255,0.8)")
    fig.update_layout(template=TEMPLATE, barmode="stack", height=height, margin={"l": 60, "r": 20, "t": 90, "b": 60},
                      legend={"orientation": "h", "y": -0.12}, title="Optimal mixture per scale")
    for j in range(1, len(models) + 1):
        fig.update_yaxes(title_text="weight", range=[0, 1], row=1, col=j)
        fig.update_yaxes(title_text=objective, row=2, col=j)
    return fig
