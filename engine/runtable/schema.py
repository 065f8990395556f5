"""The run-table format (DESIGN.md contract 2): one row per checkpoint of a run.

Columns:
- ``run_id`` (str): the run; rows of one run share it.
- ``model_params`` (int): parameters of the model.
- ``tokens`` and/or ``steps``: where along the run the checkpoint was taken.
- ``w_<domain>``: mixture weights (>= 0, summing to 1), equal on every row of a run.
- ``loss_<domain>``: validation cross-entropy per evaluation domain (lower is better).
- ``metric_<name>``: optional, higher is better.
- ``cost``: optional; else ``6 * model_params * tokens`` FLOPs.
"""

from __future__ import annotations

import pandas as pd

WEIGHT_PREFIX = "w_"
LOSS_PREFIX = "loss_"
METRIC_PREFIX = "metric_"
CORE_COLUMNS = ("run_id", "model_params", "tokens", "steps", "cost")
#: Tolerance on sum(w) - 1 under which weights are renormalised silently (and counted).
RENORMALISE_TOLERANCE = 0.01


def weight_columns(df: pd.DataFrame) -> list[str]:
    """``w_*`` columns in table order."""
    return [c for c in df.columns if c.startswith(WEIGHT_PREFIX)]


def loss_columns(df: pd.DataFrame) -> list[str]:
    """``loss_*`` columns in table order."""
    return [c for c in df.columns if c.startswith(LOSS_PREFIX)]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """``metric_*`` columns in table order."""
    return [c for c in df.columns if c.startswith(METRIC_PREFIX)]


def domains_of(df: pd.DataFrame) -> list[str]:
    """Training domains named by the ``w_*`` columns."""
    return [c[len(WEIGHT_PREFIX):] for c in weight_columns(df)]


def objective_values(df: pd.DataFrame, objective: str) -> pd.Series:
    """The objective per row: a ``loss_*`` / ``metric_*`` column, or ``mean_loss``.

    ``mean_loss`` is the mean of **all** loss columns: a row missing any of them gets NaN
    (skipna=False), not the mean of the ones it has, which would compare rows over different
    domain sets (a row lacking its hardest domain would look better). Callers drop or reject NaN
    rows (the models raise naming the row; the strategies and plots leave them out)."""
    if objective == "mean_loss":
        cols = loss_columns(df)
        if not cols:
            raise KeyError("mean_loss needs at least one loss_* column")
        return df[cols].apply(pd.to_numeric, errors="coerce").mean(axis=1, skipna=False)
    return df[objective]


def default_cost(model_params: pd.Series | float, tokens: pd.Series | float) -> pd.Series | float:
    """6 * N * D FLOPs, the cost used where a run reports none."""
    return 6.0 * model_params * tokens
