"""Shared helpers of the plot functions: objective values, final checkpoints, colours."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from plotly.colors import sample_colorscale

from engine.numbers import human  # noqa: F401 - the one number formatter, re-exported for the plots
from engine.runtable.schema import WEIGHT_PREFIX, loss_columns, metric_columns, objective_values

#: Colour scale for predicted/observed loss (low = dark = good for minimised objectives).
VALUE_SCALE = "Viridis"
#: Colour scale for a domain's weight.
WEIGHT_SCALE = "Plasma"
#: One colour per domain (stacked bars), Plotly's qualitative palette.
DOMAIN_COLORS = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692",
                 "#B6E880", "#FF97FF", "#FECB52")
TEMPLATE = "plotly_white"


def domain_color(i: int) -> str:
    return DOMAIN_COLORS[i % len(DOMAIN_COLORS)]


def objectives_of(runs: pd.DataFrame) -> list[str]:
    """The objectives a run table can be plotted by: mean_loss, loss_*, metric_*."""
    losses = loss_columns(runs)
    return (["mean_loss"] if losses else []) + losses + metric_columns(runs)


def with_objective(runs: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The table with an ``objective`` column holding the objective's values (rows where it is
    missing dropped)."""
    df = runs.copy()
    try:
        df["objective"] = pd.to_numeric(objective_values(df, objective), errors="coerce").to_numpy(dtype=float)
    except KeyError:
        df["objective"] = np.nan
    return df[np.isfinite(df["objective"].to_numpy(dtype=float))]


def length_axis(runs: pd.DataFrame) -> str | None:
    """'tokens' where every row has tokens, else 'steps' where every row has steps, else None."""
    for c in ("tokens", "steps"):
        if c in runs.columns and len(runs) and runs[c].notna().all():
            return c
    return None


def final_checkpoints(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its last checkpoint (the table is ordered by run and length)."""
    if runs.empty:
        return runs
    key = "trial_id" if "trial_id" in runs.columns else "run_id"
    axis = length_axis(runs)
    df = runs.sort_values([key, axis], kind="stable") if axis else runs
    return df.groupby(key, sort=False).tail(1).reset_index(drop=True)


def colors_for(values: np.ndarray, scale: str, lo: float = 0.0, hi: float = 1.0) -> list[str]:
    """Colours of ``values`` on a named colour scale spanning [lo, hi]."""
    span = (hi - lo) or 1.0
    t = np.clip((np.asarray(values, dtype=float) - lo) / span, 0.0, 1.0)
    return sample_colorscale(scale, list(t))


def weight_col(domain: str) -> str:
    return WEIGHT_PREFIX + domain


def title_block(title: str, note: str | None = None, *, width: int = 60) -> tuple[str, int]:
    """A figure title (and a smaller note under it) broken into lines at word boundaries, with
    the top margin that fits them. Plotly never wraps a title: a long one is cut at the
    figure's edge (in a half-width column, the note of a 6-domain slice lost its last words).
    ``width``: characters a title line may hold (about 60 in half of a wide page; the note's
    smaller font holds ~1.5x as many)."""
    lines = textwrap.wrap(title, max(10, int(width))) or [""]
    notes = textwrap.wrap(note, max(15, int(width * 1.5))) if note else []
    text = "<br>".join(lines) + "".join(f"<br><sup>{n}</sup>" for n in notes)
    return text, 30 + 24 * len(lines) + 16 * len(notes)


def empty_figure(message: str, height: int = 300):
    """A figure that says there is nothing to draw (instead of an empty axis)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14})
    fig.update_layout(template=TEMPLATE, height=height, xaxis={"visible": False}, yaxis={"visible": False})
    return fig
