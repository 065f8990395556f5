"""Backtest plots: predicted against observed on held-out larger sizes, with the intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.plots._common import TEMPLATE, domain_color, empty_figure, human


def plot_backtest(predictions: pd.DataFrame, model: str, *, objective: str = "objective") -> go.Figure:
    """Predicted (+-1 std, the calibrated std mixplan reports) against observed, one colour per
    held-out model size, for one model of a backtest (:func:`engine.models.backtest.backtest`'s
    ``predictions``). Points on the diagonal are exact; an interval that crosses it holds the
    truth. Where a model was backtested at several cuts, each cut's predictions are its own
    markers (the legend says which sizes were fitted)."""
    p = predictions[(predictions["model"] == model) & predictions["pred_mean"].notna()]
    if p.empty:
        return empty_figure(f"no backtest predictions of {model}")
    fig = go.Figure()
    groups = list(p.groupby(["cut", "model_params"], sort=True))
    for i, ((cut, size), g) in enumerate(groups):
        inside = np.abs(g["pred_mean"] - g["observed"]) <= g["pred_std"]
        fig.add_trace(go.Scatter(
            x=g["observed"], y=g["pred_mean"], mode="markers", name=f"{human(size)} (fit <= {human(cut)})",
            marker={"color": domain_color(i), "size": 8, "symbol": np.where(inside, "circle", "x").tolist()},
            error_y={"type": "data", "array": g["pred_std"].to_numpy(float), "visible": True, "thickness": 1},
            customdata=np.column_stack([g["run_id"], g["pred_std"]]),
            hovertemplate="%{customdata[0]}<br>observed %{x:.4f}<br>predicted %{y:.4f} ± %{customdata[1]:.3g}"
                          "<extra></extra>"))
    lo = float(np.nanmin([p["observed"].min(), (p["pred_mean"] - p["pred_std"]).min()]))
    hi = float(np.nanmax([p["observed"].max(), (p["pred_mean"] + p["pred_std"]).max()]))
    pad = 0.02 * (hi - lo or 1.0)
    fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="exact",
                             line={"color": "grey", "dash": "dot"}, hoverinfo="skip"))
    cover = float(np.mean(np.abs(p["pred_mean"] - p["observed"]) <= p["pred_std"]))
    fig.update_layout(template=TEMPLATE, height=430, margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      title={"text": f"{model}: predicted vs observed at held-out larger sizes<br><sup>± 1 std "
                                     f"(calibrated) holds {cover:.0%} of {len(p)} runs; × marks a miss</sup>"},
                      xaxis_title=f"observed {objective}", yaxis_title=f"predicted {objective}",
                      legend={"title": "held-out size"})
    return fig


def backtest_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-model summary as a table a person reads (percentages, fixed decimals)."""
    if summary.empty:
        return summary
    out = pd.DataFrame({"model": summary["model"]})
    out["Spearman"] = summary["spearman"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.3f}")
    out["level error (MRE)"] = summary["mre"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.2%}")
    out["regret of its pick"] = summary["best_regret"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.4f}")
    out["±1 std holds"] = summary["coverage_1std"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.0%}")
    out["±2 std holds"] = summary["coverage_2std"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.0%}")
    out["error"] = summary["error"].fillna("")
    return out
