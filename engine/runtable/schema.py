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

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

WEIGHT_PREFIX = "w_"
LOSS_PREFIX = "loss_"
METRIC_PREFIX = "metric_"
CORE_COLUMNS = ("run_id", "model_params", "tokens", "steps", "cost")
#: Tolerance on sum(w) - 1 under which weights are renormalised silently (and counted).
RENORMALISE_TOLERANCE = 0.01


#: Longest run id in bytes (UTF-8): a run id names a folder, and file systems stop at 255.
MAX_RUN_ID_BYTES = 200
_UNSAFE_ID_RE = re.compile(r"[/\\\x00]")
RUN_ID_FIX = ("give the run an id that is one folder name: no '/' or '\\', not '.' or '..', at most "
              f"{MAX_RUN_ID_BYTES} bytes (e.g. 'run-12').")


def run_id_problem(run_id: str) -> str | None:
    """What makes ``run_id`` unusable, or None. Why: a run's files live in
    ``mixplan-runs/<study>/<run_id>/``, so a run id must be one folder name, never a path that
    leads elsewhere (``../x``, ``/etc``, ``a/b``)."""
    if not isinstance(run_id, str) or not run_id:
        return "is empty"
    if "/" in run_id or "\\" in run_id:
        return "holds a path separator ('/' or '\\')"
    if run_id in (".", ".."):
        return "is a relative folder name"
    if "\x00" in run_id:
        return "holds a NUL character"
    if len(run_id.encode("utf-8", errors="surrogatepass")) > MAX_RUN_ID_BYTES:
        return f"is longer than {MAX_RUN_ID_BYTES} bytes"
    return None


def first_unsafe_run_id(run_ids: Sequence[str]) -> tuple[int, str] | None:
    """(position, problem) of the first unusable run id (see :func:`run_id_problem`), or None."""
    ids = np.asarray(run_ids, dtype=object)
    uniq = pd.unique(ids)  # a run has many rows: each id is checked once
    u = pd.Series(uniq, dtype="object").astype(str)
    suspect = (u.str.contains(_UNSAFE_ID_RE) | u.isin([".", "..", ""])
               | (u.str.len() > MAX_RUN_ID_BYTES // 4)).to_numpy(dtype=bool)
    bad = {raw: problem for raw, text in zip(uniq[suspect], u[suspect])
           if (problem := run_id_problem(text)) is not None}
    if not bad:
        return None
    i = next(j for j, x in enumerate(ids) if x in bad)
    return i, bad[ids[i]]


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
