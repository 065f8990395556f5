"""The optimal mixture per scale, from several loss models side by side.

:func:`scaling_table` asks each fitted model for its optimum at each scale and also predicts, at
every scale, the loss of the *smallest* scale's optimum: where that falls behind the scale's own
optimum by more than a tolerance, the small-scale optimum has stopped being optimal. The
tolerance is ``max(pred_std, rel_tol * |pred_mean|)`` (default ``rel_tol`` 0.5%): the
prediction's std where the model has one, but never below half a percent of the predicted loss,
since a model's std can be tiny (AutoScale's bootstrap spread where its refits agree) and would
otherwise flag regrets of 1e-6 as a shift. Scales may be model sizes or training lengths at one size; those beyond the
longest run are marked ``extrapolated``. :func:`plot_scaling` draws stacked bars of the optimal
weights per scale (one column per model) over the predicted loss, and marks that point.
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
    extrapolated: bool = False  # longer than any run of the study
    axis: str | None = None  # the length the label shows: "tokens", or steps where known (default)

    @property
    def label(self) -> str:
        steps = None if self.axis == "tokens" and self.tokens is not None else self.steps
        return scale_label(self.model_params, steps, self.tokens, short=True) + (
            " (extrap.)" if self.extrapolated else "")


#: Smallest regret that counts as a shift, relative to the predicted objective (see the module docstring).
REL_TOL = 0.005
#: Budgets beyond the longest run that :func:`budget_points` adds, as multiples of it.
EXTRAPOLATE = (2.0, 5.0, 10.0)


def size_points(config, runs: pd.DataFrame) -> list[ScalePoint]:
    """"Model sizes at their longest run": every size on offer or run, smallest first, at its
    longest length on offer or observed (the target size at the target's length)."""
    from engine.scales import length_choices, target_length

    _, choices = length_choices(config, runs)
    pts = {mp: (lengths[-1] if lengths else None) for mp, lengths in choices.items()}
    if config.target is not None:
        pts[int(config.target.model_params)] = target_length(config)
    return [ScalePoint(int(mp), L.steps if L else None, L.tokens if L else None) for mp, L in sorted(pts.items())]


def budget_points(config, runs: pd.DataFrame, model_params: int, *, factors: Sequence[float] = EXTRAPOLATE,
                  max_points: int = 5) -> list[ScalePoint]:
    """"Training budgets at a fixed size": up to ``max_points`` lengths on offer or observed at
    ``model_params`` (those nearest a geometric spread from the shortest to the longest), then
    ``factors`` times the longest run of the study, marked ``extrapolated``. Budgets are tokens
    where the study has tokens (or converts steps with tokens_per_step), else steps."""
    from engine.scales import length_choices, make_length, run_lengths

    axis, choices = length_choices(config, runs)
    if axis is None:
        return []
    lengths = [L for L in choices.get(int(model_params), []) if L.value(axis) is not None]
    if len(lengths) > max_points:
        logv = np.log([float(L.value(axis)) for L in lengths])
        want = np.linspace(logv[0], logv[-1], max_points)
        idx = sorted({int(np.argmin(np.abs(logv - w))) for w in want})
        lengths = [lengths[i] for i in idx]
    label_axis = "tokens" if all(L.tokens is not None for L in lengths) else None
    observed = run_lengths(runs, config, axis) if len(runs) else np.array([])
    observed = observed[np.isfinite(observed)]
    longest = float(observed.max()) if len(observed) else max((L.value(axis) for L in lengths), default=None)
    pts = [ScalePoint(int(model_params), L.steps, L.tokens, bool(longest is not None and L.value(axis) > longest),
                      label_axis) for L in lengths]
    if longest is not None:
        top = max([longest] + [L.value(axis) for L in lengths])
        for f in factors:
            v = float(longest) * float(f)
            if v > top * (1 + 1e-9):
                L = make_length(config, axis, v)
                pts.append(ScalePoint(int(model_params), L.steps, L.tokens, True, label_axis))
    return pts


def scaling_table(models: Mapping[str, object], scales: Sequence[ScalePoint], domains: Sequence[str], *,
                  bounds: Sequence[tuple[float, float]] | None = None, direction: str = "minimize",
                  rel_tol: float = REL_TOL) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per (model, scale): ``model``, ``scale``, ``model_params``, ``steps``, ``tokens``,
    ``extrapolated``, ``w_*`` of the optimum, ``pred_mean``, ``pred_std``, ``small_pred``
    (predicted loss of the smallest scale's optimum there), ``regret`` (how much worse that is,
    >= 0 is worse), ``tolerance`` (max(pred_std, rel_tol * |pred_mean|)) and ``shifted``
    (regret > tolerance). Returns the table and {model: error message} for models that failed
    (the others still appear)."""
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
            std = float(o.pred_std) if np.isfinite(o.pred_std) else 0.0
            tol = max(std, rel_tol * abs(float(o.pred_mean)), 1e-12)
            rows.append({"model": name, "scale": s.label, "model_params": int(s.model_params), "steps": s.steps,
                         "tokens": s.tokens, "extrapolated": bool(s.extrapolated),
                         **{weight_col(d): float(o.weights[d]) for d in domains},
                         "pred_mean": float(o.pred_mean), "pred_std": float(o.pred_std), "small_pred": float(sp),
                         "regret": regret, "tolerance": tol, "shifted": bool(regret > tol)})
    return pd.DataFrame(rows), errors


def plot_scaling(table: pd.DataFrame, domains: Sequence[str], *, objective: str = "loss",
                 height: int = 660) -> go.Figure:
    """Per model (one column each): stacked bars of the optimal mixture at each scale with the
    predicted objective written above each bar; below, how much worse the smallest scale's
    optimum is predicted to do at each scale (its regret) against the tolerance (``tolerance``
    column: max(1 std, 0.5% of the prediction)). Scales from the first one where the regret
    exceeds it are shaded: there the small-scale optimum has stopped being optimal. Extrapolated
    scales (beyond the longest run) are shaded grey and labelled."""
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
        tol = t["tolerance"] if "tolerance" in t.columns else t["pred_std"]
        fig.add_trace(go.Scatter(x=labels, y=tol, mode="lines", name="tolerance: max(1 std, 0.5% of the prediction)",
                                 legendgroup="std", showlegend=j == 1, line={"color": "grey", "dash": "dash"}),
                      row=2, col=j)
        if "extrapolated" in t.columns and t["extrapolated"].any():
            k = int(np.flatnonzero(t["extrapolated"].to_numpy(dtype=bool))[0])
            fig.add_vrect(x0=k - 0.5, x1=len(labels) - 0.5, fillcolor="grey", opacity=0.10, line_width=0,
                          row=1, col=j)
            fig.add_annotation(x=len(labels) - 0.55, y=1.1, xanchor="right", showarrow=False,
                               text="extrapolation: longer than any run", font={"color": "#555", "size": 11},
                               bgcolor="rgba(255,255,255,0.85)", row=1, col=j)
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
